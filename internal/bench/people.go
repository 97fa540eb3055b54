package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-message/mail"

	"secondopinion/internal/message"
	"secondopinion/internal/pgpmime"
	"secondopinion/internal/rig"
)

// Person is a participant with a mailbox; physicians have a key of their
// own to sign with and to decrypt what the service sends them.
type Person = rig.Person

// File is an attachment a participant sends or receives.
type File = rig.File

// Driver plays the participants: it composes their mail the way a mail
// client does (physicians PGP/MIME signed and encrypted), submits it over
// SMTP, and reads their mail from the postbox. It is the bench's and the
// crash test's own, so that it works against a daemon in another process
// as well as against the rig.
type Driver struct {
	SMTPAddr string
	Service  *pgpmime.PublicKey // encrypt to
	// Keys verify the service's signature when a participant decrypts
	// (see ParticipantKeyring).
	Keys *pgpmime.Keyring
	Box  *Postbox
	// Now is the participants' clock (Date headers, key checks).
	Now func() time.Time
	// Tag makes the participants' Message-IDs unique across runs.
	Tag string
	n   atomic.Int64
}

// ParticipantKeyring makes the keyring the participants' mail clients
// verify the service's signatures with: a keys dir at dir holding the
// service's public key alone, as a physician's client knows the service's
// key (and not every other physician's).
func ParticipantKeyring(dir string, service *pgpmime.PublicKey, now time.Time) (*pgpmime.Keyring, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("participant keyring: %w", err)
	}
	keys, err := pgpmime.OpenKeyring(dir)
	if err != nil {
		return nil, fmt.Errorf("participant keyring: %w", err)
	}
	armored, err := service.Armored()
	if err != nil {
		return nil, fmt.Errorf("participant keyring: %w", err)
	}
	if _, err := keys.Import(armored, now); err != nil {
		return nil, fmt.Errorf("participant keyring: %w", err)
	}
	return keys, nil
}

// Wait waits for p's next mail in case ref whose subject has one of words.
func (d *Driver) Wait(ctx context.Context, p *Person, ref string, words ...string) (*Mail, error) {
	return d.Box.Wait(ctx, p.Addr, ref, words...)
}

// Read parses a mail as its recipient reads it: the text and the
// attachments; an encrypted mail is decrypted with p's key and must carry
// a valid signature by the sender's key in d.Keys.
func (d *Driver) Read(p *Person, m *Mail) (text string, files []File, err error) {
	return d.read(p, m, true)
}

// ReadText is Read without taking the attachments out, as a mail client
// shows a mail (to choose, or to quote it in a reply).
func (d *Driver) ReadText(p *Person, m *Mail) (string, error) {
	text, _, err := d.read(p, m, false)
	return text, err
}

func (d *Driver) read(p *Person, m *Mail, withFiles bool) (string, []File, error) {
	raw := m.Raw
	if !m.pgpMIME {
		var files []File
		opts := message.Options{}
		if withFiles {
			opts.OnAttachment = collect(&files, len(raw)*3/4)
		}
		msg, err := message.Parse(bytes.NewReader(raw), opts)
		if err != nil {
			return "", nil, err
		}
		if !msg.Encrypted {
			return msg.Text, files, nil
		}
		// Inline PGP somewhere in the body: decrypt below.
	}
	if p.Key == nil {
		return "", nil, fmt.Errorf("%s cannot decrypt %q: no key", p.Name, m.Subject)
	}
	// The decrypted entity is about 3/4 of the armored mail (base64
	// armor); room for it up front saves a buffer grown by doubling.
	var inner bytes.Buffer
	inner.Grow(len(raw)*3/4 + 4<<10)
	dec, err := pgpmime.Decrypt(&inner, bytes.NewReader(raw), p.Key, d.Keys, d.Now())
	if err == nil {
		err = pgpmime.RequireSignedBy(dec, nil)
	}
	if err != nil {
		return "", nil, fmt.Errorf("%s cannot decrypt %q: %w", p.Name, m.Subject, err)
	}
	var files []File
	opts := message.Options{}
	if withFiles {
		opts.OnAttachment = collect(&files, inner.Len()*3/4)
	}
	msg, err := message.Parse(&inner, opts)
	if err != nil {
		return "", nil, err
	}
	return msg.Text, files, nil
}

// collect returns an attachment callback that appends each attachment to
// files. budget bounds the decoded size of them all (3/4 of the base64
// that carries them), so that a large one is read into one buffer instead
// of one grown step by step.
func collect(files *[]File, budget int) func(*message.Attachment, io.Reader) error {
	return func(a *message.Attachment, body io.Reader) error {
		b, err := readAll(body, budget)
		budget -= len(b)
		*files = append(*files, File{Name: a.Name, Body: b})
		return err
	}
}

// readAll is io.ReadAll into a buffer of capacity hint to start with.
func readAll(r io.Reader, hint int) ([]byte, error) {
	b := make([]byte, 0, max(hint, 512)+1) // +1: io.EOF without growing
	for {
		if len(b) == cap(b) {
			b = slices.Grow(b, cap(b)/2)
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// Reply answers m to its Reply-To with "Re:" and In-Reply-To, the way a
// mail client does; quote is the original text shown below the answer
// ("" for none). encrypt signs and encrypts (physicians).
// It returns the reply's Message-ID.
func (d *Driver) Reply(ctx context.Context, p *Person, m *Mail, text, quote string, encrypt bool, files ...File) (string, error) {
	to := m.ReplyTo
	if a, err := mail.ParseAddress(to); err == nil {
		to = a.Address
	}
	if to == "" {
		to = m.From
	}
	if quote != "" {
		var b strings.Builder
		b.WriteString("\n\nOp " + m.At.Format("2 Jan 2006 15:04") + " schreef de second-opinionservice:\n")
		for _, l := range strings.Split(strings.TrimRight(quote, "\n"), "\n") {
			b.WriteString("> " + l + "\n")
		}
		text += b.String()
	}
	subject := m.Subject
	if !strings.HasPrefix(strings.ToLower(subject), "re:") {
		subject = "Re: " + subject
	}
	return d.Send(ctx, p, to, subject, text, m.MessageID, encrypt, files...)
}

// Send composes and submits one mail and returns its Message-ID.
func (d *Driver) Send(ctx context.Context, p *Person, to, subject, text, inReplyTo string, encrypt bool, files ...File) (string, error) {
	id := fmt.Sprintf("<bench.%s.%d.%s>", d.Tag, d.n.Add(1), p.Addr)
	raw, err := d.Compose(p, id, to, subject, text, inReplyTo, encrypt, files...)
	if err != nil {
		return "", err
	}
	return id, d.Submit(ctx, p.Addr, to, raw)
}

// Compose builds a participant's mail with Message-ID id (<...>).
func (d *Driver) Compose(p *Person, id, to, subject, text, inReplyTo string, encrypt bool, files ...File) ([]byte, error) {
	return d.client().Compose(p, id, to, subject, text, inReplyTo, encrypt, files...)
}

// Submit hands raw mail to the SMTP server, as the sender's client would.
func (d *Driver) Submit(ctx context.Context, from, to string, raw []byte) error {
	return d.client().Submit(ctx, from, to, raw)
}

func (d *Driver) client() rig.MailClient {
	return rig.MailClient{SMTPAddr: d.SMTPAddr, Service: d.Service, Now: d.Now}
}
