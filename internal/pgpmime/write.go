package pgpmime

import (
	"bufio"
	"crypto"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/emersion/go-message/textproto"
)

// Attachment is one file of an encrypted mail. Open is called once, while
// the mail is written, and the file is streamed from it.
type Attachment struct {
	Filename    string
	ContentType string // application/octet-stream when empty
	Open        func() (io.ReadCloser, error)
}

// Message is what WriteEncrypted puts in a mail.
type Message struct {
	// Header is the outer header: From, To, Subject, Date, Message-ID and
	// whatever else the caller sets. Content-Type and MIME-Version are
	// set by WriteEncrypted. The outer header travels in the clear, so it
	// must not hold medical content.
	Header textproto.Header
	// Text is the body text (UTF-8).
	Text        string
	Attachments []Attachment
	// Boundary and InnerBoundary fix the MIME boundaries of the outer and
	// the encrypted entity (for reproducible tests); random when empty.
	Boundary, InnerBoundary string
}

// protectedHeaders are copied into the encrypted entity ("protected
// headers", as Thunderbird shows them) so the decrypted mail is complete.
var protectedHeaders = []string{"From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-Id"}

// WriteEncrypted writes m as an RFC 3156 multipart/encrypted mail to w:
// signed by signer and encrypted to every key in to (RFC 3156 §6.2, one
// OpenPGP message that is signed and encrypted), signature time now. Every
// recipient key is judged at now for its registered address first; an
// unusable one fails with ErrNoUsableKey before anything is written.
// Attachments are streamed: memory use does not grow with their size.
func WriteEncrypted(w io.Writer, m *Message, to []*PublicKey, signer *ServiceKey, now time.Time) error {
	if len(to) == 0 {
		return fmt.Errorf("%w: no recipients", ErrNoUsableKey)
	}
	if signer == nil {
		return errors.New("write encrypted: no signing key")
	}
	entities := make([]*openpgp.Entity, 0, len(to))
	for _, k := range to {
		if k == nil {
			return fmt.Errorf("%w: nil recipient key", ErrNoUsableKey)
		}
		if v := Judge(k, k.Address, now); !v.Usable {
			return fmt.Errorf("%w: %s: %s", ErrNoUsableKey, k.Address, v.Reason)
		}
		entities = append(entities, k.entity)
	}
	if _, ok := signer.entity.SigningKey(now); !ok {
		return fmt.Errorf("write encrypted: the service key %s cannot sign at %s (expired or revoked)", signer.Fingerprint(), now.UTC().Format(time.RFC3339))
	}

	outer := m.Header.Copy()
	outer.Set("MIME-Version", "1.0")
	mw := textproto.NewMultipartWriter(w)
	if m.Boundary != "" {
		if err := mw.SetBoundary(m.Boundary); err != nil {
			return fmt.Errorf("write encrypted: boundary: %w", err)
		}
	}
	outer.Set("Content-Type", `multipart/encrypted; protocol="application/pgp-encrypted"; boundary="`+mw.Boundary()+`"`)
	outer.Del("Content-Transfer-Encoding")
	if err := textproto.WriteHeader(w, outer); err != nil {
		return fmt.Errorf("write encrypted: header: %w", err)
	}
	// A short preamble for readers without OpenPGP support.
	if _, err := io.WriteString(w, "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"); err != nil {
		return err
	}

	var ctl textproto.Header
	ctl.Set("Content-Type", "application/pgp-encrypted")
	ctl.Set("Content-Description", "PGP/MIME version identification")
	cw, err := mw.CreatePart(ctl)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(cw, "Version: 1\r\n"); err != nil {
		return err
	}

	var enc textproto.Header
	enc.Set("Content-Type", `application/octet-stream; name="encrypted.asc"`)
	enc.Set("Content-Description", "OpenPGP encrypted message")
	enc.Set("Content-Disposition", `inline; filename="encrypted.asc"`)
	ew, err := mw.CreatePart(enc)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(ew, 64<<10)
	aw, err := newArmorWriter(bw, "PGP MESSAGE")
	if err != nil {
		return err
	}
	cfg := messageConfig(now)
	hints := &openpgp.FileHints{IsBinary: true, ModTime: now}
	// Armor on another goroutine; Close ends it on every path.
	async := newAsyncWriter(aw)
	defer async.Close()
	seipd, err := encryptV1(async, entities, now)
	if err != nil {
		return fmt.Errorf("write encrypted: %w", err)
	}
	// Signed inside the encryption (one-pass signature, literal data,
	// signature), as openpgp.Encrypt with a signer writes it.
	pw, err := openpgp.Sign(seipd, signer.entity, hints, cfg)
	if err != nil {
		return fmt.Errorf("write encrypted: %w", err)
	}
	// The OpenPGP writer emits a packet per Write; batch the MIME writer's
	// small writes (header lines, 76-byte base64 lines) into large ones.
	plain := bufio.NewWriterSize(pw, 64<<10)
	if err := writeInner(plain, m); err != nil {
		return err
	}
	if err := plain.Flush(); err != nil {
		return err
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("write encrypted: %w", err)
	}
	if err := seipd.Close(); err != nil {
		return fmt.Errorf("write encrypted: %w", err)
	}
	if err := async.Close(); err != nil {
		return err
	}
	if err := aw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return mw.Close()
}

// messageConfig is the OpenPGP configuration for what the service writes:
// AES-256, SHA-256, no compression (documents are mostly PDF and images),
// and the caller's clock for signature and literal data times.
func messageConfig(now time.Time) *packet.Config {
	return &packet.Config{
		DefaultCipher:          packet.CipherAES256,
		DefaultHash:            crypto.SHA256,
		DefaultCompressionAlgo: packet.CompressionNone,
		Time:                   func() time.Time { return now },
	}
}

// writeInner writes the MIME entity that is encrypted: multipart/mixed with
// the text (quoted-printable UTF-8) and the attachments (base64).
func writeInner(w io.Writer, m *Message) error {
	mw := textproto.NewMultipartWriter(w)
	if m.InnerBoundary != "" {
		if err := mw.SetBoundary(m.InnerBoundary); err != nil {
			return fmt.Errorf("write encrypted: inner boundary: %w", err)
		}
	}
	var h textproto.Header
	for _, k := range protectedHeaders {
		if v := m.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	h.Set("MIME-Version", "1.0")
	h.Set("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": mw.Boundary(), "protected-headers": "v1"}))
	if err := textproto.WriteHeader(w, h); err != nil {
		return fmt.Errorf("write encrypted: inner header: %w", err)
	}
	var th textproto.Header
	th.Set("Content-Type", "text/plain; charset=utf-8")
	th.Set("Content-Transfer-Encoding", "quoted-printable")
	pw, err := mw.CreatePart(th)
	if err != nil {
		return err
	}
	qw := quotedprintable.NewWriter(pw)
	if _, err := io.WriteString(qw, m.Text); err != nil {
		return err
	}
	if err := qw.Close(); err != nil {
		return err
	}
	for i, a := range m.Attachments {
		if err := writeAttachment(mw, a); err != nil {
			return fmt.Errorf("write encrypted: attachment %d: %w", i+1, err)
		}
	}
	return mw.Close()
}

func writeAttachment(mw *textproto.MultipartWriter, a Attachment) error {
	if a.Open == nil {
		return errors.New("no content")
	}
	ct := a.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("content type %q: %w", ct, err)
	}
	dparams := map[string]string{}
	if a.Filename != "" {
		params["name"] = a.Filename
		dparams["filename"] = a.Filename
	}
	var h textproto.Header
	h.Set("Content-Type", mime.FormatMediaType(mt, params))
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", dparams))
	h.Set("Content-Transfer-Encoding", "base64")
	pw, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	rc, err := a.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	bw := newBase64Lines(pw, 57) // 76 characters a line (RFC 2045 §6.8)
	if _, err := io.Copy(bw, rc); err != nil {
		return err
	}
	return bw.Close()
}
