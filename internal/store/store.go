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
// outbox. Writes that meet share one commit, each in a savepoint of its
// own (group commit, see tx): one fsync for several, with the outcome of
// each its own.
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
	"slices"
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
	// writer is held by the one goroutine writing (see tx). SQLite has
	// one writer at a time; without it concurrent writers (ingest,
	// decisions, the outbox) meet in SQLite's busy handler, which sleeps
	// 1, 2, 5 … 100 ms between tries. Other processes (the backoffice
	// commands) still wait there.
	writer chan struct{}
	// waiting are the writes queued for the next group commit.
	qmu     sync.Mutex
	waiting []*txReq
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
	s := &Store{db: db, dir: dir, stmts: statements{db: db}, writer: make(chan struct{}, 1)}
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
			if _, err := tx.tx.ExecContext(tx.ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.Exec(`INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)`,
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

// tx runs f in a write transaction (BEGIN IMMEDIATE), committed when f
// returns nil; f's error is returned and nothing f wrote remains.
//
// Writes that meet share one commit (group commit): while one goroutine
// commits, the writes that arrive queue, and the next to hold the writer
// runs them all in one transaction, each in a savepoint of its own, and
// commits once. Each write keeps its own outcome: a write whose f fails is
// rolled back to its savepoint and the others commit; a failed commit
// fails them all. With fsync on commit the commit is most of a small
// write's cost, and the queue grows with it: the slower the disk, the more
// writes share one fsync.
//
// ctx is looked at when the write's turn comes: a write whose ctx has
// ended by then is not run. Once it runs it is not cut short (see
// commitGroup), and a caller whose ctx ends while it waits for its turn
// still waits for the group before it.
func (s *Store) tx(ctx context.Context, f func(*writeTx) error) error {
	r := &txReq{ctx: ctx, f: f, done: make(chan error, 1)}
	s.qmu.Lock()
	s.waiting = append(s.waiting, r)
	s.qmu.Unlock()
	for {
		select {
		case err := <-r.done:
			return r.outcome(err)
		default:
		}
		select {
		case err := <-r.done:
			return r.outcome(err)
		case s.writer <- struct{}{}:
			s.commitWaiting()
		}
	}
}

// commitWaiting commits the writes waiting, as the holder of the writer,
// and gives the writer back.
func (s *Store) commitWaiting() {
	defer func() { <-s.writer }()
	s.qmu.Lock()
	group := s.waiting
	s.waiting = nil
	s.qmu.Unlock()
	if len(group) > 0 {
		s.commitGroup(group)
	}
}

// txReq is one write waiting for its commit.
type txReq struct {
	ctx      context.Context
	f        func(*writeTx) error
	done     chan error
	answered bool // by the goroutine that runs the group
}

func (r *txReq) answer(err error) {
	r.answered = true
	r.done <- err
}

// writePanic carries a panic of a write's f to the goroutine that asked
// for the write, which may not be the one that ran it.
type writePanic struct{ v any }

func (p *writePanic) Error() string { return fmt.Sprint("write panicked: ", p.v) }

// outcome is the write's result as tx returns it: a panic of f panics
// again in the caller's goroutine.
func (r *txReq) outcome(err error) error {
	if p, ok := err.(*writePanic); ok {
		panic(p.v)
	}
	return err
}

// commitGroup runs the writes of group in one transaction, in order, and
// tells each its outcome.
//
// The statements run on a context that is not cancelled: SQLite rolls the
// whole transaction back when a write statement inside it is interrupted,
// which would take the group's other writes with it. A write whose
// context ended before its turn is not run. SQLite may also roll the whole
// transaction back on its own (a full disk, an I/O error); the end of the
// write's savepoint then fails, the writes kept before it get the error,
// and the writes after it wait for the next group.
func (s *Store) commitGroup(group []*txReq) {
	ctx := context.WithoutCancel(group[0].ctx)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		answer(group, fmt.Errorf("begin: %w", err))
		return
	}
	inF := false // a write's f runs
	defer func() {
		if !inF {
			return
		}
		// That f ended this goroutine (runtime.Goexit: t.Fatal in a
		// test), which may be another write's: the transaction goes, and
		// every write of the group not yet told fails rather than wait
		// for ever.
		tx.Rollback()
		for _, r := range group {
			if !r.answered {
				r.answer(errors.New("not committed: a write of the same commit ended its goroutine"))
			}
		}
	}()
	w := &writeTx{tx: tx, s: s, ctx: ctx}
	// A write alone needs no savepoint: its failure rolls back the
	// transaction, and a transaction that is gone fails the commit.
	alone := len(group) == 1
	var kept []*txReq
	for i, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.answer(err)
			continue
		}
		inF = true
		ferr, lost := w.run(r.f, !alone)
		inF = false
		if lost != nil {
			tx.Rollback()
			answer(kept, fmt.Errorf("rolled back with another write of the same commit: %w", lost))
			if ferr == nil {
				ferr = lost
			}
			r.answer(ferr)
			if rest := group[i+1:]; len(rest) > 0 {
				s.qmu.Lock()
				s.waiting = append(slices.Clone(rest), s.waiting...)
				s.qmu.Unlock()
			}
			return
		}
		if ferr != nil {
			r.answer(ferr)
			continue
		}
		kept = append(kept, r)
	}
	if len(kept) == 0 {
		tx.Rollback()
		return
	}
	if err := tx.Commit(); err != nil {
		answer(kept, fmt.Errorf("commit: %w", err))
		return
	}
	answer(kept, nil)
}

func answer(rs []*txReq, err error) {
	for _, r := range rs {
		r.answer(err)
	}
}

// run runs f, in a savepoint if asked, rolled back to when f fails (or
// panics). lost says the transaction itself is gone.
func (t *writeTx) run(f func(*writeTx) error, savepoint bool) (ferr, lost error) {
	if savepoint {
		if _, err := t.Exec("SAVEPOINT w"); err != nil {
			return nil, fmt.Errorf("savepoint: %w", err)
		}
	}
	func() {
		defer func() {
			if p := recover(); p != nil {
				ferr = &writePanic{v: p}
			}
		}()
		ferr = f(t)
	}()
	if !savepoint {
		return ferr, nil
	}
	if ferr != nil {
		if _, err := t.Exec("ROLLBACK TO w"); err != nil {
			return ferr, fmt.Errorf("roll back to savepoint: %w", err)
		}
	}
	if _, err := t.Exec("RELEASE w"); err != nil {
		return ferr, fmt.Errorf("release savepoint: %w", err)
	}
	return ferr, nil
}

// exec runs one writing statement in a transaction of its own.
func (s *Store) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := s.tx(ctx, func(tx *writeTx) error {
		var err error
		res, err = tx.Exec(q, args...)
		return err
	})
	return res, err
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func nullMS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}
