package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const corpusDir = "../../internal/message/testdata/corpus"

func runInspect(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), &env{stdout: &out, stderr: &errb}, append([]string{"inspect"}, args...))
	return code, out.String(), errb.String()
}

func TestInspect(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		code    int
		checks  map[string]any // top-level field → want (JSON types)
		answer  map[string]any // nil: answer must be null
		errPart string
	}{
		{
			name: "choice by number from outlook",
			args: []string{filepath.Join(corpusDir, "outlook-desktop-nl-choice.eml"), "--expect", "choice", "--options", "Dr. A. de Vries; drs. Petra Bakker-Jansen", "--now", "2026-12-01T09:00"},
			checks: map[string]any{
				"message_id": "AM0PR01MB1234.eurprd01.prod.outlook.com", "from": "jan.jansen@example.com", "case_ref": "SO-2026-0042",
				"auto_reply": false, "bounce": false,
			},
			answer: map[string]any{"kind": "choice", "value": "2"},
		},
		{
			name:   "datetime",
			args:   []string{"--expect", "datetime", "--now", "2026-12-01T09:00", filepath.Join(corpusDir, "gmail-nl-datetime.eml")},
			answer: map[string]any{"kind": "datetime", "value": "2026-12-10T14:30"},
		},
		{
			name:   "auto-reply has no answer",
			args:   []string{filepath.Join(corpusDir, "autoreply-outlook-nl.eml"), "--expect", "yesno"},
			checks: map[string]any{"auto_reply": true},
		},
		{
			name:   "bounce",
			args:   []string{filepath.Join(corpusDir, "bounce-postfix-dsn.eml")},
			checks: map[string]any{"bounce": true, "case_ref": nil},
		},
		{
			name:   "forged authentication results",
			args:   []string{filepath.Join(corpusDir, "spoofed-sender-forged-authres.eml"), "--authserv-id", "mx.example.nl", "--expect", "yesno"},
			checks: map[string]any{"from": "attacker@evil.example"},
			answer: map[string]any{"kind": "yesno", "value": "yes"},
		},
		{name: "unknown kind", args: []string{filepath.Join(corpusDir, "bounce-postfix-dsn.eml"), "--expect", "maybe"}, code: 2, errPart: "want one of choice"},
		{name: "no file", args: nil, code: 2, errPart: "want one FILE.eml"},
		{name: "missing file", args: []string{"does-not-exist.eml"}, code: 1, errPart: "does-not-exist.eml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runInspect(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit status %d, want %d; stderr: %s", code, tt.code, stderr)
			}
			if tt.code != 0 {
				if !strings.Contains(stderr, tt.errPart) {
					t.Errorf("stderr %q does not mention %q", stderr, tt.errPart)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("output is not one JSON object: %v\n%s", err, stdout)
			}
			for _, k := range []string{"message_id", "from", "case_ref", "auto_reply", "bounce", "reply_text", "attachments", "answer"} {
				if _, ok := got[k]; !ok {
					t.Errorf("output lacks %q", k)
				}
			}
			for k, want := range tt.checks {
				if got[k] != want {
					t.Errorf("%s = %v, want %v", k, got[k], want)
				}
			}
			ans, _ := got["answer"].(map[string]any)
			if tt.answer == nil && got["answer"] != nil {
				t.Errorf("answer = %v, want null", got["answer"])
			}
			for k, want := range tt.answer {
				if ans[k] != want {
					t.Errorf("answer.%s = %v, want %v", k, ans[k], want)
				}
			}
		})
	}
}

func TestInspectTooComplex(t *testing.T) {
	var b strings.Builder
	b.WriteString("From: a@example.com\r\nSubject: [SO-2026-0042] veel\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n")
	for range 5000 {
		b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n")
	}
	b.WriteString("--b--\r\n")
	path := filepath.Join(t.TempDir(), "many.eml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runInspect(t, path)
	if code != 1 || !strings.Contains(stderr, "too complex") {
		t.Fatalf("exit %d, stderr %q; want 1 and a too-complex error", code, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || got["case_ref"] != "SO-2026-0042" || got["error"] == nil {
		t.Errorf("want the partial report with case_ref and error, got %v (%v)", got, err)
	}
}
