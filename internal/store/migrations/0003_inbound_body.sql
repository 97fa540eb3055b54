-- A small inbound message (up to 256 KiB: replies, signed answers) keeps
-- its raw bytes in the row, committed in the transaction that records it;
-- a larger one is in the file at path. A purged message has neither.
ALTER TABLE inbound ADD COLUMN body BLOB;
