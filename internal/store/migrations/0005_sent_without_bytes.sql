-- A sent mail keeps no bytes (store.OutboxMark): the row records who sent
-- what to whom and when, the audit log which documents it disclosed, the
-- service's sent-copy folder what went out. Mail sent before this version
-- loses its bytes now: the bodies kept in the database here, the files
-- under outbox/ at the daemon's next file sweep (store.SweepFiles), which
-- removes files no row names.
DELETE FROM outbox_body WHERE outbox_id IN (SELECT id FROM outbox WHERE status = 'sent');
UPDATE outbox SET path = NULL WHERE status = 'sent';
