package main

// The backoffice commands (cases, case, quarantine, audit) are how the
// staff of the service run and watch the daemon: they read the same data
// directory the daemon writes, and every action they take goes through the
// procedure (engine.Handle with Source.Via "backoffice") or through the
// store's own audited operations, never around them.
//
// Read-only commands and the quarantine open only the configuration and the
// data directory; they need neither the token key nor the service key, so an
// auditor can run them. The case actions wire the whole engine, since they
// compose mail.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"secondopinion/internal/config"
	"secondopinion/internal/engine"
	"secondopinion/internal/procedure"
	"secondopinion/internal/registry"
	"secondopinion/internal/store"
)

// defaultConfig is the configuration file the backoffice commands read
// unless --config names another.
const defaultConfig = "secondopinion.yaml"

// timeLayout is how the backoffice sees moments: Europe/Amsterdam wall
// clock, to the minute.
const timeLayout = "2006-01-02 15:04"

// backoffice is what a backoffice command works on.
type backoffice struct {
	cfg *config.Config
	reg *registry.Registry
	st  *store.Store
	loc *time.Location
}

// openBackoffice loads the configuration and registry and opens the data
// directory. It refuses a data directory that does not exist, rather than
// creating an empty one behind a mistyped --config.
func openBackoffice(ctx context.Context, path string) (*backoffice, error) {
	cfg, reg, errs := config.LoadAll(path)
	if len(errs) > 0 {
		return nil, fmt.Errorf("configuration: %w", errors.Join(errs...))
	}
	if fi, err := os.Stat(cfg.DataDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("data dir %s does not exist (wrong --config, or the daemon never ran)", cfg.DataDir)
	}
	loc, err := boLocation()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, cfg.DataDir, nil)
	if err != nil {
		return nil, err
	}
	return &backoffice{cfg: cfg, reg: reg, st: st, loc: loc}, nil
}

func (b *backoffice) Close() error { return b.st.Close() }

// openEngine wires the whole engine, for the actions that move a case.
func openEngine(ctx context.Context, path string) (*engine.Wired, error) {
	cfg, reg, errs := config.LoadAll(path)
	if len(errs) > 0 {
		return nil, fmt.Errorf("configuration: %w", errors.Join(errs...))
	}
	if fi, err := os.Stat(cfg.DataDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("data dir %s does not exist (wrong --config, or the daemon never ran)", cfg.DataDir)
	}
	// The engine's one-line-per-step log belongs to the daemon; the
	// command reports its result itself.
	return engine.FromLoaded(ctx, cfg, reg, slog.New(slog.DiscardHandler))
}

func boLocation() (*time.Location, error) {
	loc, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		return nil, fmt.Errorf("load time zone: %w", err)
	}
	return loc, nil
}

// fmtTime shows a moment in Amsterdam time, "-" for none.
func boTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(loc).Format(timeLayout)
}

// dash shows an empty value as "-".
func boDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

// short is the first 16 hex digits of a hash, enough to tell documents apart
// on screen.
func boShort(sha string) string {
	if len(sha) > 16 {
		return sha[:16]
	}
	return sha
}

// oneLine keeps tabwriter columns intact: a value never spans lines or
// holds a tab.
func boLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// procedurePhysician is the procedure's view of a registry physician.
func procedurePhysician(p registry.Physician) procedure.Physician {
	lang := "nl"
	if len(p.Languages) > 0 {
		lang = p.Languages[0]
	}
	return procedure.Physician{ID: p.ID, Name: p.Name, Email: p.Email, Arbodienst: p.Arbodienst, InPool: p.Pool, Lang: lang}
}

// isProcedureError reports whether err is the procedure refusing an input,
// which the backoffice reads as an answer, not as a failure of the tool.
func isProcedureError(err error) bool {
	return errors.Is(err, procedure.ErrInvalid) || errors.Is(err, procedure.ErrUnexpected) || errors.Is(err, procedure.ErrClosed)
}
