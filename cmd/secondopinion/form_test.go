package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"secondopinion/internal/testenv"
)

const formCase = "../../internal/authform/testdata/case-nl.json"

func TestFormCommand(t *testing.T) {
	testenv.Require(t, "pdftotext")
	dir := t.TempDir()
	out := filepath.Join(dir, "form.pdf")
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderr   string
		pdfWants string
	}{
		{"dutch", []string{"form", formCase, "--out", out}, 0, "wrote " + out, "", "Machtigingsformulier"},
		{"english", []string{"form", "--lang", "en", formCase, "--out", out}, 0, "wrote " + out, "", "Authorisation form"},
		{"no out", []string{"form", formCase}, 2, "", "--out FILE.pdf is required", ""},
		{"no case", []string{"form", "--out", out}, 2, "", "want one CASE.json", ""},
		{"missing file", []string{"form", filepath.Join(dir, "nope.json"), "--out", out}, 1, "", "no such file", ""},
		{"bad language", []string{"form", formCase, "--lang", "fr", "--out", out}, 1, "", `lang: want nl or en, got "fr"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(out)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), &env{stdout: &stdout, stderr: &stderr}, tt.args)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tt.stderr)
			}
			if tt.pdfWants == "" {
				if _, err := os.Stat(out); err == nil {
					t.Error("a PDF was written despite the error")
				}
				return
			}
			text, err := exec.Command("pdftotext", out, "-").Output()
			if err != nil {
				t.Fatalf("pdftotext: %v", err)
			}
			if !strings.Contains(string(text), tt.pdfWants) {
				t.Errorf("PDF text lacks %q", tt.pdfWants)
			}
		})
	}
}

func TestFormCommandListsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	c := filepath.Join(dir, "case.json")
	os.WriteFile(c, []byte(`{"ref":"SO-1","subject":"aanstellingskeuring","documents":[{"title":"x","date":"2026-01-01","sha256":"12"}]}`), 0o600)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), &env{stdout: &stdout, stderr: &stderr}, []string{"form", c, "--out", filepath.Join(dir, "f.pdf")})
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, w := range []string{"problem(s):", "\n  date: missing", `subject: want verzuimbegeleiding`, "documents[0].sha256: want 64 hexadecimal digits", "employee.name: missing"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
		}
	}
}

func TestFormCommandRejectsUnknownField(t *testing.T) {
	dir := t.TempDir()
	c := filepath.Join(dir, "case.json")
	os.WriteFile(c, []byte(`{"ref":"SO-1","questoin":"typo"}`), 0o600)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), &env{stdout: &stdout, stderr: &stderr}, []string{"form", c, "--out", filepath.Join(dir, "f.pdf")})
	if code != 1 || !strings.Contains(stderr.String(), `unknown field "questoin"`) {
		t.Fatalf("exit %d, stderr %q; want exit 1 naming the unknown field", code, stderr.String())
	}
}

func TestFormCommandStdoutIsReproducible(t *testing.T) {
	var a, b, errs bytes.Buffer
	for _, buf := range []*bytes.Buffer{&a, &b} {
		if code := run(context.Background(), &env{stdout: buf, stderr: &errs}, []string{"form", formCase, "--out", "-"}); code != 0 {
			t.Fatalf("exit %d: %s", code, errs.String())
		}
	}
	if !bytes.HasPrefix(a.Bytes(), []byte("%PDF-")) || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the same case gave different PDFs (or no PDF) on stdout")
	}
}
