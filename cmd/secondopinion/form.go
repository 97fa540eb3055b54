package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"secondopinion/internal/authform"
)

// cmdForm renders the machtigingsformulier of a case described in JSON,
// for the backoffice and for tests.
var cmdForm = &command{
	name:    "form",
	args:    "CASE.json --out FILE.pdf [--lang nl|en] [--templates DIR]",
	summary: "render a case's authorisation form (machtigingsformulier) as PDF",
	help: `CASE.json describes the case: reference, date, employee, employer, the
original, chosen and backup physicians, subject, question, the documents to
be shared (title, date, SHA-256), who pays and why, and the retention period.
Its fields are documented in docs/form-json.md. Every problem in the file is
listed before anything is written. The same file and date give the same PDF,
byte for byte.`,
	setup: func(fl *flag.FlagSet) func(ctx context.Context, e *env, args []string) error {
		out := fl.String("out", "", "write the PDF to `FILE` (\"-\" for standard output)")
		lang := fl.String("lang", "", "form language, nl or en (default: the case's \"lang\", else nl)")
		dir := fl.String("templates", "", "use the form texts in `DIR`/form/ instead of the embedded ones")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: want one CASE.json, got %d arguments", errUsage, len(args))
			}
			if *out == "" {
				return fmt.Errorf("%w: --out FILE.pdf is required", errUsage)
			}
			f, err := readFormCase(args[0])
			if err != nil {
				return err
			}
			if *lang != "" {
				f.Lang = *lang
			}
			var opts authform.Options
			if *dir != "" {
				opts.FS = os.DirFS(*dir)
			}
			var pdf bytes.Buffer
			err = authform.Render(&pdf, f, opts)
			var verr *authform.ValidationError
			if errors.As(err, &verr) {
				fmt.Fprintf(e.stderr, "secondopinion form: %s: %d problem(s):\n", args[0], len(verr.Problems))
				for _, p := range verr.Problems {
					fmt.Fprintf(e.stderr, "  %s\n", p)
				}
				return exitError{1}
			}
			if err != nil {
				return err
			}
			if *out == "-" {
				_, err := e.stdout.Write(pdf.Bytes())
				return err
			}
			if err := writeFormPDF(*out, pdf.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s (%d bytes)\n", *out, pdf.Len())
			return nil
		}
	},
}

// readFormCase reads CASE.json strictly: an unknown field is a typo that
// would otherwise silently leave something off the form.
func readFormCase(path string) (authform.Form, error) {
	var f authform.Form
	b, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	if dec.More() {
		return f, fmt.Errorf("%s: more than one JSON value", path)
	}
	return f, nil
}

// writeFormPDF writes data to a temporary file beside path, syncs it and
// renames it into place, so a reader never sees half a PDF.
func writeFormPDF(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
