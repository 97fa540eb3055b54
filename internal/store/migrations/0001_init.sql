-- Cases: the procedure's case as JSON, with the columns the backoffice and
-- the sweep query on. version is the optimistic-concurrency counter.
CREATE TABLE cases (
	id             INTEGER PRIMARY KEY,
	ref            TEXT NOT NULL UNIQUE,
	state          TEXT NOT NULL,
	version        INTEGER NOT NULL,
	employee_email TEXT NOT NULL DEFAULT '',
	waiting_on     TEXT NOT NULL DEFAULT '',
	next_due       INTEGER,            -- unix ms of the earliest deadline
	created_at     INTEGER NOT NULL,
	updated_at     INTEGER NOT NULL,
	closed_at      INTEGER,
	data           BLOB NOT NULL
);
CREATE INDEX cases_state ON cases(state);
CREATE INDEX cases_employee ON cases(employee_email);

-- Serial numbers for case references, per year (SO-2026-0042).
CREATE TABLE serials (
	year INTEGER PRIMARY KEY,
	last INTEGER NOT NULL
);

-- Deadlines mirror each case's deadlines, for the sweep.
CREATE TABLE deadlines (
	case_id INTEGER NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
	step    TEXT NOT NULL,
	kind    TEXT NOT NULL,
	due     INTEGER NOT NULL,
	PRIMARY KEY (case_id, step, kind)
);
CREATE INDEX deadlines_due ON deadlines(due);

-- Inbound raw messages, stored before the IMAP flag is set. The raw bytes
-- are in a file under inbound/; (message_id, sha256) dedupes a re-fetch.
CREATE TABLE inbound (
	id          INTEGER PRIMARY KEY,
	message_id  TEXT NOT NULL,
	sha256      TEXT NOT NULL,
	size        INTEGER NOT NULL,
	path        TEXT NOT NULL,
	mailbox     TEXT NOT NULL DEFAULT '',
	uidvalidity INTEGER NOT NULL DEFAULT 0,
	uid         INTEGER NOT NULL DEFAULT 0,
	oversize    INTEGER NOT NULL DEFAULT 0,
	received_at INTEGER NOT NULL,
	status      TEXT NOT NULL DEFAULT 'new', -- new, processed, quarantined, released, rejected
	reason      TEXT NOT NULL DEFAULT '',
	case_id     INTEGER REFERENCES cases(id),
	handled_at  INTEGER,
	UNIQUE (message_id, sha256)
);
CREATE INDEX inbound_status ON inbound(status);

-- The transactional outbox: mail composed when the decision commits.
CREATE TABLE outbox (
	id           INTEGER PRIMARY KEY,
	case_id      INTEGER REFERENCES cases(id),
	message_id   TEXT NOT NULL UNIQUE,
	sender       TEXT NOT NULL,
	recipients   TEXT NOT NULL, -- JSON array
	body         BLOB,          -- the composed message, or
	path         TEXT,          -- a file under outbox/ for large ones
	status       TEXT NOT NULL DEFAULT 'queued', -- queued, sent, failed
	attempts     INTEGER NOT NULL DEFAULT 0,
	next_attempt INTEGER NOT NULL,
	last_error   TEXT NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	sent_at      INTEGER
);
CREATE INDEX outbox_due ON outbox(status, next_attempt);

-- Documents: descriptions here, ciphertext (sealed to the service key)
-- in files under documents/.
CREATE TABLE documents (
	id         INTEGER PRIMARY KEY,
	case_id    INTEGER NOT NULL REFERENCES cases(id),
	sha256     TEXT NOT NULL,
	kind       TEXT NOT NULL, -- medical, advice, form
	title      TEXT NOT NULL,
	name       TEXT NOT NULL DEFAULT '',
	size       INTEGER NOT NULL,
	path       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	UNIQUE (case_id, sha256)
);

-- Alerts for the backoffice.
CREATE TABLE alerts (
	id          INTEGER PRIMARY KEY,
	case_id     INTEGER REFERENCES cases(id),
	at          INTEGER NOT NULL,
	reason      TEXT NOT NULL,
	resolved_at INTEGER
);

-- The audit log: append-only, each entry chained to the previous by hash.
CREATE TABLE audit (
	id         INTEGER PRIMARY KEY,
	case_id    INTEGER,
	case_ref   TEXT NOT NULL,
	at         INTEGER NOT NULL,
	event      TEXT NOT NULL,
	detail     TEXT NOT NULL,
	disclosure TEXT NOT NULL DEFAULT '',
	prev_hash  TEXT NOT NULL,
	hash       TEXT NOT NULL
);
CREATE INDEX audit_case ON audit(case_id);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
