package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"secondopinion/internal/pgpmime"
)

// cmdKeys manages the keys directory: the service's own key and the
// participants' public keys (layout in keys/README.md).
var cmdKeys = &command{
	name:    "keys",
	args:    "list | check | import FILE | generate-service-key",
	summary: "list, check and import OpenPGP keys; generate the service key",
	help: `Subcommands:
  list                  every key in the keys directory: address, fingerprint,
                        expiry and user IDs
  check                 judge every key now for the address in its file name:
                        expired, revoked, no encryption subkey, RSA under 3072
                        bits or a user ID that does not match make a key
                        unusable; a WARNING line from 30 days before expiry.
                        Exits 1 when any key is unusable.
  import FILE           judge the public key(s) in FILE and register each usable
                        one as public/<address>.asc for every address among its
                        user IDs (replacing the key on file). Exits 1 when
                        nothing could be imported.
  generate-service-key  make the service's key pair (Ed25519/X25519) and write it
                        as service.asc (mode 0600); never overwrites. The public
                        key is printed for the physicians.`,
	setup: func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		dir := fs.String("keys", "keys", "the keys `DIR`ectory")
		name := fs.String("name", "", "generate-service-key: the key's `NAME`")
		email := fs.String("email", "", "generate-service-key: the service's e-mail `ADDRESS`")
		passFile := fs.String("passphrase-file", "", "generate-service-key: protect the key with the passphrase in `FILE`")
		passEnv := fs.String("passphrase-env", "", "generate-service-key: protect the key with the passphrase in environment `VAR`")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%w: want a subcommand", errUsage)
			}
			now := time.Now()
			switch sub, rest := args[0], args[1:]; sub {
			case "list", "check":
				if len(rest) != 0 {
					return fmt.Errorf("%w: %s takes no arguments", errUsage, sub)
				}
				return keysList(e, *dir, now, sub == "check")
			case "import":
				if len(rest) != 1 {
					return fmt.Errorf("%w: import wants one FILE", errUsage)
				}
				return keysImport(e, *dir, rest[0], now)
			case "generate-service-key":
				if len(rest) != 0 || *name == "" || *email == "" {
					return fmt.Errorf("%w: generate-service-key wants --name and --email", errUsage)
				}
				pass, err := readPassphrase(*passFile, *passEnv)
				if err != nil {
					return err
				}
				return keysGenerate(e, *dir, *name, *email, pass, now)
			default:
				return fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
			}
		}
	},
}

func readPassphrase(file, envVar string) ([]byte, error) {
	switch {
	case file != "" && envVar != "":
		return nil, fmt.Errorf("%w: give --passphrase-file or --passphrase-env, not both", errUsage)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("passphrase: %w", err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, errors.New("passphrase file is empty")
		}
		return b, nil
	case envVar != "":
		v := os.Getenv(envVar)
		if v == "" {
			return nil, fmt.Errorf("passphrase: environment variable %s is empty or unset", envVar)
		}
		return []byte(v), nil
	}
	return nil, nil
}

func keysList(e *env, dir string, now time.Time, check bool) error {
	kr, err := pgpmime.OpenKeyring(dir)
	if err != nil {
		return err
	}
	entries, err := kr.List(now)
	if err != nil {
		return err
	}
	if svc, ok := serviceEntry(dir, now); ok {
		entries = append([]pgpmime.Entry{svc}, entries...)
	}
	if len(entries) == 0 {
		fmt.Fprintf(e.stdout, "no keys in %s\n", dir)
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	if check {
		fmt.Fprintln(tw, "ADDRESS\tFINGERPRINT\tEXPIRES\tVERDICT")
	} else {
		fmt.Fprintln(tw, "ADDRESS\tFINGERPRINT\tEXPIRES\tUSER IDS")
	}
	var warnings []string
	unusable := 0
	for _, en := range entries {
		v := en.Verdict
		fpr := v.Fingerprint
		if fpr == "" {
			fpr = "-"
		}
		if check {
			verdict := "usable"
			if !v.Usable {
				verdict = "UNUSABLE: " + v.Reason
				unusable++
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", en.Address, fpr, expires(v), verdict)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", en.Address, fpr, expires(v), strings.Join(v.UserIDs, "; "))
		}
		if v.Usable && v.ExpiresSoon {
			days := int(v.Expires.Sub(now).Hours() / 24)
			warnings = append(warnings, fmt.Sprintf("WARNING: the key of %s expires on %s (in %d days); ask for a renewed key", en.Address, v.Expires.UTC().Format("2006-01-02"), days))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !check {
		return nil
	}
	for _, w := range warnings {
		fmt.Fprintln(e.stdout, w)
	}
	if unusable > 0 {
		fmt.Fprintf(e.stderr, "keys check: %d of %d key(s) unusable\n", unusable, len(entries))
		return exitError{1}
	}
	fmt.Fprintf(e.stdout, "%d key(s) usable\n", len(entries))
	return nil
}

// serviceEntry shows service.asc in the listing, judged for its own address
// (its public part is readable without the passphrase).
func serviceEntry(dir string, now time.Time) (pgpmime.Entry, bool) {
	path := filepath.Join(dir, pgpmime.ServiceKeyFile)
	f, err := os.Open(path)
	if err != nil {
		return pgpmime.Entry{}, false
	}
	defer f.Close()
	en := pgpmime.Entry{Address: pgpmime.ServiceKeyFile, Path: path}
	keys, err := pgpmime.ReadPublicKeys(f)
	if err != nil {
		en.Verdict = pgpmime.Verdict{Problem: pgpmime.ProblemUnreadable, Reason: err.Error()}
		return en, true
	}
	addrs := keys[0].Addresses()
	addr := ""
	if len(addrs) > 0 {
		addr = addrs[0]
		en.Address = "service " + addr
	}
	en.Key = keys[0]
	en.Verdict = pgpmime.Judge(keys[0], addr, now)
	return en, true
}

func expires(v pgpmime.Verdict) string {
	switch {
	case v.Fingerprint == "":
		return "-"
	case v.Expires.IsZero():
		return "never"
	}
	return v.Expires.UTC().Format("2006-01-02")
}

func keysImport(e *env, dir, file string, now time.Time) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	kr, err := pgpmime.OpenKeyring(dir)
	if err != nil {
		return err
	}
	got, err := kr.Import(data, now)
	for _, im := range got {
		switch {
		case im.Written && im.Replaced != "" && im.Replaced != im.Verdict.Fingerprint:
			fmt.Fprintf(e.stdout, "imported %s for %s (replaces %s)\n", im.Verdict.Fingerprint, im.Address, im.Replaced)
		case im.Written:
			fmt.Fprintf(e.stdout, "imported %s for %s\n", im.Verdict.Fingerprint, im.Address)
		default:
			fmt.Fprintf(e.stdout, "refused %s for %s: %s\n", im.Verdict.Fingerprint, im.Address, im.Verdict.Reason)
		}
	}
	if err != nil {
		if errors.Is(err, pgpmime.ErrNoUsableKey) {
			fmt.Fprintf(e.stderr, "keys import: %v\n", err)
			return exitError{1}
		}
		return err
	}
	return nil
}

func keysGenerate(e *env, dir, name, email string, pass []byte, now time.Time) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	kr, err := pgpmime.OpenKeyring(dir)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(dir, pgpmime.ServiceKeyFile)); err == nil {
		return fmt.Errorf("%s exists; refusing to overwrite the service key", filepath.Join(dir, pgpmime.ServiceKeyFile))
	}
	armored, err := pgpmime.GenerateServiceKey(name, email, now, pass)
	if err != nil {
		return err
	}
	path, err := kr.WriteServiceKey(armored)
	if err != nil {
		return err
	}
	svc, err := pgpmime.ParseServiceKey(armored, pass)
	if err != nil {
		return err
	}
	pub, err := svc.ArmoredPublic()
	if err != nil {
		return err
	}
	protected := "without a passphrase"
	if len(pass) > 0 {
		protected = "protected by the passphrase"
	}
	fmt.Fprintf(e.stderr, "wrote %s (%s), fingerprint %s\n", path, protected, svc.Fingerprint())
	_, err = io.Copy(e.stdout, bytes.NewReader(pub))
	return err
}
