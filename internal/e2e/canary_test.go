package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io"
	"mime/quotedprintable"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"

	"secondopinion/internal/mailout"
	"secondopinion/internal/rig"
)

func canary(t *testing.T, what string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "CANARY-" + what + "-" + hex.EncodeToString(b)
}

// TestCanary sends medical content holding unique canaries through the
// whole send path — a document and the confirmed question from the
// original physician, the advice from the SO physician, the employee's
// own question — to completion with consent to share with both. No
// canary may appear in clear in any mail the SMTP server accepted (raw
// bytes, and every MIME part of every mail decoded), nor in any line the
// daemon logged at Debug level, nor in the mail server's log. The
// employee's own question is in their own request; it must not come back
// in clear in anything the daemon sent.
func TestCanary(t *testing.T) {
	be := chooseBackend(t)
	var srv *servers
	if be == realServers {
		srv = startServers(t, []string{"canary"})
	}
	var acceptedMu sync.Mutex
	var accepted [][]byte
	e := newEnv(t, be, srv, "canary", func(o *rig.Options) {
		o.OnAccept = func(from string, to []string, raw []byte) {
			acceptedMu.Lock()
			accepted = append(accepted, append([]byte(nil), raw...))
			acceptedMu.Unlock()
		}
	})
	doc, q, adv, own := canary(t, "DOC"), canary(t, "QUESTION"), canary(t, "ADVICE"), canary(t, "OWN")
	e.qOwn, e.qConf = own, q
	e.secrets = []string{doc, q, adv, own}
	e.employeeOwn = []string{own}
	e.docs = []rig.File{
		{Name: "Verslag arbeidsdeskundige.pdf", Body: fakePDF("Medisch: " + doc)},
		{Name: "Brief huisarts.pdf", Body: bytes.Repeat([]byte("x"), 200_000)}, // a larger one, base64 over many lines
	}
	e.docs[1].Body = append(e.docs[1].Body, []byte(doc)...)
	e.advice = rig.File{Name: "Advies.pdf", Body: fakePDF("Advies: " + adv)}

	fb := e.advise(e.advising())
	e.reply(e.p.employee, fb, "bedrijfsarts: ja, werkgever: ja", false)
	e.next(e.p.employee, "afgerond")
	e.next(e.p.original, "afgerond")
	e.next(e.p.employer, "beveiligd")
	e.checkMail(map[string][]string{
		"intake": {e.p.original}, "form_physician": {e.p.original}, "completion_physician_advice": {e.p.original}, "forward": {e.p.bakker},
	})

	// Everything the SMTP server accepted: its OnAccept record in process,
	// every maildir of the real Postfix.
	var all [][]byte
	if be == realServers {
		for _, a := range e.p.addresses() {
			all = append(all, e.inbox(a)...)
		}
		for _, c := range []string{doc, q, adv, own} {
			if strings.Contains(srv.pf.Log(), c) {
				t.Errorf("canary %s in Postfix's log", c)
			}
		}
	} else {
		acceptedMu.Lock()
		all = accepted
		acceptedMu.Unlock()
	}
	if len(all) < 20 {
		t.Fatalf("only %d mails seen; the path was not run", len(all))
	}
	fromDaemon := 0
	for _, raw := range all {
		daemon := bytes.Contains(raw, []byte("X-Secondopinion-Case:"))
		if daemon {
			fromDaemon++
		}
		for _, c := range []string{doc, q, adv, own} {
			if c == own && !daemon {
				continue // the employee's own request
			}
			for _, form := range encodings(c) {
				for _, txt := range plainTexts(raw) {
					if bytes.Contains(txt, form) {
						t.Errorf("canary %s in clear (as %q) in a mail %s", c, form, describe(raw))
					}
				}
			}
		}
	}
	if fromDaemon < 15 {
		t.Errorf("only %d mails from the daemon checked", fromDaemon)
	}
	for _, c := range []string{doc, q, adv, own} {
		if strings.Contains(e.log.String(), c) {
			t.Errorf("canary %s in the daemon's log", c)
		}
	}
	if !strings.Contains(e.log.String(), "level=DEBUG") && !strings.Contains(e.log.String(), "level=INFO") {
		t.Error("the daemon logged nothing: the log check proves nothing")
	}
	checkFormPDF(t, e, q)
}

// encodings are the forms a string takes in mail a reader can decode
// without a key: itself, base64 at each alignment, quoted-printable.
func encodings(s string) [][]byte {
	out := [][]byte{[]byte(s)}
	for pad := 0; pad < 3; pad++ {
		enc := base64.StdEncoding.EncodeToString(append(bytes.Repeat([]byte{0}, pad), s...))
		// Drop the characters that depend on the neighbours.
		start := (pad*4 + 2) / 3
		if start+16 < len(enc)-4 {
			out = append(out, []byte(enc[start+2:len(enc)-4]))
		}
	}
	var qp bytes.Buffer
	w := quotedprintable.NewWriter(&qp)
	w.Write([]byte(s))
	w.Close()
	return append(out, qp.Bytes())
}

func describe(raw []byte) string {
	ent, err := gomessage.Read(bytes.NewReader(raw))
	if ent == nil {
		return "(unparsable: " + err.Error() + ")"
	}
	return "to " + ent.Header.Get("To") + " subject " + ent.Header.Get("Subject")
}

// checkFormPDF reads the authorisation form the employee received in
// ordinary mail with pdftotext: what a reader of that mail sees in it.
// The documents' contents are never in it; the form does list the
// question (DESIGN step 4) — the employee's own authorisation.
func checkFormPDF(t *testing.T, e *env, question string) {
	t.Helper()
	if _, err := exec.LookPath("pdftotext"); err != nil {
		t.Log("pdftotext not installed: the form's text is not checked")
		return
	}
	for _, m := range e.received()[e.p.employee] {
		if m.template != "form_employee" {
			continue
		}
		ent, err := gomessage.Read(bytes.NewReader(m.raw))
		if ent == nil {
			t.Fatal(err)
		}
		var pdf []byte
		ent.Walk(func(_ []int, p *gomessage.Entity, _ error) error {
			if mt, _, _ := p.Header.ContentType(); mt == "application/pdf" {
				pdf, _ = readAll(p)
			}
			return nil
		})
		if pdf == nil {
			t.Fatal("the employee's form mail carries no PDF")
		}
		path := filepath.Join(t.TempDir(), "form.pdf")
		if err := os.WriteFile(path, pdf, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("pdftotext", "-enc", "UTF-8", path, "-").Output()
		if err != nil {
			t.Fatalf("pdftotext: %v", err)
		}
		for _, c := range e.secrets {
			if c != question && strings.Contains(string(out), c) {
				t.Errorf("the employee's plain-mail form shows medical content %s", c)
			}
		}
		if !strings.Contains(strings.Join(strings.Fields(string(out)), ""), question) {
			t.Logf("note: the form does not show the confirmed question")
		} else {
			t.Logf("note: the employee's form, sent in ordinary mail, shows the question as the original physician confirmed it (DESIGN step 4)")
		}
	}
}

func readAll(p *gomessage.Entity) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(p.Body)
	return b.Bytes(), err
}

// The scanner the canary and branch tests rely on finds a canary hidden
// by the encodings mail uses: a quoted-printable text with a soft line
// break inside the canary, a base64 attachment, an encoded-word file name.
func TestScannerSeesThroughEncodings(t *testing.T) {
	c := canary(t, "SCAN")
	for name, m := range map[string]mailout.Mail{
		"qp text, long line": {Text: strings.Repeat("é", 70) + c},
		"base64 attachment": {Text: "zie bijlage", Attachments: []mailout.Attachment{{Filename: "a.pdf", ContentType: "application/pdf",
			Open: func() (io.ReadCloser, error) {
				return io.NopCloser(strings.NewReader(strings.Repeat("y", 1001) + c)), nil
			}}}},
		"encoded file name": {Text: "zie bijlage", Attachments: []mailout.Attachment{{Filename: "Brief é " + c + ".pdf", ContentType: "application/pdf",
			Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x")), nil }}}},
	} {
		m.From = mailout.Address{Email: "so@secondopinion.example"}
		m.To = []mailout.Address{{Email: "a@b.example"}}
		m.Subject, m.MessageID, m.Date = "t", "t@secondopinion.example", time.Now()
		var buf bytes.Buffer
		if err := mailout.Compose(&buf, m); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(buf.Bytes(), []byte(c)) {
			t.Logf("%s: the canary is in the raw bytes already", name)
		}
		found := false
		for _, txt := range plainTexts(buf.Bytes()) {
			found = found || bytes.Contains(txt, []byte(c))
		}
		if !found {
			t.Errorf("%s: the scanner misses the canary", name)
		}
	}
}
