package pgpmime

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// testService makes a passphrase-protected service key the way the CLI
// does, and loads it back.
func testService(t *testing.T, now time.Time) *ServiceKey {
	t.Helper()
	pass := []byte("correct horse battery staple")
	armored, err := GenerateServiceKey("Second Opinion", "so@service.example.test", now.Add(-time.Hour), pass)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(armored, []byte("PRIVATE KEY")) {
		t.Fatal("generated key is not a private key")
	}
	if _, err := ParseServiceKey(armored, []byte("wrong")); err == nil {
		t.Fatal("a wrong passphrase unlocked the service key")
	}
	svc, err := ParseServiceKey(armored, pass)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func testHeader(from, to string) textproto.Header {
	var h textproto.Header
	h.Set("From", from)
	h.Set("To", to)
	h.Set("Subject", "[SO-2026-0042] Stukken")
	h.Set("Date", "Mon, 02 Mar 2026 09:00:00 +0100")
	h.Set("Message-Id", "<so-2026-0042.1@service.example.test>")
	return h
}

// outerParts parses a multipart/encrypted mail and returns the armored
// payload, checking the RFC 3156 structure on the way.
func outerParts(t *testing.T, mail []byte) []byte {
	t.Helper()
	e, err := message.Read(bytes.NewReader(mail))
	if err != nil {
		t.Fatalf("outer message does not parse: %v", err)
	}
	mt, params, _ := e.Header.ContentType()
	if mt != "multipart/encrypted" || params["protocol"] != "application/pgp-encrypted" {
		t.Fatalf("outer Content-Type %q %v", mt, params)
	}
	mr := e.MultipartReader()
	ctl, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if mt, _, _ := ctl.Header.ContentType(); mt != "application/pgp-encrypted" {
		t.Fatalf("control part %q", mt)
	}
	if b, _ := io.ReadAll(ctl.Body); !bytes.Contains(b, []byte("Version: 1")) {
		t.Fatalf("control part body %q", b)
	}
	enc, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if mt, _, _ := enc.Header.ContentType(); mt != "application/octet-stream" {
		t.Fatalf("encrypted part %q", mt)
	}
	payload, err := io.ReadAll(enc.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(payload, []byte("-----BEGIN PGP MESSAGE-----\r\n")) {
		t.Fatalf("encrypted part is not armored: %.60q", payload)
	}
	return payload
}

type gotPart struct {
	contentType, filename string
	body                  []byte
}

// innerParts parses the decrypted entity as a mail client would.
func innerParts(t *testing.T, inner []byte) []gotPart {
	t.Helper()
	e, err := message.Read(bytes.NewReader(inner))
	if err != nil {
		t.Fatalf("decrypted entity does not parse: %v", err)
	}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatalf("decrypted entity is not multipart: %v", e.Header.Get("Content-Type"))
	}
	var parts []gotPart
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		mt, _, _ := p.Header.ContentType()
		_, dp, _ := p.Header.ContentDisposition()
		b, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, gotPart{mt, dp["filename"], b})
	}
	return parts
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func bytesAttachment(name, ct string, b []byte) Attachment {
	return Attachment{Filename: name, ContentType: ct, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}}
}

// TestGnuPGReadsWhatWeWrite: GnuPG decrypts our mail and reports a good
// signature by the service key; the decrypted entity is a normal MIME
// message whose attachments equal the originals byte for byte.
func TestGnuPGReadsWhatWeWrite(t *testing.T) {
	g := newGnuPG(t)
	arts := g.genKey("Dr. A. Arts <arts@example.test>")
	arts.Address = "arts@example.test"
	now := time.Now()
	svc := testService(t, now)
	g.importKey(svc.Public())

	pdf := append([]byte("%PDF-1.4\n"), randomBytes(t, 300<<10)...)
	scan := randomBytes(t, 7777)
	text := "Geachte dokter Arts,\n\nHierbij de stukken voor de second opinion (€, ë).\n"
	m := &Message{
		Header: testHeader("Second Opinion <so@service.example.test>", "Dr. A. Arts <arts@example.test>"),
		Text:   text,
		Attachments: []Attachment{
			bytesAttachment("verslag bedrijfsarts.pdf", "application/pdf", pdf),
			bytesAttachment("scan-één.bin", "", scan),
		},
	}
	var out bytes.Buffer
	if err := WriteEncrypted(&out, m, []*PublicKey{arts}, svc, now); err != nil {
		t.Fatal(err)
	}
	payload := outerParts(t, out.Bytes())

	inner, status, err := g.run(payload, "--decrypt")
	if err != nil {
		t.Fatalf("gpg cannot decrypt our mail: %v", err)
	}
	// DECRYPTION_INFO 2 9: integrity protected by the SHA-1 MDC, AES-256.
	for _, want := range []string{"DECRYPTION_INFO 2 9", "DECRYPTION_OKAY", "GOODSIG", "VALIDSIG " + svc.Fingerprint()} {
		if !strings.Contains(status, want) {
			t.Errorf("gpg status lacks %s:\n%s", want, status)
		}
	}
	parts := innerParts(t, inner)
	if len(parts) != 3 {
		t.Fatalf("got %d parts, want text and 2 attachments", len(parts))
	}
	if parts[0].contentType != "text/plain" || string(parts[0].body) != strings.ReplaceAll(text, "\n", "\r\n") {
		t.Errorf("text part = %s %q", parts[0].contentType, parts[0].body)
	}
	if parts[1].filename != "verslag bedrijfsarts.pdf" || parts[1].contentType != "application/pdf" || !bytes.Equal(parts[1].body, pdf) {
		t.Errorf("pdf attachment differs: %q %q, %d bytes", parts[1].filename, parts[1].contentType, len(parts[1].body))
	}
	if parts[2].filename != "scan-één.bin" || !bytes.Equal(parts[2].body, scan) {
		t.Errorf("second attachment differs: %q, %d bytes", parts[2].filename, len(parts[2].body))
	}
	e, _ := message.Read(bytes.NewReader(inner))
	if got := e.Header.Get("Subject"); got != "[SO-2026-0042] Stukken" {
		t.Errorf("protected Subject = %q", got)
	}
}

// TestWeReadWhatGnuPGWrites wraps GnuPG's output as mail clients do and
// checks decryption and the signer judgement.
func TestWeReadWhatGnuPGWrites(t *testing.T) {
	g := newGnuPG(t)
	arts := g.genKey("Dr. A. Arts <arts@example.test>")
	ander := g.genKey("Dr. B. Ander <ander@example.test>")
	// A stranger who claims the physician's address but is not on file.
	mallory := g.genKey("Mallory <arts@example.test>")
	now := time.Now()
	svc := testService(t, now)
	g.importKey(svc.Public())
	kr := keysDir(t, map[string]*openpgp.Entity{"arts@example.test": arts.entity, "ander@example.test": ander.entity})

	inner := []byte("Content-Type: text/plain; charset=utf-8\r\n\r\nMijn advies: passend werk, 4 uur per dag.\r\n")
	encrypt := func(signer *PublicKey, to string, data []byte) []byte {
		args := []string{"--armor", "--encrypt", "--recipient", to}
		if signer != nil {
			args = append(args, "--sign", "--local-user", signer.Fingerprint())
		}
		return g.must(data, args...)
	}
	pgpMIME := func(from string, armored []byte) []byte {
		return []byte("From: " + from + "\r\nTo: so@service.example.test\r\nSubject: Re: [SO-2026-0042]\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n" +
			"--b1\r\nContent-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n" +
			"--b1\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\nContent-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n" +
			string(armored) + "\r\n--b1--\r\n")
	}
	inline := func(from string, armored []byte) []byte {
		return []byte("From: " + from + "\r\nTo: so@service.example.test\r\nSubject: advies\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: text/plain; charset=us-ascii\r\n\r\nSee below.\r\n\r\n" + string(armored) + "\r\n")
	}
	signedEntity := func(signer *PublicKey) []byte {
		sig := g.must(inner, "--armor", "--detach-sign", "--local-user", signer.Fingerprint())
		return []byte("Content-Type: multipart/signed; micalg=pgp-sha256; protocol=\"application/pgp-signature\"; boundary=\"s1\"\r\n\r\n" +
			"This is an OpenPGP/MIME signed message\r\n--s1\r\n" + string(inner) + "\r\n--s1\r\n" +
			"Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n\r\n" + string(sig) + "\r\n--s1--\r\n")
	}
	svcFpr := svc.Fingerprint()
	tests := []struct {
		name       string
		mail       []byte
		wantErr    error
		wantKind   Kind
		wantStatus Status
		wantInner  string
	}{
		{"pgp/mime signed and encrypted", pgpMIME("arts@example.test", encrypt(arts, svcFpr, inner)), nil, KindPGPMIME, StatusValid, string(inner)},
		{"pgp/mime sender address in other case", pgpMIME("Dr. Arts <ARTS@Example.Test>", encrypt(arts, svcFpr, inner)), nil, KindPGPMIME, StatusValid, string(inner)},
		{"inline signed and encrypted", inline("arts@example.test", encrypt(arts, svcFpr, []byte("Mijn advies: passend werk.\n"))), nil, KindInline, StatusValid, "Mijn advies: passend werk.\n"},
		{"pgp/mime multipart/signed inside", pgpMIME("arts@example.test", encrypt(nil, svcFpr, signedEntity(arts))), nil, KindPGPMIMESigned, StatusValid, string(inner)},
		{"multipart/signed inside by another physician", pgpMIME("arts@example.test", encrypt(nil, svcFpr, signedEntity(ander))), nil, KindPGPMIMESigned, StatusWrongSigner, string(inner)},
		{"unsigned", pgpMIME("arts@example.test", encrypt(nil, svcFpr, inner)), nil, KindPGPMIME, StatusUnsigned, string(inner)},
		{"signed by another physician on file", pgpMIME("arts@example.test", encrypt(ander, svcFpr, inner)), nil, KindPGPMIME, StatusWrongSigner, string(inner)},
		{"signed by the right key, sent from another address", pgpMIME("ander@example.test", encrypt(arts, svcFpr, inner)), nil, KindPGPMIME, StatusWrongSigner, string(inner)},
		{"signed by a stranger using the address", pgpMIME("arts@example.test", encrypt(mallory, svcFpr, inner)), nil, KindPGPMIME, StatusUnknownSigner, string(inner)},
		{"inline signed by a stranger", inline("arts@example.test", encrypt(mallory, svcFpr, []byte("x\n"))), nil, KindInline, StatusUnknownSigner, "x\n"},
		{"encrypted to someone else", pgpMIME("arts@example.test", encrypt(arts, ander.Fingerprint(), inner)), ErrNotForUs, 0, 0, ""},
		{"clearsigned, not encrypted", inline("arts@example.test", g.must([]byte("advies\n"), "--clearsign", "--local-user", arts.Fingerprint())), ErrNotEncrypted, 0, 0, ""},
		{"plain mail", []byte("From: arts@example.test\r\nSubject: hoi\r\n\r\nGewoon tekst.\r\n"), ErrNotEncrypted, 0, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Read(bytes.NewReader(tc.mail), svc, kr, now)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Kind != tc.wantKind || d.Signature.Status != tc.wantStatus {
				t.Errorf("kind %v status %v (%v), want %v %v", d.Kind, d.Signature.Status, d.Signature.Err, tc.wantKind, tc.wantStatus)
			}
			if !strings.Contains(string(d.Inner), tc.wantInner) {
				t.Errorf("inner = %q, want it to hold %q", d.Inner, tc.wantInner)
			}
			if tc.wantKind != KindInline && string(d.Inner) != tc.wantInner {
				t.Errorf("inner = %q, want exactly %q", d.Inner, tc.wantInner)
			}
			gotErr := RequireSignedBy(d, nil)
			if (tc.wantStatus == StatusValid) != (gotErr == nil) {
				t.Errorf("RequireSignedBy = %v for status %v", gotErr, d.Signature.Status)
			}
			if tc.wantStatus == StatusValid {
				if d.Signature.SignerFingerprint != arts.Fingerprint() {
					t.Errorf("signer %s, want %s", d.Signature.SignerFingerprint, arts.Fingerprint())
				}
				if err := RequireSignedBy(d, ander); !errors.Is(err, ErrNotAuthenticated) {
					t.Errorf("RequireSignedBy(other key) = %v", err)
				}
			}
		})
	}
}

// TestJudgeGnuPGKeys judges keys made and revoked by GnuPG itself.
func TestJudgeGnuPGKeys(t *testing.T) {
	g := newGnuPG(t)
	good := g.genKey("Dr. A. Arts <arts@example.test>")
	// Made in 2020 with a one-year lifetime: expired now.
	old := g.genKey("Dr. O. Old <old@example.test>", "--faked-system-time", "20200101T000000!")
	// GnuPG writes a revocation certificate at key generation; import it.
	rev := g.genKey("Dr. R. Revoked <rev@example.test>")
	cert, err := os.ReadFile(filepath.Join(g.home, "openpgp-revocs.d", rev.Fingerprint()+".rev"))
	if err != nil {
		t.Fatal(err)
	}
	g.must(bytes.ReplaceAll(cert, []byte(":-----BEGIN"), []byte("-----BEGIN")), "--import")
	rev = g.export(rev.Fingerprint())
	// A second user ID, then revoked.
	two := g.genKey("Dr. T. Two <two@example.test>")
	g.must(nil, "--quick-add-uid", two.Fingerprint(), "Dr. T. Two <oud@example.test>")
	g.must(nil, "--quick-revoke-uid", two.Fingerprint(), "Dr. T. Two <oud@example.test>")
	two = g.export(two.Fingerprint())
	// Sign-only: a primary key without an encryption subkey.
	g.must(nil, "--quick-gen-key", "Dr. S. Sign <sign@example.test>", "ed25519", "sign", "2y")
	signOnly := g.export("sign@example.test")
	// RSA 2048.
	g.must(nil, "--quick-gen-key", "Dr. W. Weak <weak@example.test>", "rsa2048", "default", "2y")
	weak := g.export("weak@example.test")
	// GnuPG dates a revocation a second after the signature it revokes, to
	// order them; judge a little later.
	now := time.Now().Add(3 * time.Second)

	tests := []struct {
		name string
		key  *PublicKey
		addr string
		want Problem
	}{
		{"good", good, "arts@example.test", ProblemNone},
		{"good, address in capitals", good, "Arts@Example.TEST", ProblemNone},
		{"expired", old, "old@example.test", ProblemExpired},
		{"revoked", rev, "rev@example.test", ProblemRevoked},
		{"remaining user ID", two, "two@example.test", ProblemNone},
		{"revoked user ID", two, "oud@example.test", ProblemUserID},
		{"sign-only", signOnly, "sign@example.test", ProblemNoEncrypt},
		{"rsa 2048", weak, "weak@example.test", ProblemWeak},
		{"address mismatch", good, "ander@example.test", ProblemUserID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := Judge(tc.key, tc.addr, now)
			if v.Problem != tc.want || v.Usable != (tc.want == ProblemNone) {
				t.Fatalf("verdict %+v, want problem %q", v, tc.want)
			}
			if !v.Usable && (v.Reason == "" || !errors.Is(v.Err(), ErrNoUsableKey)) {
				t.Errorf("unusable without reason: %+v", v)
			}
		})
	}
}
