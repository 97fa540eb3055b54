// Package store is the daemon's memory and the only package that writes
// SQL. It keeps cases, deadlines, inbound raw mail, the outbox, document
// descriptions, alerts and the hash-chained audit log in SQLite (WAL,
// foreign keys, a busy timeout, fsync on commit), in a data directory of
// mode 0700. Large bytes — raw mail, sealed documents, big outgoing mail —
// live in files beside the database, written and fsynced before the row
// that names them commits.
//
// Every decision of the procedure is committed by Apply in ONE transaction:
// the case (guarded by its version, so a concurrent writer gets ErrStale,
// never a lost update), its deadlines, audit entries, outbox rows, document
// rows, alerts and the status of the inbound message that caused it. That
// makes inbound processing exactly-once and outbound mail a transactional
// outbox.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

var (
	// ErrStale: the case changed since it was read; read it again and
	// decide again.
	ErrStale = errors.New("case changed concurrently")
	// ErrNotFound: no such case, message or row.
	ErrNotFound = errors.New("not found")
	// ErrNewerSchema: the data dir was written by a newer version.
	ErrNewerSchema = errors.New("database schema is newer than this binary")
)

// Store is an open data directory.
type Store struct {
	db    *sql.DB
	dir   string
	stmts statements
	// wmu serialises this process's writes. SQLite has one writer at a
	// time; without it concurrent writers (ingest, decisions, the outbox)
	// meet in SQLite's busy handler, which sleeps 1, 2, 5 … 100 ms between
	// tries. Other processes (the backoffice commands) still wait there.
	wmu sync.Mutex
}

// Options tune Open; the zero value is right for the daemon.
type Options struct {
	// NoSync turns off fsync on commit. Only for throwaway data (the demo
	// may use it); never for real cases.
	NoSync bool
	// BusyTimeout is how long a writer waits for a lock (default 5 s).
	BusyTimeout time.Duration
}

// Open opens (creating if needed) the data directory and its database, and
// applies pending migrations.
func Open(ctx context.Context, dir string, opts *Options) (*Store, error) {
	if opts == nil {
		opts = &Options{}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	for _, sub := range subdirs {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	sync := "FULL"
	if opts.NoSync {
		sync = "OFF"
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_txlock", "immediate")
	dsn := "file:" + filepath.Join(dir, "secondopinion.db") + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	// Keep the connections (and the statements prepared on them) that
	// concurrent readers, the writer and the outbox's lanes use at once;
	// the default of 2 closed and reopened one for most reads under load.
	db.SetMaxIdleConns(maxIdleConns)
	s := &Store{db: db, dir: dir, stmts: statements{db: db}}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := os.Chmod(filepath.Join(dir, "secondopinion.db"), 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("database file: %w", err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.stmts.close()
	return s.db.Close()
}

// Dir is the data directory.
func (s *Store) Dir() string { return s.dir }

// migrate applies the embedded migrations not yet recorded, each in its own
// transaction, in file-name order.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrations table: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	// A database migrated by a newer binary is not opened by an older one:
	// restore the backup taken before the upgrade instead.
	var applied, known int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&applied); err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if len(names) > 0 {
		known, _ = strconv.Atoi(strings.SplitN(filepath.Base(names[len(names)-1]), "_", 2)[0])
	}
	if applied > known {
		return fmt.Errorf("%w: the database has schema %d, this binary knows up to %d", ErrNewerSchema, applied, known)
	}
	for _, name := range names {
		base := filepath.Base(name)
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with a number", base)
		}
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, v).Scan(&n); err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
		if n > 0 {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = s.tx(ctx, func(tx *writeTx) error {
			// A script runs once: not kept among the statements.
			if _, err := tx.tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)`,
				v, base, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
	}
	return nil
}

// SchemaVersion returns the highest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// tx runs f in a write transaction (BEGIN IMMEDIATE), committing when f
// returns nil.
func (s *Store) tx(ctx context.Context, f func(*writeTx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := f(&writeTx{tx: tx, s: s}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// exec runs one writing statement outside a transaction of its own.
func (s *Store) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if st := s.stmts.get(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return s.db.ExecContext(ctx, q, args...)
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func nullMS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}
