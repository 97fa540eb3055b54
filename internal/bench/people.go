package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
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
	// Keys verify the service's signature when a participant decrypts.
	Keys *pgpmime.Keyring
	Box  *Postbox
	// Now is the participants' clock (Date headers, key checks).
	Now func() time.Time
	// Tag makes the participants' Message-IDs unique across runs.
	Tag string
	n   atomic.Int64
}

// Wait waits for p's next mail in case ref whose subject has one of words.
func (d *Driver) Wait(ctx context.Context, p *Person, ref string, words ...string) (*Mail, error) {
	return d.Box.Wait(ctx, p.Addr, ref, words...)
}

// Read parses a mail as its recipient reads it: the text (decrypted with
// p's key when encrypted) and the attachments.
func (d *Driver) Read(p *Person, m *Mail) (text string, files []File, err error) {
	raw := m.Raw
	collect := func(a *message.Attachment, body io.Reader) error {
		b, err := io.ReadAll(body)
		files = append(files, File{Name: a.Name, Body: b})
		return err
	}
	msg, err := message.Parse(bytes.NewReader(raw), message.Options{OnAttachment: collect})
	if err != nil {
		return "", nil, err
	}
	if !msg.Encrypted {
		return msg.Text, files, nil
	}
	if p.Key == nil {
		return "", nil, fmt.Errorf("%s cannot decrypt %q: no key", p.Name, m.Subject)
	}
	dec, err := pgpmime.Read(bytes.NewReader(raw), p.Key, d.Keys, d.Now())
	if err != nil {
		return "", nil, fmt.Errorf("%s cannot decrypt %q: %w", p.Name, m.Subject, err)
	}
	files = nil
	inner, err := message.Parse(bytes.NewReader(dec.Inner), message.Options{OnAttachment: collect})
	if err != nil {
		return "", nil, err
	}
	return inner.Text, files, nil
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
