package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"

	"secondopinion/internal/mailout"
	"secondopinion/internal/mailworld"
	"secondopinion/internal/message"
	"secondopinion/internal/pgpmime"
)

// person is a scripted participant with a mailbox (and, for physicians, a
// PGP key of their own).
type person struct {
	name, addr string
	key        *pgpmime.ServiceKey // nil: no key (most employees)
}

// received is a mail as a participant reads it.
type received struct {
	raw []byte
	msg *message.Message
	// inner is the decrypted content of an encrypted mail.
	inner *message.Message
}

var seenMu sync.Mutex
var seen = map[string]bool{}

// next waits for the next mail to p that it has not read yet, whose
// subject contains one of the words (any mail when none are given).
func (d *run) next(ctx context.Context, p person, words ...string) (*received, error) {
	var got *received
	_, err := d.world.WaitFor(ctx, p.addr, func(dl mailworld.Delivered) bool {
		m, err := message.Parse(bytes.NewReader(dl.Raw), message.Options{})
		if err != nil {
			return false
		}
		seenMu.Lock()
		defer seenMu.Unlock()
		if seen[m.MessageID] {
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
		seen[m.MessageID] = true
		got = &received{raw: dl.Raw, msg: m}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("%s waited for mail (%s): %w", p.name, strings.Join(words, "|"), err)
	}
	if got.msg.Encrypted && p.key != nil {
		dec, err := pgpmime.Read(bytes.NewReader(got.raw), p.key, d.keys, d.clk.Now())
		if err != nil {
			return nil, fmt.Errorf("%s cannot decrypt: %w", p.name, err)
		}
		inner, err := message.Parse(bytes.NewReader(dec.Inner), message.Options{OnAttachment: func(a *message.Attachment, body io.Reader) error {
			_, err := io.Copy(io.Discard, body)
			return err
		}})
		if err != nil {
			return nil, err
		}
		got.inner = inner
	}
	return got, nil
}

// text is what the participant reads: the decrypted text when encrypted.
func (r *received) text() string {
	if r.inner != nil {
		return r.inner.Text
	}
	return r.msg.Text
}

// attachment is a file a participant sends.
type attachment struct {
	name string
	body []byte
}

// reply answers a mail the way a mail client does: to its Reply-To, with
// "Re:", In-Reply-To/References and the quoted original below the answer.
// Physicians sign and encrypt (PGP/MIME) when encrypt is set.
func (d *run) reply(ctx context.Context, p person, r *received, text string, encrypt bool, atts ...attachment) error {
	to := r.msg.From.Address
	if len(r.msg.ReplyTo) > 0 {
		to = r.msg.ReplyTo[0].Address
	}
	quoted := quote(r.text(), r.msg.From.Name, r.msg.Date.In(start.Location()))
	return d.send(ctx, p, to, "Re: "+r.msg.Subject, text+"\n\n"+quoted, r.msg.MessageID, encrypt, atts...)
}

// quote renders the original below a reply, as Gmail and Apple Mail do.
func quote(text, from string, when interface{ Format(string) string }) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Op %s schreef %s:\n", when.Format("2 Jan 2006 15:04"), from)
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString("> " + l + "\n")
	}
	return b.String()
}

var msgN int
var msgMu sync.Mutex

// send composes and submits one mail from a participant.
func (d *run) send(ctx context.Context, p person, to, subject, text, inReplyTo string, encrypt bool, atts ...attachment) error {
	msgMu.Lock()
	msgN++
	id := fmt.Sprintf("demo.%d.%s", msgN, p.addr)
	msgMu.Unlock()
	now := d.clk.Now()
	var buf bytes.Buffer
	if encrypt {
		var h mail.Header
		h.SetDate(now)
		h.SetAddressList("From", []*mail.Address{{Name: p.name, Address: p.addr}})
		h.SetAddressList("To", []*mail.Address{{Address: to}})
		h.SetSubject(subject)
		h.SetMessageID(id)
		if inReplyTo != "" {
			h.SetMsgIDList("In-Reply-To", []string{inReplyTo})
			h.SetMsgIDList("References", []string{inReplyTo})
		}
		var pa []pgpmime.Attachment
		for _, a := range atts {
			a := a
			pa = append(pa, pgpmime.Attachment{Filename: a.name, ContentType: "application/pdf",
				Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(a.body)), nil }})
		}
		if err := pgpmime.WriteEncrypted(&buf, &pgpmime.Message{Header: h.Header.Header, Text: text, Attachments: pa},
			[]*pgpmime.PublicKey{d.svc.Public()}, p.key, now); err != nil {
			return err
		}
	} else {
		m := mailout.Mail{From: mailout.Address{Name: p.name, Email: p.addr}, To: []mailout.Address{{Email: to}},
			Subject: subject, MessageID: id, Date: now, Text: text}
		if inReplyTo != "" {
			m.InReplyTo, m.References = inReplyTo, []string{inReplyTo}
		}
		for _, a := range atts {
			a := a
			m.Attachments = append(m.Attachments, mailout.Attachment{Filename: a.name, ContentType: "application/pdf",
				Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(a.body)), nil }})
		}
		if err := mailout.Compose(&buf, m); err != nil {
			return err
		}
	}
	c, err := smtp.Dial(d.world.SMTPAddr())
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(p.addr, []string{to}, &buf); err != nil {
		return fmt.Errorf("%s sends: %w", p.name, err)
	}
	return c.Quit()
}

type part struct {
	name string
	body []byte
}

// splitAttachments returns the attachments of a plain mail.
func splitAttachments(raw []byte) []part {
	var out []part
	_, _ = message.Parse(bytes.NewReader(raw), message.Options{OnAttachment: func(a *message.Attachment, body io.Reader) error {
		b, err := io.ReadAll(body)
		out = append(out, part{name: a.Name, body: b})
		return err
	}})
	return out
}
