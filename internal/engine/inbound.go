package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"secondopinion/internal/message"
	"secondopinion/internal/pgpmime"
	"secondopinion/internal/procedure"
	"secondopinion/internal/registry"
	"secondopinion/internal/store"
	"secondopinion/internal/token"
)

// parseLimits bound what one message may cost to parse. The ciphertext of
// an encrypted message is not hashed: the documents are what is inside
// it, hashed when the decrypted entity is parsed.
var parseLimits = message.Options{MaxParts: 1000, MaxDepth: 10, MaxTextBytes: 4 << 20, MaxHeaderBytes: 256 << 10,
	NoCiphertextHash: true}

// verdict is what the routing of one message concluded.
type verdict struct {
	c        *procedure.Case
	q        procedure.Question
	role     procedure.Role
	via      string // token, references, subject
	decrypt  *pgpmime.Decrypted
	problems []string
	// hold is a quarantine reason that applies unless the message is the
	// employee withdrawing: the employee may withdraw at any time, also
	// in a reply to an old mail or when nothing is asked of them.
	hold string
}

// quarantine is an error that sends the message to quarantine with its
// reason (shown to the backoffice), without acting on it.
type quarantine struct{ reason string }

func (q quarantine) Error() string { return q.reason }

func quarantined(format string, a ...any) error { return quarantine{fmt.Sprintf(format, a...)} }

// ProcessInbound handles one stored message: it never drops it and never
// acts on what it cannot read or authenticate. It returns an error only
// when the store fails (the message then stays pending).
func (e *Engine) ProcessInbound(ctx context.Context, in store.Inbound) error {
	r := e.read(ctx, in, false)
	defer r.close()
	return e.decide(ctx, r)
}

// decide turns a read message into its decision, quarantine or mark.
func (e *Engine) decide(ctx context.Context, r *reading) error {
	in := r.in
	err := e.processInbound(ctx, r)
	var q quarantine
	switch {
	case err == nil:
		return nil
	case errors.As(err, &q):
		e.log.Warn("message quarantined", "inbound", in.ID, "reason", q.reason, "duration", time.Since(r.start).Round(time.Microsecond))
		if err := e.quarantine(ctx, in, q.reason); err != nil {
			return fmt.Errorf("message %d stays pending: quarantine: %w", in.ID, err)
		}
		return nil
	default:
		return fmt.Errorf("message %d stays pending: %w", in.ID, err)
	}
}

// reading is what can be known of a stored message without its case: the
// parsed message, the decryption and signature verdict, and — once that
// verdict shows the sender is who the From says (StatusValid) — the inner
// entity with its attachments sealed into the store. It may run for
// several messages at once and ahead of their decisions (ProcessPending).
// Its errors are kept, not returned: processInbound meets them at the
// point where it met them when it read the message itself, so a message
// is quarantined for the same reason whether or not it was read ahead.
type reading struct {
	in    store.Inbound
	start time.Time
	now   time.Time         // the clock for the decryption and the seals
	raw   io.ReadSeekCloser // nil when oversize or not opened
	// err ends the reading: a store error (the message stays pending),
	// or a quarantine when reading panicked; parseErr is the outer
	// parse's error.
	err      error
	m        *message.Message
	parseErr error
	// decrypted says pgpmime.Read ran; dec is its result and decErr the
	// error to return for it (a quarantine or a store error).
	decrypted bool
	dec       *pgpmime.Decrypted
	decErr    error
	// inner is the inner entity, nil until read.
	inner *innerEntity
}

// innerEntity is the decrypted entity read with its attachments sealed.
type innerEntity struct {
	m      *message.Message
	sealed []*sealedAttachment
	err    error // a quarantine or a store error
}

// read reads a stored message as far as that does not depend on its case
// (see reading). The caller closes it. Ahead, it also stores the sealed
// attachments of a message signed by its sender's registered key: a file
// whose document row is never committed (the decision quarantines the
// message after all) is removed by the daemon's file sweep
// (store.SweepFiles). A single message read
// just before its decision leaves that to the decision, which stores
// nothing of a message it does not act on.
func (e *Engine) read(ctx context.Context, in store.Inbound, ahead bool) (r *reading) {
	r = &reading{in: in, start: time.Now(), now: e.Now()}
	defer func() {
		// Reading runs on the workers of ProcessPending, where a panic
		// would take the daemon down: a message that makes a parser panic
		// is kept for the backoffice instead (and is a bug to fix).
		if p := recover(); p != nil {
			r.close()
			r.err = quarantined("the message could not be read: internal error: %v", p)
		}
	}()
	if in.Oversize {
		return r
	}
	// A stored file is read as a stream, never held whole: its size is
	// bounded only by the ingest's limit. (Mail up to 256 KiB comes from
	// its database row.)
	raw, err := e.o.Store.OpenInbound(ctx, in)
	if err != nil {
		r.err = fmt.Errorf("inbound %d: %w", in.ID, err)
		return r
	}
	r.raw = raw
	r.m, r.parseErr = message.Parse(raw, parseLimits)
	if r.parseErr != nil || r.m.Bounce != nil || r.m.AutoReply || !r.m.Encrypted && !r.m.Signed {
		return r
	}
	r.decrypt(e)
	// Only a signature by the registered key of the From address lets the
	// attachments be sealed before the case is known; anything else waits
	// for the decision's signature check.
	if ahead && r.decErr == nil && r.dec.Signature.Status == pgpmime.StatusValid {
		r.readInner(e)
	}
	return r
}

// close releases the stored message.
func (r *reading) close() {
	if r.raw != nil {
		r.raw.Close()
		r.raw = nil
	}
}

// decrypt decrypts and verifies the message (RFC 3156).
func (r *reading) decrypt(e *Engine) {
	r.decrypted = true
	if _, err := r.raw.Seek(0, io.SeekStart); err != nil {
		r.decErr = fmt.Errorf("inbound %d: %w", r.in.ID, err)
		return
	}
	d, err := pgpmime.Read(r.raw, e.o.Service, e.o.Keyring, r.now)
	if err != nil {
		r.decErr = quarantined("cannot decrypt or verify: %v", err)
		return
	}
	r.dec = d
}

// readInner parses the decrypted entity and stores its attachments sealed
// to the service key.
func (r *reading) readInner(e *Engine) {
	ie := &innerEntity{}
	r.inner = ie
	var src io.Reader = bytes.NewReader(r.dec.Inner)
	if r.dec.Inner == nil {
		if _, err := r.raw.Seek(0, io.SeekStart); err != nil {
			ie.err = fmt.Errorf("inbound %d: %w", r.in.ID, err)
			return
		}
		src = r.raw
	}
	var sealErr error
	opts := parseLimits
	opts.OnAttachment = func(a *message.Attachment, body io.Reader) error {
		s := &sealedAttachment{a: a}
		var err error
		if s.path, err = e.seal(body, r.now); err != nil {
			sealErr = err
			return err
		}
		ie.sealed = append(ie.sealed, s)
		return nil
	}
	im, err := message.Parse(src, opts)
	switch {
	case sealErr != nil:
		// The store failed (a full disk), not the message: it stays
		// pending and is read again.
		ie.err = fmt.Errorf("seal attachment: %w", sealErr)
	case err != nil:
		ie.err = quarantined("unreadable encrypted content: %v", err)
	default:
		ie.m = im
	}
}

func (e *Engine) processInbound(ctx context.Context, r *reading) error {
	in := r.in
	now := e.Now()
	if in.Oversize {
		return quarantined("message of %d bytes is over the size limit; kept unparsed", in.Size)
	}
	if r.err != nil {
		return r.err
	}
	m := r.m
	if r.parseErr != nil {
		return quarantined("unreadable message: %v", r.parseErr)
	}
	if m.Bounce != nil {
		reason := fmt.Sprintf("delivery failed to %s (%s %s)", strings.Join(m.Bounce.FailedRecipients, ", "), m.Bounce.Status, m.Bounce.Diagnostic)
		e.log.Warn("bounce", "inbound", in.ID, "failed", strings.Join(m.Bounce.FailedRecipients, ","), "status", m.Bounce.Status)
		if err := e.o.Store.AddAlert(ctx, 0, reason, now); err != nil {
			return err
		}
		return e.o.Store.MarkInbound(ctx, in.ID, store.InboundProcessed, "bounce: "+reason, 0, now)
	}
	if m.AutoReply {
		// Never an answer, never answered (RFC 3834 loop protection).
		e.log.Info("auto-reply ignored", "inbound", in.ID, "reason", m.AutoReplyReason)
		return e.o.Store.MarkInbound(ctx, in.ID, store.InboundProcessed, "auto-reply: "+m.AutoReplyReason, 0, now)
	}
	if _, ok := e.ours(m.MessageID); ok && strings.EqualFold(m.From.Address, e.o.Info.Address()) {
		// One of our own mails, back in the inbox: a sent copy the server
		// did not file into its folder (see smtp.sent_copy). Never an
		// answer; set aside without a quarantine for every mail we send.
		e.log.Warn("own mail in the inbox ignored; is the sent-copy folder set up?", "inbound", in.ID)
		return e.o.Store.MarkInbound(ctx, in.ID, store.InboundProcessed, "own mail: a sent copy not filed into its folder", 0, now)
	}
	v, err := e.route(ctx, m)
	if err != nil {
		return err
	}
	if v.c == nil {
		if why := unreadableText(m); why != "" {
			return quarantined("the text cannot be read (%s); not taken for a request", why)
		}
		return e.request(ctx, in, m)
	}
	// A message the backoffice released after looking at it is taken as
	// authentic: its sender checks are theirs. The procedure's own checks
	// (an open question, signatures on medical replies) still apply.
	released := strings.HasPrefix(in.Reason, releasedPrefix)
	if e.o.StrictAuth && !released {
		if ok, why := message.AuthResult(&m.Header, e.o.AuthservID); !ok {
			return quarantined("sender not authenticated: %s", why)
		}
	}
	if v.via == "subject" && !e.o.StrictAuth && !released {
		// A case reference in a subject is easy to guess and a From easy to
		// forge: without the receiving server vouching for the sender, such
		// a reply is kept for the backoffice, never acted on.
		return quarantined("case %s: the reply names the case only in its subject, and the sender %s cannot be verified without strict authentication; "+
			"a reply to our mail's reply address is needed, or the backoffice may release this one", v.c.Ref, strings.ToLower(m.From.Address))
	}
	var docs []store.DocumentRow
	var procDocs []procedure.Document
	if m.Encrypted || m.Signed {
		if !r.decrypted {
			r.decrypt(e)
		}
		if r.decErr != nil {
			return r.decErr
		}
		v.decrypt = r.dec
		// The signature is judged before any attachment is stored: nothing
		// from a sender who is not who they claim is stored.
		if err := signatureRequired(v); err != nil {
			return err
		}
		if r.inner == nil {
			r.readInner(e)
		}
		if r.inner.err != nil {
			return r.inner.err
		}
		im := r.inner.m
		m.Text, m.Reply, m.Attachments, m.Problems = im.Text, im.Reply, im.Attachments, im.Problems
		for _, s := range r.inner.sealed {
			title := strings.TrimSuffix(s.a.Name, path.Ext(s.a.Name))
			if title == "" {
				title = "document"
			}
			docs = append(docs, store.DocumentRow{SHA256: s.a.SHA256, Kind: "medical", Title: title, Name: s.a.Name, Size: s.a.Size, Path: s.path})
			procDocs = append(procDocs, procedure.Document{Title: title, Name: s.a.Name, SHA256: s.a.SHA256, Size: s.a.Size, Date: m.Date})
		}
	}
	if err := signatureRequired(v); err != nil {
		return err
	}
	if why := unreadableText(m); why != "" {
		return quarantined("case %s: the text cannot be read (%s); not taken for an answer", v.c.Ref, why)
	}
	input, err := e.answer(v, m, procDocs, now)
	if err != nil {
		return err
	}
	if u, ok := input.(procedure.Unclear); ok {
		e.log.Info("unclear answer", "case", v.c.Ref, "step", string(v.q.Step), "why", u.Why)
	}
	_, err = e.Handle(ctx, v.c.ID, input, Source{Inbound: in.ID, Documents: docsFor(input, docs), Via: "mail/" + v.via})
	if errors.Is(err, procedure.ErrUnexpected) || errors.Is(err, procedure.ErrInvalid) || errors.Is(err, procedure.ErrClosed) {
		return quarantined("case %s: %v", v.c.Ref, err)
	}
	return err
}

// docsFor keeps the received documents only when the input carries them.
func docsFor(in procedure.Input, docs []store.DocumentRow) []store.DocumentRow {
	switch in.(type) {
	case procedure.IntakeAnswer, procedure.Documents, procedure.Advice:
		return docs
	}
	return nil
}

type sealedAttachment struct {
	a    *message.Attachment
	path string
}

// sealBuffer is what the sealing writes at once: the encryptor writes a
// packet's length byte and its body separately, and each write through
// the pipe wakes the other side.
const sealBuffer = 256 << 10

// seal stores an attachment encrypted to the service key and signed by it.
func (e *Engine) seal(body io.Reader, now time.Time) (string, error) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		bw := bufio.NewWriterSize(pw, sealBuffer)
		err := pgpmime.SealForService(bw, body, e.o.Service, now)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	rel, _, err := e.o.Store.PutFile("documents", pr)
	pr.CloseWithError(err)
	// The sealing reads body, which the parser reads on once this returns:
	// wait until it has stopped (a failed store stops it within one buffer).
	<-done
	return rel, err
}

// signatureRequired quarantines an answer that must be signed and is not
// validly signed by the registered key.
func signatureRequired(v verdict) error {
	if !needsSignature(v.q) || v.decrypt != nil && v.decrypt.Signature.Status == pgpmime.StatusValid {
		return nil
	}
	status := "unsigned"
	if v.decrypt != nil {
		status = v.decrypt.Signature.Status.String()
	}
	return quarantined("%s reply for %s must be PGP-signed by the registered key of %s; signature: %s", v.role, v.q.Step, v.q.Email, status)
}

// unreadableText says why the text of a message cannot be trusted to say
// what its sender wrote — a charset we do not know, or bytes that are not
// text in the charset it names — or "" when it can. Such text is never
// read for an answer: the daemon does not guess (DESIGN.md).
func unreadableText(m *message.Message) string {
	for _, p := range m.Problems {
		if strings.HasPrefix(p, "attachment ") || strings.HasPrefix(p, "forwarded message") {
			continue
		}
		if strings.Contains(p, "unknown charset") || strings.Contains(p, ": invalid ") && strings.HasSuffix(p, " text") {
			return strings.Replace(p, "unknown charset: unknown charset", "unknown charset", 1)
		}
	}
	return ""
}

// needsSignature: the original physician's intake (documents), co-signature
// and the SO physician's advice must be PGP-signed by the registered key.
func needsSignature(q procedure.Question) bool {
	switch q.Step {
	case procedure.StepIntake, procedure.StepPhysicianSign, procedure.StepAdvice:
		return true
	}
	return false
}

var ourMessageID = regexp.MustCompile(`^(so-\d{4}-\d{4,6})\.(\d+)\.[0-9a-f]{12}@`)

// ours reports whether id (with or without angle brackets) is a
// Message-ID the daemon gave one of its own mails, and of which case: the
// HMAC in it cannot be forged without the token key.
func (e *Engine) ours(id string) (ref string, ok bool) {
	id = strings.ToLower(strings.Trim(id, "<>"))
	mm := ourMessageID.FindStringSubmatch(id)
	if mm == nil {
		return "", false
	}
	r := strings.ToUpper(mm[1])
	seq, _ := strconv.Atoi(mm[2])
	if "<"+id+">" != strings.ToLower(e.messageID(r, seq)) {
		return "", false
	}
	return r, true
}

// replyToken finds the first reply token among m's recipients (our
// plus-address) and verifies it; addr is the address it was found in.
func (e *Engine) replyToken(m *message.Message) (claims token.Claims, addr string, found bool, err error) {
	for _, addr := range m.Recipients() {
		tok, ok := token.FromAddress(addr, e.o.Info.LocalPart, e.o.Info.Domain)
		if !ok {
			continue
		}
		claims, err := token.Verify(e.o.TokenKey, tok)
		return claims, addr, true, err
	}
	return token.Claims{}, "", false, nil
}

// route finds the case and the question a message answers, and checks the
// sender: the plus-address token first, then References/In-Reply-To to our
// own Message-IDs, then the subject tag with the registered sender.
func (e *Engine) route(ctx context.Context, m *message.Message) (verdict, error) {
	from := strings.ToLower(m.From.Address)
	if claims, addr, found, err := e.replyToken(m); found {
		if err != nil {
			return verdict{}, quarantined("invalid reply token in %s", addr)
		}
		c, err := e.o.Store.Case(ctx, claims.CaseID)
		if errors.Is(err, store.ErrNotFound) {
			return verdict{}, quarantined("reply token names no known case")
		} else if err != nil {
			return verdict{}, err
		}
		role := roleFromToken(claims.Role)
		q, ok := findQuestion(c, claims.Question)
		if !ok || q.Role != role {
			return verdict{}, quarantined("case %s: reply token for an unknown question", c.Ref)
		}
		if !strings.EqualFold(from, q.Email) {
			return verdict{}, quarantined("case %s: reply token of %s used from another address (%s)", c.Ref, role, from)
		}
		if !q.Open {
			if c.State.Final() && role == procedure.RoleEmployee {
				return verdict{}, quarantined("case %s is %s; the answer came after it closed", c.Ref, c.State)
			}
			reason := fmt.Sprintf("case %s: the question of step %s is closed (a replayed or late answer)", c.Ref, q.Step)
			if role == procedure.RoleEmployee {
				return verdict{c: c, q: q, role: role, via: "token", hold: reason}, nil
			}
			return verdict{}, quarantine{reason}
		}
		return verdict{c: c, q: q, role: role, via: "token"}, nil
	}
	var ref string
	for _, id := range append(append([]string{}, m.InReplyTo...), m.References...) {
		if r, ok := e.ours(id); ok {
			ref = r
			break
		}
	}
	via := "references"
	if ref == "" {
		ref = message.CaseRef(m.Subject)
		via = "subject"
	}
	if ref == "" {
		return verdict{}, nil
	}
	c, err := e.o.Store.CaseByRef(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return verdict{}, quarantined("unknown case reference %s", ref)
	} else if err != nil {
		return verdict{}, err
	}
	var open []procedure.Question
	for _, q := range c.Questions {
		if q.Open && strings.EqualFold(q.Email, from) {
			open = append(open, q)
		}
	}
	switch {
	case len(open) == 1:
		return verdict{c: c, q: open[0], role: open[0].Role, via: via}, nil
	case len(open) > 1:
		return verdict{}, quarantined("case %s: %s has %d open questions; the reply must use the reply address of one", c.Ref, from, len(open))
	case strings.EqualFold(from, c.Employee.Email) && !c.State.Final():
		return verdict{c: c, q: procedure.Question{Role: procedure.RoleEmployee, Email: from}, role: procedure.RoleEmployee, via: via,
			hold: fmt.Sprintf("case %s: no open question for %s", c.Ref, from)}, nil
	case isParticipant(c, from):
		return verdict{}, quarantined("case %s: no open question for %s", c.Ref, from)
	default:
		return verdict{}, quarantined("case %s: %s is not a registered participant", c.Ref, from)
	}
}

func findQuestion(c *procedure.Case, id uint32) (procedure.Question, bool) {
	for _, q := range c.Questions {
		if q.ID == id {
			return q, true
		}
	}
	return procedure.Question{}, false
}

func isParticipant(c *procedure.Case, addr string) bool {
	for _, a := range []string{c.Employee.Email, c.OriginalPhysician.Email, c.Employer.NoticeEmail} {
		if a != "" && strings.EqualFold(a, addr) {
			return true
		}
	}
	return c.Chosen != nil && strings.EqualFold(c.Chosen.Email, addr)
}

// releasedPrefix starts the reason of a message the backoffice released
// from quarantine (secondopinion quarantine release).
const releasedPrefix = "released by the backoffice"

// withdrawRE is a withdrawal in a reply to one of our mails: it must open
// the reply, since it withdraws the case.
var withdrawRE = regexp.MustCompile(`(?i)^\s*(intrekken|ik trek (mijn aanvraag|de aanvraag|het verzoek) in|withdraw|i withdraw)\b`)

// withdrawalWords is the looser test for a new mail without a case
// reference: anywhere in the subject or text. Such a mail must not open a
// case (it names a second opinion, so it reads as a request), and cannot
// withdraw one; it is only kept for the backoffice.
var withdrawalWords = regexp.MustCompile(`(?i)\b(intrekken|intrekking|trek\s+(mijn|de|het|deze)\s+(aanvraag|verzoek|second[ -]?opinion)(\s+\S+){0,4}?\s+in\b|withdraw\w*)`)
var noAdviceRE = regexp.MustCompile(`(?i)\b(geen inhoudelijk advies|no substantive advice)\b`)
var questionLineRE = regexp.MustCompile(`(?im)^\s*(vraagstelling|vraag|question)\s*:\s*(.+)$`)

// answer reads the reply for the question it answers and makes the input.
func (e *Engine) answer(v verdict, m *message.Message, docs []procedure.Document, now time.Time) (procedure.Input, error) {
	c, q := v.c, v.q
	reply := m.Reply
	if v.role == procedure.RoleEmployee && withdrawRE.MatchString(reply) {
		return procedure.Withdraw{By: procedure.RoleEmployee, Reason: "withdrawn by the employee by mail"}, nil
	}
	if v.hold != "" {
		return nil, quarantine{v.hold}
	}
	unclear := func(why string) procedure.Input {
		return procedure.Unclear{Role: v.role, Question: q.ID, Why: why}
	}
	qc := message.QuestionContext{Now: now, Loc: amsterdam}
	switch q.Kind {
	case procedure.KindChoice:
		for _, p := range c.Proposed {
			qc.Options = append(qc.Options, p.Name)
		}
		a := message.ParseAnswer(message.KindChoice, reply, qc)
		if a.Kind == message.KindUnclear {
			return unclear(a.Why), nil
		}
		if a.OtherName != "" {
			p, ok := e.physicianByName(a.OtherName, registry.RoleSecondOpinion)
			if !ok {
				return unclear(fmt.Sprintf("named physician %q is not a second-opinion physician in the registry", a.OtherName)), nil
			}
			return procedure.Choice{Other: &p}, nil
		}
		return procedure.Choice{Index: a.Choice, Backup: a.Backup}, nil
	case procedure.KindYesNo:
		a := message.ParseAnswer(message.KindYesNo, reply, qc)
		switch q.Step {
		case procedure.StepEmployeeSign:
			if a.Kind == message.KindUnclear && hasScan(m.Attachments) {
				return procedure.Signature{Role: procedure.RoleEmployee, Agreed: true, Via: "signed scan"}, nil
			}
			if a.Kind == message.KindUnclear {
				return unclear(a.Why), nil
			}
			return procedure.Signature{Role: procedure.RoleEmployee, Agreed: a.Yes, Via: "reply"}, nil
		case procedure.StepPhysicianSign:
			if a.Kind == message.KindUnclear {
				return unclear(a.Why), nil
			}
			return procedure.Signature{Role: procedure.RolePhysician, Agreed: a.Yes, Via: "pgp-signed reply"}, nil
		case procedure.StepApproval:
			if a.Kind == message.KindUnclear {
				return unclear(a.Why), nil
			}
			return procedure.EmployerApproval{Approved: a.Yes}, nil
		case procedure.StepAcceptance:
			if a.Kind == message.KindUnclear {
				return unclear(a.Why), nil
			}
			acc := procedure.Acceptance{Accept: a.Yes}
			if a.Yes {
				if dt := message.ParseAnswer(message.KindDateTime, reply, qc); dt.Kind == message.KindDateTime {
					acc.ConsultAt = dt.Time
				}
				if c.Chosen != nil {
					_, verdict, err := e.o.Keyring.Lookup(c.Chosen.Email, now)
					acc.KeyUsable = err == nil && verdict.Usable
				}
			}
			return acc, nil
		}
		return unclear("yes/no answer for step " + string(q.Step)), nil
	case procedure.KindDateTime:
		a := message.ParseAnswer(message.KindDateTime, reply, qc)
		if a.Kind == message.KindUnclear {
			return unclear(a.Why), nil
		}
		return procedure.ConsultDate{At: a.Time}, nil
	case procedure.KindConsent:
		a := message.ParseAnswer(message.KindConsent, reply, qc)
		if a.Kind == message.KindUnclear {
			return unclear(a.Why), nil
		}
		return procedure.Feedback{Physician: a.Physician, Employer: a.Employer}, nil
	case procedure.KindIntake:
		a := message.ParseAnswer(message.KindRefusal, reply, qc)
		if a.Kind == message.KindUnclear {
			if len(docs) > 0 {
				return procedure.Documents{Documents: docs, Candidates: candidates(e.Registry())}, nil
			}
			return unclear(a.Why), nil
		}
		if !a.Yes {
			return procedure.IntakeAnswer{Refuse: true, Reason: a.Value}, nil
		}
		ia := procedure.IntakeAnswer{Documents: docs, Candidates: candidates(e.Registry())}
		if mm := questionLineRE.FindStringSubmatch(reply); mm != nil {
			ia.Question = strings.TrimSpace(mm[2])
		}
		return ia, nil
	case procedure.KindAdvice:
		if len(docs) > 0 {
			return procedure.Advice{Documents: docs}, nil
		}
		if noAdviceRE.MatchString(reply) {
			return procedure.Advice{NoSubstantive: true}, nil
		}
		return unclear("no advice attached and no statement that no substantive advice follows"), nil
	case procedure.KindRequest:
		req, _ := e.parseRequest(m, v.role)
		return req, nil
	}
	return nil, quarantined("case %s: no reader for a %s answer", c.Ref, q.Kind)
}

// physicianByName finds the registry physician in role (registry.Role…)
// whom an employee named: the only one whose name is, or contains, the
// given name.
func (e *Engine) physicianByName(name, role string) (procedure.Physician, bool) {
	reg := e.Registry()
	n := normName(name)
	var found []procedure.Physician
	for _, p := range reg.Physicians {
		if !p.HasRole(role) {
			continue
		}
		pn := normName(p.Name)
		if pn == n || strings.Contains(pn, n) && len(n) >= 4 {
			found = append(found, physician(p))
		}
	}
	if len(found) != 1 {
		return procedure.Physician{}, false
	}
	return found[0], true
}

func normName(s string) string {
	s = strings.ToLower(s)
	for _, p := range []string{"dr. ", "dr ", "drs. ", "mevrouw ", "meneer ", "mw. ", "dhr. "} {
		s = strings.TrimPrefix(s, p)
	}
	return strings.Join(strings.Fields(s), " ")
}

// quarantine keeps a message for the backoffice with its reason. The
// message is marked last: if the store fails in between, it stays pending
// and is quarantined again on the next pass (at worst a second alert),
// rather than sitting in quarantine with no alert and no audit entry.
func (e *Engine) quarantine(ctx context.Context, in store.Inbound, reason string) error {
	return e.o.Store.Quarantine(ctx, in.ID, reason, e.Now())
}

// hasScan reports whether the mail carries what can be the signed form: a
// PDF or an image the sender attached. A logo in a mail signature (a
// resource of the HTML body) or any other file is not a signature.
func hasScan(atts []message.Attachment) bool {
	for _, a := range atts {
		if a.Related {
			continue
		}
		if a.ContentType == "application/pdf" || strings.HasPrefix(a.ContentType, "image/") {
			return true
		}
	}
	return false
}
