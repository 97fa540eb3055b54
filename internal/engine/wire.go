package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"secondopinion/internal/config"
	"secondopinion/internal/pgpmime"
	"secondopinion/internal/registry"
	"secondopinion/internal/store"
	"secondopinion/templates"
)

// Wired is an engine built from a configuration file, with what it opened.
type Wired struct {
	Engine   *Engine
	Config   *config.Config
	Registry *registry.Registry
	Store    *store.Store
	Keyring  *pgpmime.Keyring
}

// Close releases what FromConfig opened.
func (w *Wired) Close() error { return w.Store.Close() }

// FromConfig loads and validates the configuration and registry, reads the
// secrets, opens the data dir and the keys, and returns a ready engine.
// Every configuration problem is returned at once.
func FromConfig(ctx context.Context, path string, logger *slog.Logger) (*Wired, error) {
	cfg, reg, errs := config.LoadAll(path)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return FromLoaded(ctx, cfg, reg, logger)
}

// FromLoaded is FromConfig for an already loaded configuration.
func FromLoaded(ctx context.Context, cfg *config.Config, reg *registry.Registry, logger *slog.Logger) (*Wired, error) {
	tokenKey, err := cfg.TokenKey()
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	pass, err := cfg.ServiceKeyPassphrase()
	if err != nil {
		return nil, fmt.Errorf("service key passphrase: %w", err)
	}
	keyring, err := pgpmime.OpenKeyring(cfg.KeysDir)
	if err != nil {
		return nil, err
	}
	svc, err := keyring.ServiceKey(pass)
	if err != nil {
		return nil, fmt.Errorf("service key: %w", err)
	}
	pol, cal, err := Policy(cfg.Policy)
	if err != nil {
		return nil, err
	}
	tmpl := fs.FS(templates.FS)
	if cfg.TemplatesDir != "" {
		tmpl = os.DirFS(cfg.TemplatesDir)
		if err := CheckTemplates(tmpl); err != nil {
			return nil, fmt.Errorf("templates_dir %s: %w", cfg.TemplatesDir, err)
		}
	}
	st, err := store.Open(ctx, cfg.DataDir, nil)
	if err != nil {
		return nil, err
	}
	e, err := New(Options{
		Store: st, Registry: reg, Policy: pol, Calendar: cal, Keyring: keyring, Service: svc, TokenKey: tokenKey,
		Info: ServiceInfo{LocalPart: cfg.Service.LocalPart, Domain: cfg.Service.Domain, DisplayName: cfg.Service.DisplayName,
			Provider: cfg.Service.Provider, Backoffice: cfg.Service.Backoffice, Lang: cfg.Service.Language},
		Templates: tmpl, Logger: logger,
		StrictAuth: cfg.Policy.StrictAuth, AuthservID: cfg.Policy.AuthservID,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Wired{Engine: e, Config: cfg, Registry: reg, Store: st, Keyring: keyring}, nil
}
