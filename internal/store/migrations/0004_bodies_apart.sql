-- Message bytes kept in the database live in tables of their own. SQLite
-- writes a whole record again when one of its columns changes, so with
-- the bytes in the outbox or inbound row every status change (sending,
-- sent, processed) rewrote the message, up to 512 KiB, into the WAL and
-- fsynced it. Now a status change rewrites a row of a few dozen bytes.
CREATE TABLE outbox_body (
	outbox_id INTEGER PRIMARY KEY REFERENCES outbox(id),
	body      BLOB NOT NULL
);
INSERT INTO outbox_body(outbox_id, body) SELECT id, body FROM outbox WHERE body IS NOT NULL;
ALTER TABLE outbox DROP COLUMN body;

CREATE TABLE inbound_body (
	inbound_id INTEGER PRIMARY KEY REFERENCES inbound(id),
	body       BLOB NOT NULL
);
INSERT INTO inbound_body(inbound_id, body) SELECT id, body FROM inbound WHERE body IS NOT NULL;
ALTER TABLE inbound DROP COLUMN body;
