package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"os"
	"os/exec"

	"strings"
	"time"

	gomessage "github.com/emersion/go-message"

	"secondopinion/internal/rig"
	"secondopinion/internal/testenv"
)

// gpgClient is a physician's mail client built on the real GnuPG: a
// temporary GNUPGHOME with their private key (as the rig wrote it) and the
// service's public key, acting at the rig's clock.
type gpgClient struct {
	e    *env
	addr string
	home string
}

func newGPG(e *env, addr string) *gpgClient {
	e.t.Helper()
	testenv.Require(e.t, "gpg", "gpgconf")
	// A short home keeps gpg-agent's socket path under the 108-byte limit.
	home, err := os.MkdirTemp("", "g")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		e.t.Fatal(err)
	}
	g := &gpgClient{e: e, addr: addr, home: home}
	e.t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		os.RemoveAll(home)
	})
	priv, err := os.ReadFile(e.keyFile(addr))
	if err != nil {
		e.t.Fatalf("%s's private key: %v", addr, err)
	}
	svc, err := e.r.Service.ArmoredPublic()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, k := range [][]byte{priv, svc} {
		if _, status, err := g.run(k, "--import"); err != nil {
			e.t.Fatalf("gpg --import: %v\n%s", err, status)
		}
	}
	return g
}

// run runs gpg with stdin and returns its output and its status lines
// (with the diagnostics).
func (g *gpgClient) run(stdin []byte, args ...string) (out []byte, status string, err error) {
	base := []string{"--homedir", g.home, "--batch", "--no-tty", "--pinentry-mode", "loopback", "--trust-model", "always",
		"--faked-system-time", fmt.Sprintf("%d", g.e.r.Clock.Now().Unix()), "--status-fd", "2"}
	cmd := exec.Command("gpg", append(base, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var o, s bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &s
	err = cmd.Run()
	return o.Bytes(), s.String(), err
}

// reply answers a mail as Thunderbird with OpenPGP does: the reply text
// and the attachments as one MIME entity, signed and encrypted by gpg to
// the service key, wrapped as RFC 3156 multipart/encrypted.
func (g *gpgClient) reply(to *rig.Received, text string, files ...rig.File) []byte {
	e := g.e
	e.t.Helper()
	var inner bytes.Buffer
	inner.WriteString("Content-Type: multipart/mixed; boundary=\"inner-7a1c\"\r\n\r\n--inner-7a1c\r\n")
	inner.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&inner)
	body := text + "\n\n" + rig.Quote(to.Text(), to.Msg.From.Name, to.Msg.Date.In(rig.Amsterdam))
	qp.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n")))
	qp.Close()
	for _, f := range files {
		inner.WriteString("\r\n--inner-7a1c\r\n")
		fmt.Fprintf(&inner, "Content-Type: %s\r\n", mime.FormatMediaType("application/pdf", map[string]string{"name": f.Name}))
		fmt.Fprintf(&inner, "Content-Disposition: %s\r\n", mime.FormatMediaType("attachment", map[string]string{"filename": f.Name}))
		inner.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
		b64 := base64.StdEncoding.EncodeToString(f.Body)
		for len(b64) > 76 {
			inner.WriteString(b64[:76] + "\r\n")
			b64 = b64[76:]
		}
		inner.WriteString(b64 + "\r\n")
	}
	inner.WriteString("\r\n--inner-7a1c--\r\n")
	armored, status, err := g.run(inner.Bytes(), "--armor", "--sign", "--encrypt", "--local-user", g.addr, "--recipient", e.r.Info.Address())
	if err != nil || !strings.Contains(status, "[GNUPG:] SIG_CREATED") || !strings.Contains(status, "[GNUPG:] END_ENCRYPTION") {
		e.t.Fatalf("gpg sign+encrypt: %v\n%s", err, status)
	}
	replyTo := to.Msg.From.Address
	if len(to.Msg.ReplyTo) > 0 {
		replyTo = to.Msg.ReplyTo[0].Address
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s <%s>\r\n", mime.QEncoding.Encode("utf-8", e.person(g.addr).Name), g.addr)
	fmt.Fprintf(&b, "To: <%s>\r\n", replyTo)
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", "Re: "+to.Msg.Subject))
	fmt.Fprintf(&b, "Date: %s\r\n", e.r.Clock.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <gpg.%d.%s>\r\n", time.Now().UnixNano(), g.addr)
	fmt.Fprintf(&b, "In-Reply-To: <%s>\r\nReferences: <%s>\r\n", to.Msg.MessageID, to.Msg.MessageID)
	b.WriteString("User-Agent: Mozilla/5.0 Thunderbird/128.0\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"enc-9f3b\"\r\n\r\n")
	b.WriteString("This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n--enc-9f3b\r\n")
	b.WriteString("Content-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n--enc-9f3b\r\n")
	b.WriteString("Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\nContent-Description: OpenPGP encrypted message\r\n")
	b.WriteString("Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n")
	b.Write(bytes.ReplaceAll(bytes.ReplaceAll(armored, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n")))
	b.WriteString("\r\n--enc-9f3b--\r\n")
	if err := e.r.Submit(e.ctx, g.addr, replyTo, b.Bytes()); err != nil {
		e.t.Fatalf("submit: %v", err)
	}
	return b.Bytes()
}

// decrypt opens a PGP/MIME mail from the service with gpg, requires
// DECRYPTION_OKAY and a VALIDSIG of the service key, and returns the
// attachments of the decrypted entity by file name, and its text.
func (g *gpgClient) decrypt(raw []byte) (files map[string][]byte, text string) {
	e := g.e
	e.t.Helper()
	ent, err := gomessage.Read(bytes.NewReader(raw))
	if err != nil {
		e.t.Fatalf("mail does not parse: %v", err)
	}
	mr := ent.MultipartReader()
	if mr == nil {
		e.t.Fatalf("not multipart: %s", ent.Header.Get("Content-Type"))
	}
	var payload []byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			e.t.Fatal(err)
		}
		if mt, _, _ := p.Header.ContentType(); mt == "application/octet-stream" {
			payload, _ = io.ReadAll(p.Body)
		}
	}
	if payload == nil {
		e.t.Fatal("no application/octet-stream part")
	}
	out, status, err := g.run(payload, "--decrypt")
	if err != nil {
		e.t.Fatalf("gpg --decrypt: %v\n%s", err, status)
	}
	fpr := strings.ToUpper(e.r.Service.Fingerprint())
	if !strings.Contains(status, "[GNUPG:] DECRYPTION_OKAY") || !strings.Contains(status, "[GNUPG:] VALIDSIG "+fpr) {
		e.t.Fatalf("gpg did not report DECRYPTION_OKAY and VALIDSIG %s:\n%s", fpr, status)
	}
	inner, err := gomessage.Read(bytes.NewReader(out))
	if err != nil {
		e.t.Fatalf("decrypted entity does not parse: %v", err)
	}
	files = map[string][]byte{}
	err = inner.Walk(func(path []int, part *gomessage.Entity, err error) error {
		if err != nil {
			return err
		}
		if part.MultipartReader() != nil {
			return nil
		}
		b, err := io.ReadAll(part.Body)
		if err != nil {
			return err
		}
		if _, dp, _ := part.Header.ContentDisposition(); dp["filename"] != "" {
			files[dp["filename"]] = b
		} else if mt, _, _ := part.Header.ContentType(); mt == "text/plain" && text == "" {
			text = string(b)
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("decrypted entity: %v", err)
	}
	return files, text
}

// runHappyPath: the procedure from request to completion, with the
// original physician writing from a GnuPG mail client and the
// second-opinion physician reading the forward with GnuPG.
func runHappyPath(e *env) {
	original := newGPG(e, e.p.original)
	bakker := newGPG(e, e.p.bakker)
	in := e.request()
	e.r.Clock.Advance(time.Hour)
	original.reply(in, e.confirmText(), e.docs...)
	prop := e.next(e.p.employee, "kies uw")
	e.reply(e.p.employee, prop, "Ik kies nummer 1.", false)
	e.sign()
	fw := e.accept(e.p.bakker)

	files, text := bakker.decrypt(fw.Raw)
	if !strings.Contains(text, e.qConf) {
		e.t.Errorf("gpg's decrypted forward lacks the confirmed question:\n%s", text)
	}
	if len(files) != len(e.docs) {
		e.t.Errorf("gpg finds %d attachments in the forward, want %d", len(files), len(e.docs))
	}
	for _, d := range e.docs {
		if !bytes.Equal(files[d.Name], d.Body) {
			e.t.Errorf("gpg's decrypted %q differs from the document the original physician sent", d.Name)
		}
	}

	q := e.next(e.p.bakker, "advies na het consult")
	fb := e.advise(q)
	e.reply(e.p.employee, fb, "Bedrijfsarts: ja\nWerkgever: nee", false)
	e.next(e.p.employee, "afgerond")
	done := e.next(e.p.original, "afgerond")
	files, _ = original.decrypt(done.Raw)
	if !bytes.Equal(files[e.advice.Name], e.advice.Body) {
		e.t.Errorf("the original physician's completion notice does not carry the advice (files %v)", keys(files))
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// runExpiredKey: the chosen physician's key on file has expired. Nothing
// medical goes to them; they get the content-free key request and the
// backoffice an alert. Once their valid key is imported, the daily key
// check resumes the case and the forward goes out, encrypted.
func runExpiredKey(e *env) {
	e.accepting("1")
	req := e.next(e.p.bakker, "second opinion doen")
	e.reply(e.p.bakker, req, acceptText, false)
	kr := e.next(e.p.bakker, "PGP-sleutel")
	if kr.Msg.Encrypted || len(kr.Files) != 0 {
		e.t.Errorf("the key request is encrypted or carries files; it must be a plain, content-free notice")
	}
	al := e.next(e.p.backoffice, "Aandacht")
	if !strings.Contains(al.Text(), e.p.bakker) {
		e.t.Errorf("the backoffice alert does not name the physician whose key is unusable:\n%s", al.Text())
	}
	e.next(e.p.bakker, "advies na het consult")
	e.settle()
	for _, raw := range e.inbox(e.p.bakker) {
		if isPGPMIME(raw) {
			e.t.Fatal("medical mail reached the physician while their key was expired")
		}
	}
	if c := e.theCase(); c.Forwarded || !strings.EqualFold(c.WaitingKey, e.p.bakker) {
		e.t.Fatalf("forwarded %v, waiting for %q; want waiting for %s's key", c.Forwarded, c.WaitingKey, e.p.bakker)
	}
	// Nothing happens while the key stays unusable.
	if notes, err := e.r.Engine.CheckKeys(e.ctx); err != nil {
		e.t.Fatal(err)
	} else if strings.Contains(strings.Join(notes, "\n"), "resumed") {
		e.t.Fatalf("the case resumed with the expired key on file: %v", notes)
	}
	pub, err := e.person(e.p.bakker).Key.ArmoredPublic()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.r.Keys.Import(pub, e.r.Clock.Now()); err != nil {
		e.t.Fatalf("keys import: %v", err)
	}
	notes, err := e.r.Engine.CheckKeys(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if !strings.Contains(strings.Join(notes, "\n"), "resumed") {
		e.t.Errorf("the key check did not resume the case: %v", notes)
	}
	if log := e.log.String(); !strings.Contains(log, `level=INFO msg="key check" note="case `) || !strings.Contains(log, "resumed: a usable key for "+e.p.bakker) {
		e.t.Errorf("the daemon's log does not say the case resumed:\n%s", tail(log, 12))
	}
	e.checkForward(e.next(e.p.bakker, "medische stukken"))
}
