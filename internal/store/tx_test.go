package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"secondopinion/internal/procedure"
)

// queued starts each write in its own goroutine while the test holds the
// writer, waits until all are queued, and lets them go: they are committed
// as one group. It returns each write's error, in the order given.
func queued(t *testing.T, s *Store, writes ...func() error) []error {
	t.Helper()
	s.writer <- struct{}{}
	errs := make([]error, len(writes))
	var wg sync.WaitGroup
	for i, w := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w()
		}()
		// One by one, so that the group's order is the order given.
		deadline := time.Now().Add(5 * time.Second)
		for {
			s.qmu.Lock()
			n := len(s.waiting)
			s.qmu.Unlock()
			if n == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("write %d was not queued", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	<-s.writer
	wg.Wait()
	return errs
}

// alertReasons lists the reasons of every alert, in order.
func alertReasons(t *testing.T, s *Store) []string {
	t.Helper()
	as, err := s.Alerts(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.Reason)
	}
	return out
}

func addAlert(s *Store, reason string) func() error {
	return func() error { return s.AddAlert(context.Background(), 0, reason, time.Now()) }
}

// A write that fails leaves nothing, and the writes committed with it
// keep theirs.
func TestTxGroupKeepsEachOutcome(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	errFails := errors.New("the decision does not hold")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	errs := queued(t, s,
		addAlert(s, "first"),
		func() error {
			return s.tx(ctx, func(tx *writeTx) error {
				if _, err := tx.Exec(`INSERT INTO alerts(at, reason) VALUES (1, 'half a failed write')`); err != nil {
					return err
				}
				return errFails
			})
		},
		func() error {
			// A constraint error inside SQLite rolls back its statement only.
			_, err := s.exec(ctx, `INSERT INTO alerts(at, reason) VALUES (NULL, 'no time')`)
			return err
		},
		func() error { return s.AddAlert(cancelled, 0, "cancelled before its turn", time.Now()) },
		addAlert(s, "last"),
	)
	if errs[0] != nil || errs[4] != nil {
		t.Fatalf("the good writes failed: %v", errs)
	}
	if !errors.Is(errs[1], errFails) {
		t.Errorf("the failing write returned %v, want its own error", errs[1])
	}
	if errs[2] == nil {
		t.Error("a NOT NULL violation was not reported")
	}
	if !errors.Is(errs[3], context.Canceled) {
		t.Errorf("the cancelled write returned %v", errs[3])
	}
	if got, want := alertReasons(t, s), []string{"first", "last"}; !slices.Equal(got, want) {
		t.Errorf("alerts after the group: %q, want %q", got, want)
	}
}

// When SQLite ends the transaction itself (as it does on a full disk), no
// write of the group is told it committed, what the earlier ones wrote is
// gone and they say so, and the later ones commit in the next group
// instead of one statement at a time outside any transaction. The write
// that met the rollback may notice it (its statement fails) or not.
func TestTxGroupLostTransaction(t *testing.T) {
	errFull := errors.New("database or disk is full")
	for _, tt := range []struct {
		name string
		ret  error // what the write that meets the rollback returns
	}{{"noticed", errFull}, {"unnoticed", nil}} {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			errs := queued(t, s,
				addAlert(s, "before"),
				func() error {
					return s.tx(ctx, func(tx *writeTx) error {
						if _, err := tx.tx.ExecContext(tx.ctx, `ROLLBACK`); err != nil {
							return err
						}
						return tt.ret
					})
				},
				func() error {
					return s.tx(ctx, func(tx *writeTx) error {
						for _, r := range []string{"after, one", "after, two"} {
							if _, err := tx.Exec(`INSERT INTO alerts(at, reason) VALUES (1, ?)`, r); err != nil {
								return err
							}
						}
						return nil
					})
				},
			)
			if errs[0] == nil {
				t.Error("the write before the lost transaction was told it committed")
			}
			if errs[1] == nil {
				t.Error("the write that lost the transaction was told it committed")
			} else if tt.ret != nil && !errors.Is(errs[1], tt.ret) {
				t.Errorf("the write that lost the transaction returned %v, want its own error", errs[1])
			}
			if errs[2] != nil {
				t.Errorf("the write after it failed: %v", errs[2])
			}
			if got, want := alertReasons(t, s), []string{"after, one", "after, two"}; !slices.Equal(got, want) {
				t.Errorf("alerts: %q, want %q", got, want)
			}
		})
	}
}

// A panic in a write alone comes out of tx, leaves nothing written, and
// the next write goes ahead.
func TestTxPanicAlone(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	func() {
		defer func() {
			if p := recover(); p != "a bug" {
				t.Errorf("recovered %v, want the write's panic", p)
			}
		}()
		s.tx(ctx, func(tx *writeTx) error {
			if _, err := tx.Exec(`INSERT INTO alerts(at, reason) VALUES (1, 'panicking')`); err != nil {
				return err
			}
			panic("a bug")
		})
	}()
	if err := addAlert(s, "next")(); err != nil {
		t.Fatal(err)
	}
	if got, want := alertReasons(t, s), []string{"next"}; !slices.Equal(got, want) {
		t.Errorf("alerts: %q, want %q", got, want)
	}
}

// A panic in a write comes out in the goroutine that asked for it, not in
// the one that happened to run the group; the others commit.
func TestTxGroupPanic(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	errs := queued(t, s,
		addAlert(s, "one"),
		func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panicked: %v", p)
				}
			}()
			return s.tx(ctx, func(tx *writeTx) error {
				if _, err := tx.Exec(`INSERT INTO alerts(at, reason) VALUES (1, 'panicking')`); err != nil {
					return err
				}
				panic("a bug")
			})
		},
		addAlert(s, "two"),
	)
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("the good writes failed: %v", errs)
	}
	if errs[1] == nil || errs[1].Error() != "panicked: a bug" {
		t.Errorf("the panicking write returned %v, want its panic", errs[1])
	}
	if got, want := alertReasons(t, s), []string{"one", "two"}; !slices.Equal(got, want) {
		t.Errorf("alerts: %q, want %q", got, want)
	}
}

// Many writers at once: every write commits once, in some order, and a
// read-modify-write in one sees the writes committed before it.
func TestTxGroupConcurrentWriters(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	const n = 64
	ids := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, _, err := s.NextCase(ctx, time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC))
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	slices.Sort(ids)
	for i, id := range ids {
		if want := int64(2026_000_001 + i); id != want {
			t.Fatalf("case IDs %d…: %d at %d, want %d (each serial exactly once)", ids[0], id, i, want)
		}
	}
}

// A purge whose commit another write of its group takes down removes no
// file: the rows that name them are still there, and the document still
// opens for the purge that comes again.
func TestTxGroupLostPurgeKeepsTheFiles(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	rel, size, err := s.PutFile("documents", strings.NewReader("sealed document"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Apply(ctx, Decision{Case: newCase(t, s, procedure.StateCompleted, time.Time{}),
		Documents: []DocumentRow{{SHA256: contentHash("document"), Kind: "medical", Title: "Brief", Size: size, Path: rel}}, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	purge := *c
	purge.State = procedure.StatePurged
	errs := queued(t, s,
		func() error {
			_, err := s.Apply(ctx, Decision{Case: &purge, Purge: true, Now: t0})
			return err
		},
		func() error {
			return s.tx(ctx, func(tx *writeTx) error {
				_, err := tx.tx.ExecContext(tx.ctx, `ROLLBACK`)
				return err
			})
		},
	)
	if errs[0] == nil {
		t.Fatal("the purge was told it committed")
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), rel)); err != nil {
		t.Errorf("the document's file is gone though its purge did not commit: %v", err)
	}
	docs, err := s.Documents(ctx, c.ID)
	if err != nil || len(docs) != 1 || docs[0].Path != rel {
		t.Errorf("documents after the lost purge: %+v, %v", docs, err)
	}
}

// A write whose f ends its goroutine (runtime.Goexit, as t.Fatal does)
// takes its group's transaction with it, and every other write of the
// group is told so instead of waiting for ever; the store goes on.
func TestTxGroupGoexit(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	var returned [3]atomic.Bool
	wrap := func(i int, f func() error) func() error {
		return func() error {
			err := f()
			returned[i].Store(true)
			return err
		}
	}
	done := make(chan []error, 1)
	go func() {
		done <- queued(t, s,
			wrap(0, addAlert(s, "before")),
			wrap(1, func() error {
				return s.tx(ctx, func(tx *writeTx) error {
					if _, err := tx.Exec(`INSERT INTO alerts(at, reason) VALUES (1, 'exits')`); err != nil {
						return err
					}
					runtime.Goexit()
					return nil
				})
			}),
			wrap(2, addAlert(s, "after")),
		)
	}()
	var errs []error
	select {
	case errs = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the group's writes still wait 10 s after one ended its goroutine")
	}
	n := 0
	for i, err := range errs {
		if !returned[i].Load() {
			continue // the goroutine that ran the group
		}
		n++
		if err == nil || !strings.Contains(err.Error(), "not committed") {
			t.Errorf("write %d returned %v, want not committed", i, err)
		}
	}
	if n < 2 {
		t.Errorf("%d writes returned, want all but the one whose goroutine ran the group", n)
	}
	if got := alertReasons(t, s); len(got) != 0 {
		t.Errorf("alerts after the group: %q, want none", got)
	}
	if err := s.AddAlert(ctx, 0, "next", time.Now()); err != nil {
		t.Fatalf("the next write: %v", err)
	}
}
