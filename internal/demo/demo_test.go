package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"secondopinion/internal/message"
	"secondopinion/internal/pgpmime"
	"secondopinion/internal/procedure"
)

// TestDemo runs the demo as the README's first command does and checks
// what its user finds: the timeline, the directory, and that nothing
// medical crossed the SMTP server in clear.
func TestDemo(t *testing.T) {
	out := t.TempDir()
	var stdout bytes.Buffer
	sum, err := Run(context.Background(), Options{Out: out, Stdout: &stdout})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, stdout.String())
	}
	want := map[string]procedure.State{"SO-2026-0001": procedure.StateOutOfScope, "SO-2026-0002": procedure.StateCompleted}
	for ref, st := range want {
		if sum.Cases[ref] != st {
			t.Errorf("case %s is %s, want %s", ref, sum.Cases[ref], st)
		}
	}
	if sum.Quarantined != 0 {
		t.Errorf("%d messages quarantined in the demo", sum.Quarantined)
	}

	// The timeline is printed and kept.
	kept, err := os.ReadFile(filepath.Join(out, "timeline.txt"))
	if err != nil || !bytes.Equal(kept, stdout.Bytes()) {
		t.Errorf("timeline.txt differs from what was printed (%v)", err)
	}
	for _, s := range []string{"reminder→employee", "form_employee→employee", "the backup, accepts", "disclosed 2 document(s) to so",
		"medical_notice→employee (no PGP key: advice_employee withheld)", "audit chain verified"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("timeline lacks %q", s)
		}
	}

	// mail/: every mail that crossed the SMTP server; nothing for the
	// employer, who neither asked nor was consented to.
	mails, _ := filepath.Glob(filepath.Join(out, "mail", "*.eml"))
	if len(mails) != sum.Mails || len(mails) < 20 {
		t.Fatalf("%d .eml files for %d mails", len(mails), sum.Mails)
	}
	secrets := []string{"Probleemanalyse Şahin", "Brief orthopedisch chirurg", "hervatting eigen werk in aangepaste vorm", "zonder tillen boven 10 kg"}
	encrypted := 0
	for _, path := range mails {
		if strings.Contains(path, "hr@acme") {
			t.Errorf("the employer received %s", filepath.Base(path))
		}
		raw, _ := os.ReadFile(path)
		m, err := message.Parse(bytes.NewReader(raw), message.Options{OnAttachment: func(a *message.Attachment, body io.Reader) error {
			b, _ := io.ReadAll(body)
			for _, s := range secrets {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("%s: attachment %s holds %q in clear", filepath.Base(path), a.Name, s)
				}
			}
			return nil
		}})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if m.Encrypted {
			encrypted++
		}
		// The employee has no key: the feedback question must not claim
		// they received the advice by mail.
		if strings.Contains(m.Subject, "Mag het advies gedeeld worden") && strings.Contains(m.Text, "in een aparte e-mail gekregen") {
			t.Errorf("%s tells the keyless employee they received the advice", filepath.Base(path))
		}
		for _, s := range secrets {
			if bytes.Contains(raw, []byte(s)) || strings.Contains(m.Text, s) {
				t.Errorf("%s holds %q in clear", filepath.Base(path), s)
			}
		}
	}
	if encrypted < 5 {
		t.Errorf("only %d encrypted mails; intake, forward, advice and completion travel encrypted", encrypted)
	}

	// forms/: the PDF form the employee received.
	forms, _ := filepath.Glob(filepath.Join(out, "forms", "*.pdf"))
	if len(forms) != sum.Forms || len(forms) == 0 {
		t.Fatalf("forms %v", forms)
	}
	if pdf, _ := os.ReadFile(forms[0]); !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		t.Errorf("%s is not a PDF", forms[0])
	}

	// keys/: every participant's armored private key, usable without a
	// passphrase for the address it is named after.
	for _, who := range []string{"so@secondopinion.example", "a.devries@arbo-noord.example", "b.bakker@arbo-zuid.example"} {
		armored, err := os.ReadFile(filepath.Join(out, "keys", who+".asc"))
		if err != nil {
			t.Fatal(err)
		}
		k, err := pgpmime.ParseServiceKey(armored, nil)
		if err != nil {
			t.Errorf("keys/%s.asc: %v", who, err)
			continue
		}
		if v := pgpmime.Judge(k.Public(), who, time.Now()); !v.Usable {
			t.Errorf("keys/%s.asc is not a key for %s: %s", who, who, v.Reason)
		}
	}

	// audit.jsonl: one entry per line, each chained to the one before.
	f, err := os.Open(filepath.Join(out, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	prev, n := "", 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ PrevHash, Hash, Event string }
		var raw map[string]any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("audit line %d: %v", n+1, err)
		}
		e.PrevHash, _ = raw["prev_hash"].(string)
		e.Hash, _ = raw["hash"].(string)
		if n > 0 && e.PrevHash != prev {
			t.Fatalf("audit line %d does not chain to the line before", n+1)
		}
		prev = e.Hash
		n++
	}
	if n != sum.AuditEntries || n == 0 {
		t.Errorf("audit.jsonl has %d lines, the chain %d entries", n, sum.AuditEntries)
	}
}

// TestDemoReplacesEarlierOutput runs the demo twice into one directory.
func TestDemoReplacesEarlierOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo twice")
	}
	out := t.TempDir()
	first, err := Run(context.Background(), Options{Out: out})
	if err != nil {
		t.Fatal(err)
	}
	second, err := Run(context.Background(), Options{Out: out})
	if err != nil {
		t.Fatalf("second run into the same directory: %v", err)
	}
	if second.Mails != first.Mails || len(second.Cases) != 2 {
		t.Errorf("second run: %d mails (first %d), %d cases", second.Mails, first.Mails, len(second.Cases))
	}
	mails, _ := filepath.Glob(filepath.Join(out, "mail", "*.eml"))
	if len(mails) != second.Mails {
		t.Errorf("%d .eml files after two runs of %d mails each", len(mails), second.Mails)
	}
}
