package rig

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"

	"secondopinion/internal/mailout"
	"secondopinion/internal/message"
	"secondopinion/internal/pgpmime"
)

// Person is a participant with a mailbox (and, for physicians, a PGP key of
// their own).
type Person struct {
	Name, Addr string
	Key        *pgpmime.ServiceKey // nil: no key (most employees)
}

// Received is a mail as a participant reads it.
type Received struct {
	Raw []byte
	Msg *message.Message
	// Inner is the decrypted content of an encrypted mail (nil otherwise).
	Inner *message.Message
	// Files are the attachments, decrypted when the mail was encrypted.
	Files []File
}

// File is an attachment a participant sends or receives.
type File struct {
	Name string
	Body []byte
}

// Text is what the participant reads: the decrypted text when encrypted.
func (r *Received) Text() string {
	if r.Inner != nil {
		return r.Inner.Text
	}
	return r.Msg.Text
}

// Next waits for the next mail to p that it has not read yet, whose subject
// contains one of words (any mail when none are given), and reads it:
// decrypted with p's key when encrypted.
func (r *Rig) Next(ctx context.Context, p *Person, words ...string) (*Received, error) {
	var got *Received
	_, err := r.Mail.WaitFor(ctx, p.Addr, func(raw []byte) bool {
		m, err := message.Parse(bytes.NewReader(raw), message.Options{})
		if err != nil {
			return false
		}
		key := p.Addr + " " + m.MessageID
		r.seenMu.Lock()
		defer r.seenMu.Unlock()
		if r.seen[key] {
			return false
		}
		if len(words) > 0 {
			match := false
			for _, w := range words {
				if strings.Contains(strings.ToLower(m.Subject), strings.ToLower(w)) {
					match = true
				}
			}
			if !match {
				return false
			}
		}
		r.seen[key] = true
		got = &Received{Raw: raw, Msg: m}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("%s waited for mail (%s): %w", p.Name, strings.Join(words, "|"), err)
	}
	collect := func(a *message.Attachment, body io.Reader) error {
		b, err := io.ReadAll(body)
		got.Files = append(got.Files, File{Name: a.Name, Body: b})
		return err
	}
	if got.Msg.Encrypted && p.Key != nil {
		dec, err := pgpmime.Read(bytes.NewReader(got.Raw), p.Key, r.Keys, r.Clock.Now())
		if err != nil {
			return nil, fmt.Errorf("%s cannot decrypt: %w", p.Name, err)
		}
		if got.Inner, err = message.Parse(bytes.NewReader(dec.Inner), message.Options{OnAttachment: collect}); err != nil {
			return nil, err
		}
	} else if !got.Msg.Encrypted {
		if _, err := message.Parse(bytes.NewReader(got.Raw), message.Options{OnAttachment: collect}); err != nil {
			return nil, err
		}
	}
	return got, nil
}

// Reply answers a mail the way a mail client does: to its Reply-To, with
// "Re:", In-Reply-To/References and the quoted original below the answer.
// Physicians sign and encrypt (PGP/MIME) when encrypt is set.
func (r *Rig) Reply(ctx context.Context, p *Person, to *Received, text string, encrypt bool, files ...File) error {
	addr := to.Msg.From.Address
	if len(to.Msg.ReplyTo) > 0 {
		addr = to.Msg.ReplyTo[0].Address
	}
	body := text + "\n\n" + Quote(to.Text(), to.Msg.From.Name, to.Msg.Date.In(Amsterdam))
	return r.Send(ctx, p, addr, "Re: "+to.Msg.Subject, body, to.Msg.MessageID, encrypt, files...)
}

// Quote renders the original below a reply, as Gmail and Apple Mail do.
func Quote(text, from string, when time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Op %s schreef %s:\n", when.Format("2 Jan 2006 15:04"), from)
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString("> " + l + "\n")
	}
	return b.String()
}

// Send composes and submits one mail from a participant.
func (r *Rig) Send(ctx context.Context, p *Person, to, subject, text, inReplyTo string, encrypt bool, files ...File) error {
	raw, err := r.Compose(p, to, subject, text, inReplyTo, encrypt, files...)
	if err != nil {
		return err
	}
	return r.Submit(ctx, p.Addr, to, raw)
}

// Compose builds a participant's mail without sending it.
func (r *Rig) Compose(p *Person, to, subject, text, inReplyTo string, encrypt bool, files ...File) ([]byte, error) {
	r.msgMu.Lock()
	r.msgN++
	id := fmt.Sprintf("rig.%d.%s", r.msgN, p.Addr)
	r.msgMu.Unlock()
	return r.client().Compose(p, id, to, subject, text, inReplyTo, encrypt, files...)
}

// Submit hands raw mail to the SMTP server, as from's mail client would.
func (r *Rig) Submit(ctx context.Context, from, to string, raw []byte) error {
	return r.client().Submit(ctx, from, to, raw)
}

func (r *Rig) client() MailClient {
	return MailClient{SMTPAddr: r.smtpAddr, Service: r.Service.Public(), Now: r.Clock.Now}
}

// MailClient is a participant's mail client: it composes mail the way one
// does (physicians PGP/MIME signed and encrypted to the service) and submits
// it over SMTP. It needs no running rig, so the bench and the crash test use
// it against a daemon in another process.
type MailClient struct {
	SMTPAddr string
	Service  *pgpmime.PublicKey // encrypt to
	Now      func() time.Time
}

// Compose builds a mail from p with Message-ID id (with or without <>).
func (c MailClient) Compose(p *Person, id, to, subject, text, inReplyTo string, encrypt bool, files ...File) ([]byte, error) {
	now := c.Now()
	id, inReplyTo = strings.Trim(id, "<>"), strings.Trim(inReplyTo, "<>")
	var buf bytes.Buffer
	// Base64 inside, armor outside: about 1.9 times the files, plus the
	// text. One allocation instead of doubling up to it.
	size := 16<<10 + 2*len(text)
	for _, f := range files {
		size += len(f.Body) * 19 / 10
	}
	buf.Grow(size)
	if encrypt {
		if p.Key == nil {
			return nil, fmt.Errorf("%s has no key to sign with", p.Name)
		}
		var h mail.Header
		h.SetDate(now)
		h.SetAddressList("From", []*mail.Address{{Name: p.Name, Address: p.Addr}})
		h.SetAddressList("To", []*mail.Address{{Address: to}})
		h.SetSubject(subject)
		h.SetMessageID(id)
		if inReplyTo != "" {
			h.SetMsgIDList("In-Reply-To", []string{inReplyTo})
			h.SetMsgIDList("References", []string{inReplyTo})
		}
		var pa []pgpmime.Attachment
		for _, f := range files {
			body := f.Body
			pa = append(pa, pgpmime.Attachment{Filename: f.Name, ContentType: "application/pdf",
				Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }})
		}
		if err := pgpmime.WriteEncrypted(&buf, &pgpmime.Message{Header: h.Header.Header, Text: text, Attachments: pa},
			[]*pgpmime.PublicKey{c.Service}, p.Key, now); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	m := mailout.Mail{From: mailout.Address{Name: p.Name, Email: p.Addr}, To: []mailout.Address{{Email: to}},
		Subject: subject, MessageID: id, Date: now, Text: text}
	if inReplyTo != "" {
		m.InReplyTo, m.References = inReplyTo, []string{inReplyTo}
	}
	for _, f := range files {
		body := f.Body
		m.Attachments = append(m.Attachments, mailout.Attachment{Filename: f.Name, ContentType: "application/pdf",
			Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }})
	}
	if err := mailout.Compose(&buf, m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Submit hands raw mail to the SMTP server, as the sender's client would:
// with mailout's client, so BDAT when the server offers CHUNKING. Without
// TLS, as before: the rig's servers are local test servers.
func (c MailClient) Submit(ctx context.Context, from, to string, raw []byte) error {
	// One connection per mail, ended at once: a client that sends a mail
	// now and then keeps nothing open.
	t := &mailout.Transport{Addr: c.SMTPAddr, Security: mailout.SecurityPlain, AllowInsecure: true, IdleTimeout: -1}
	if err := t.Deliver(ctx, from, []string{to}, bytes.NewReader(raw)); err != nil {
		return fmt.Errorf("%s sends: %w", from, err)
	}
	return nil
}

// Sweep advances the clock and runs the deadline sweep once, as the cron
// schedule would after that much time.
func (r *Rig) Sweep(ctx context.Context, d time.Duration) (int, error) {
	r.Clock.Advance(d)
	return r.Engine.Sweep(ctx)
}
