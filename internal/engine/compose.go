package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	"secondopinion/internal/authform"
	"secondopinion/internal/mailout"
	"secondopinion/internal/pgpmime"
	"secondopinion/internal/procedure"
	"secondopinion/internal/store"
	"secondopinion/internal/token"
)

// compose turns a decision's effects into what the store commits: audit
// entries, alerts, the rendered form, and every mail composed to its final
// bytes (encrypted where medical), so that the outbox only has to deliver.
func (e *Engine) compose(ctx context.Context, c *procedure.Case, effects []procedure.Effect, now time.Time) (store.Decision, []procedure.KeyMissing, error) {
	d := store.Decision{Case: c, Now: now}
	var missing []procedure.KeyMissing
	var form []byte
	// withheld names the recipients whose medical mail could not be
	// encrypted in this decision; later mails to them say so.
	withheld := map[string]bool{}
	for _, eff := range effects {
		switch eff := eff.(type) {
		case procedure.Audit:
			d.Audit = append(d.Audit, store.AuditEntry{Event: eff.Event, Detail: eff.Detail, At: now})
		case procedure.Alert:
			d.Alerts = append(d.Alerts, eff.Reason)
			if row, err := e.alertMail(c, eff.Reason, now); err != nil {
				return d, nil, err
			} else if row != nil {
				d.Outbox = append(d.Outbox, *row)
			}
		case procedure.RenderForm:
			pdf, err := e.renderForm(c, now)
			if err != nil {
				return d, nil, fmt.Errorf("form: %w", err)
			}
			form = pdf
			d.Audit = append(d.Audit, store.AuditEntry{Event: "form rendered", At: now,
				Detail: fmt.Sprintf("version %d, sha256 %s", eff.Version, sha256hex(pdf)[:16])})
		case procedure.Mail:
			if withheld[string(eff.To)+" "+strings.ToLower(eff.Email)] {
				// An earlier mail of this decision to the same person
				// could not be encrypted: later texts say so.
				data := map[string]string{"medical_withheld": "yes"}
				for k, v := range eff.Data {
					data[k] = v
				}
				eff.Data = data
			}
			rows, audits, alerts, err := e.composeMail(ctx, c, eff, form, now)
			if err != nil {
				return d, nil, fmt.Errorf("mail %s to %s: %w", eff.Template, eff.To, err)
			}
			sent := !(eff.Medical && len(alerts) > 0)
			if !sent {
				withheld[string(eff.To)+" "+strings.ToLower(eff.Email)] = true
				missing = append(missing, procedure.KeyMissing{Mail: eff, Reason: alerts[0]})
			}
			// The disclosure is recorded where it happens: when the mail is
			// composed encrypted for a usable key, not when it is withheld.
			if dis := eff.Disclosure; dis != nil {
				if sent {
					d.Audit = append(d.Audit, store.AuditEntry{Event: "disclosure", At: now, Disclosure: dis,
						Detail: fmt.Sprintf("%d documents to %s (%s)", len(dis.Documents), dis.To, eff.Template)})
				} else {
					d.Audit = append(d.Audit, store.AuditEntry{Event: "disclosure withheld", At: now,
						Detail: fmt.Sprintf("%d documents for %s not sent: no usable PGP key; a content-free notice went instead", len(dis.Documents), dis.To)})
				}
			}
			d.Outbox = append(d.Outbox, rows...)
			d.Audit = append(d.Audit, audits...)
			for _, a := range alerts {
				d.Alerts = append(d.Alerts, a)
				if row, err := e.alertMail(c, a, now); err != nil {
					return d, nil, err
				} else if row != nil {
					d.Outbox = append(d.Outbox, *row)
				}
			}
		case procedure.PurgeData:
			d.Purge = true
		}
	}
	return d, missing, nil
}

// composeMail composes one mail effect. Medical mail goes only encrypted
// to a usable key; without one the recipient gets the content-free
// medical_notice and the backoffice an alert — never the content.
func (e *Engine) composeMail(ctx context.Context, c *procedure.Case, m procedure.Mail, form []byte, now time.Time) (rows []store.OutboxRow, audits []store.AuditEntry, alerts []string, err error) {
	var key *pgpmime.PublicKey
	if m.Medical {
		pk, verdict, lerr := e.o.Keyring.Lookup(m.Email, now)
		if lerr != nil || !verdict.Usable {
			reason := verdict.Reason
			if lerr != nil {
				reason = lerr.Error()
			}
			alerts = append(alerts, fmt.Sprintf("no usable PGP key for %s (%s): %s was not sent; a content-free notice asks for a key", m.Email, reason, m.Template))
			audits = append(audits, store.AuditEntry{Event: "withheld", At: now,
				Detail: fmt.Sprintf("%s to %s withheld: no usable key", m.Template, m.To)})
			notice := m
			notice.Template, notice.Medical, notice.Documents, notice.Advice, notice.Form = "medical_notice", false, nil, false, false
			notice.Reminder = true
			m = notice
		} else {
			key = pk
		}
	}
	data := e.mailData(c, m, now)
	subject, text, err := e.render(m.Lang, m.Template, data)
	if err != nil {
		return nil, nil, nil, err
	}
	mm := e.mail(c, m, subject, text, now)
	if m.Form && form != nil {
		name := fmt.Sprintf("machtigingsformulier-%s-v%d.pdf", c.Ref, c.FormVersion)
		mm.Attachments = append(mm.Attachments, mailout.Attachment{Filename: name, ContentType: "application/pdf",
			Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(form)), nil }})
	}
	row := store.OutboxRow{MessageID: mm.MessageID, From: e.o.Info.Address(), To: []string{m.Email}}
	if key == nil {
		var buf bytes.Buffer
		if err := mailout.Compose(&buf, mm); err != nil {
			return nil, nil, nil, err
		}
		row.Body = buf.Bytes()
		return []store.OutboxRow{row}, audits, alerts, nil
	}
	// Medical: the outer header travels in the clear and holds nothing
	// medical (the case reference and the template's neutral subject);
	// text and attachments go inside the encryption.
	var hb bytes.Buffer
	if err := mailout.WriteHeaders(&hb, mm); err != nil {
		return nil, nil, nil, err
	}
	hb.WriteString("\r\n")
	h, err := textproto.ReadHeader(bufio.NewReader(&hb))
	if err != nil {
		return nil, nil, nil, err
	}
	encAtts := make([]pgpmime.Attachment, 0, len(mm.Attachments))
	for _, a := range mm.Attachments {
		encAtts = append(encAtts, pgpmime.Attachment{Filename: a.Filename, ContentType: a.ContentType, Open: a.Open})
	}
	docs, err := e.attachments(ctx, c, m)
	if err != nil {
		return nil, nil, nil, err
	}
	encAtts = append(encAtts, docs...)
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(pgpmime.WriteEncrypted(pw, &pgpmime.Message{Header: h, Text: text, Attachments: encAtts},
			[]*pgpmime.PublicKey{key}, e.o.Service, now))
	}()
	row.Body, row.Path, err = e.o.Store.PutBody("outbox", pr, inlineMail)
	pr.Close()
	if err != nil {
		return nil, nil, nil, err
	}
	return []store.OutboxRow{row}, audits, alerts, nil
}

// inlineMail is the largest encrypted mail kept in its outbox row, as
// plain mail is; larger ones (documents) get a file of their own.
const inlineMail = 512 << 10

// attachments opens the documents a medical mail carries: each is stored
// sealed to the service key and decrypted only here, streamed into the
// encryption for the recipient.
func (e *Engine) attachments(ctx context.Context, c *procedure.Case, m procedure.Mail) ([]pgpmime.Attachment, error) {
	rows, err := e.o.Store.Documents(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, sha := range m.Documents {
		want[sha] = true
	}
	if m.Advice {
		for _, a := range c.Advice {
			want[a.SHA256] = true
		}
	}
	var out []pgpmime.Attachment
	found := map[string]bool{}
	for _, r := range rows {
		if !want[r.SHA256] || found[r.SHA256] {
			continue
		}
		found[r.SHA256] = true
		r := r
		name := r.Name
		if name == "" {
			name = r.Title
		}
		out = append(out, pgpmime.Attachment{Filename: name, Open: func() (io.ReadCloser, error) {
			f, err := e.o.Store.OpenFile(r.Path)
			if err != nil {
				return nil, err
			}
			pr, pw := io.Pipe()
			go func() {
				defer f.Close()
				pw.CloseWithError(pgpmime.OpenSealed(pw, f, e.o.Service, e.Now()))
			}()
			return pr, nil
		}})
	}
	for sha := range want {
		if !found[sha] {
			return nil, fmt.Errorf("document %s is not stored", sha[:min(16, len(sha))])
		}
	}
	return out, nil
}

// mail builds the outgoing mail around a rendered text. mailout encodes
// every header value that comes from user data, so a CR or LF in a name or
// subject can never start a header of its own.
func (e *Engine) mail(c *procedure.Case, m procedure.Mail, subject, text string, now time.Time) mailout.Mail {
	mm := mailout.Mail{
		From:          mailout.Address{Name: e.o.Info.DisplayName, Email: e.o.Info.Address()},
		To:            []mailout.Address{{Name: m.Name, Email: m.Email}},
		Subject:       "[" + c.Ref + "] " + subject,
		MessageID:     e.messageID(c.Ref, m.Seq),
		Date:          now,
		AutoSubmitted: m.Reminder || m.Question == 0,
		Lang:          m.Lang,
		Text:          text,
		ExtraHeaders:  []mailout.HeaderField{{Name: "X-Secondopinion-Case", Value: c.Ref}},
	}
	if m.Question != 0 {
		tok := token.New(e.o.TokenKey, token.Claims{CaseID: c.ID, Question: m.Question, Role: roleToToken[m.To]})
		mm.ReplyTo = token.Address(e.o.Info.LocalPart, e.o.Info.Domain, tok)
	}
	return mm
}

// messageID is stable for a case's n-th mail: the same mail composed again
// after a crash gets the same Message-ID, and the outbox keeps only one.
// The keyed hash makes our Message-IDs unguessable, so a References header
// pointing at one is evidence of a real reply.
func (e *Engine) messageID(ref string, seq int) string {
	mac := hmac.New(sha256.New, e.o.TokenKey)
	fmt.Fprintf(mac, "message-id\x00%s\x00%d", ref, seq)
	return fmt.Sprintf("<%s.%d.%s@%s>", strings.ToLower(ref), seq, hex.EncodeToString(mac.Sum(nil))[:12], e.o.Info.Domain)
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// alertMail composes the backoffice's notice of an alert (content-free:
// the reason names the step, never medical content).
func (e *Engine) alertMail(c *procedure.Case, reason string, now time.Time) (*store.OutboxRow, error) {
	if e.o.Info.Backoffice == "" {
		return nil, nil
	}
	c.Seq++
	m := procedure.Mail{Seq: c.Seq, To: procedure.RoleBackoffice, Email: e.o.Info.Backoffice, Name: e.o.Info.DisplayName,
		Lang: e.o.Info.Lang, Template: "alert", Reminder: true, Data: map[string]string{"reason": reason}}
	subject, text, err := e.render(m.Lang, m.Template, e.mailData(c, m, now))
	if err != nil {
		return nil, err
	}
	mm := e.mail(c, m, subject, text, now)
	var buf bytes.Buffer
	if err := mailout.Compose(&buf, mm); err != nil {
		return nil, err
	}
	return &store.OutboxRow{MessageID: mm.MessageID, From: e.o.Info.Address(), To: []string{m.Email}, Body: buf.Bytes()}, nil
}

// renderForm renders the case's current authorisation form.
func (e *Engine) renderForm(c *procedure.Case, now time.Time) ([]byte, error) {
	f := formFor(c, e.o.Info, now, e.o.Policy.RetentionYears)
	var buf bytes.Buffer
	if err := authform.Render(&buf, f, authform.Options{FS: e.o.Templates}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
