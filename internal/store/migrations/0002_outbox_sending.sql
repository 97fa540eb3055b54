-- A mail whose delivery attempt has begun is 'sending' from before the
-- first byte goes to the SMTP server until its outcome is recorded. One
-- still 'sending' after a crash (or after a lost reply to the end of its
-- data) may or may not have been accepted: the worker looks for its sent
-- copy before it sends it again.
ALTER TABLE outbox ADD COLUMN sending_since INTEGER;
