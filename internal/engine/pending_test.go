package engine_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"secondopinion/internal/pgpmime"
	"secondopinion/internal/procedure"
	"secondopinion/internal/rig"
	"secondopinion/internal/store"
)

// The pending tests store many messages at once, as a busy mailbox does,
// and let one ProcessPending call handle them: messages of different cases
// are read and decided side by side, those of one case in stored order.

// questionFor finds the mail to addr about case ref whose subject holds
// word.
func (e *env) questionFor(ref, addr, word string) sent {
	e.t.Helper()
	for _, s := range e.outbox() {
		subj := strings.ToLower(s.Msg.Subject)
		if len(s.To) == 1 && s.To[0] == addr && strings.Contains(s.Msg.Subject, ref) && strings.Contains(subj, word) {
			return s
		}
	}
	e.t.Fatalf("no mail to %s about %q for %s in the outbox", addr, word, ref)
	return sent{}
}

// processPending runs one ProcessPending call and wants n messages handled.
func (e *env) processPending(n int) {
	e.t.Helper()
	got, err := e.eng.ProcessPending(e.ctx)
	if err != nil {
		e.t.Fatalf("process pending: %v", err)
	}
	if got != n {
		e.t.Errorf("ProcessPending handled %d messages, want %d", got, n)
	}
}

// casesOf lists the cases by employee address, oldest first.
func (e *env) casesOf() map[string][]*procedure.Case {
	e.t.Helper()
	list, err := e.st.Cases(e.ctx, store.CaseFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]*procedure.Case{}
	for _, cs := range list {
		c, err := e.st.Case(e.ctx, cs.ID)
		if err != nil {
			e.t.Fatal(err)
		}
		out[c.Employee.Email] = append(out[c.Employee.Email], c)
	}
	for _, cs := range out {
		for i := 1; i < len(cs); i++ {
			for j := i; j > 0 && cs[j].ID < cs[j-1].ID; j-- {
				cs[j], cs[j-1] = cs[j-1], cs[j]
			}
		}
	}
	return out
}

// opensTo fails unless the stored document at rel opens, sealed by the
// service key, to want.
func (e *env) opensTo(rel string, want []byte) {
	e.t.Helper()
	f, err := e.st.OpenFile(rel)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var got bytes.Buffer
	if err := pgpmime.OpenSealed(&got, f, e.svc, e.clock.Now()); err != nil {
		e.t.Fatalf("document %s: %v", rel, err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		e.t.Errorf("document %s opens to %d bytes that are not the file received (%d bytes)", rel, got.Len(), len(want))
	}
}

func employeeAddr(i int) string { return fmt.Sprintf("werknemer%d@mail.example", i) }

func requestFrom(e *env, i int) []byte {
	name := fmt.Sprintf("Werknemer %d", i)
	return e.plain(name, employeeAddr(i), e.info.Address(), "Aanvraag second opinion",
		strings.Replace(requestText, "Naam: Şahin Yılmaz", "Naam: "+name, 1), "")
}

// Many messages for several cases, stored before one ProcessPending call,
// each get exactly their own effect: every request its own case (two from
// one employee: two cases, the second counting the first), every intake
// answer its own sealed document in its own case, and a choice and a
// withdrawal of one case are decided in the order they were stored.
func TestProcessPendingManyCases(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	const n = 6

	// Requests, the first employee asking twice.
	for i := range n {
		e.store(requestFrom(e, i))
	}
	again := e.store(requestFrom(e, 0))
	e.processPending(n + 1)
	byEmp := e.casesOf()
	var cases []*procedure.Case
	for i := range n {
		cs := byEmp[employeeAddr(i)]
		want := 1
		if i == 0 {
			want = 2
		}
		if len(cs) != want {
			t.Fatalf("%s has %d cases, want %d", employeeAddr(i), len(cs), want)
		}
		for k, c := range cs {
			if c.State != procedure.StateIntake {
				t.Errorf("case %s of %s is %s, want %s", c.Ref, employeeAddr(i), c.State, procedure.StateIntake)
			}
			if c.EarlierRequests != k {
				t.Errorf("case %s of %s counts %d earlier requests, want %d", c.Ref, employeeAddr(i), c.EarlierRequests, k)
			}
		}
		cases = append(cases, cs...)
	}
	if in := e.status(again); in.CaseID != byEmp[employeeAddr(0)][1].ID {
		t.Errorf("the second request of %s made case %d, want the later case %d", employeeAddr(0), in.CaseID, byEmp[employeeAddr(0)][1].ID)
	}

	// Intake answers, each signed and encrypted with a medical file of its
	// own, all at once.
	files := map[int64]string{} // case -> sha256 of its file
	bodies := map[int64][]byte{}
	intakes := map[int64]sent{}
	for k, c := range cases {
		q := e.questionFor(c.Ref, rig.AddrOriginal, "vraagstelling")
		f := fileOf("Probleemanalyse.pdf", 96<<10+k*4096)
		f[0].Body = append([]byte("%PDF-1.4 "+c.Ref+"\n"), f[0].Body...)
		sum := sha256.Sum256(f[0].Body)
		files[c.ID] = hex.EncodeToString(sum[:])
		bodies[c.ID] = f[0].Body
		intakes[c.ID] = q
		e.store(e.signed(rig.AddrOriginal, "A. de Vries", rig.AddrOriginal, q.replyTo(t), "Re: "+q.Msg.Subject,
			"Akkoord met de vraagstelling.\n\nBijgevoegd de probleemanalyse.\n\nA. de Vries", q.Msg.MessageID, f...))
	}
	e.processPending(len(cases))
	for _, c := range cases {
		e.caseOf(c.ID, procedure.StateChoosing)
		docs, err := e.st.Documents(e.ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(docs) != 1 || docs[0].SHA256 != files[c.ID] {
			t.Fatalf("case %s holds %d documents (%v), want exactly its own file %s", c.Ref, len(docs), docs, files[c.ID][:12])
		}
		e.opensTo(docs[0].Path, bodies[c.ID])
	}

	// The employees answer the proposal; some withdraw right after their
	// choice, one withdraws and then chooses. The messages of the cases
	// are interleaved in the mailbox.
	type answer struct {
		c    *procedure.Case
		text string
		id   int64
	}
	var answers []*answer
	// A second intake answer, validly signed, after the intake closed: it
	// is read ahead like the others, and must not add a document.
	late := intakes[cases[0].ID]
	lateID := e.store(e.signed(rig.AddrOriginal, "A. de Vries", rig.AddrOriginal, late.replyTo(t), "Re: "+late.Msg.Subject,
		"Akkoord met de vraagstelling.\n\nNog een bijlage.\n\nA. de Vries", late.Msg.MessageID, fileOf("Nagekomen.pdf", 8<<10)...))
	reply := func(c *procedure.Case, text string) *answer {
		q := e.questionFor(c.Ref, c.Employee.Email, "kies")
		a := &answer{c: c, text: text}
		a.id = e.store(e.plain("", c.Employee.Email, q.replyTo(t), "Re: "+q.Msg.Subject, text, q.Msg.MessageID))
		answers = append(answers, a)
		return a
	}
	chooseThenWithdraw := map[int64]bool{}
	withdrawThenChoose := cases[len(cases)-1]
	for k, c := range cases {
		switch {
		case c == withdrawThenChoose:
			reply(c, "Intrekken")
			reply(c, "Ik kies nummer 1.")
		default:
			reply(c, "Ik kies nummer 1.")
			if k%2 == 1 {
				chooseThenWithdraw[c.ID] = true
			}
		}
	}
	for _, c := range cases {
		if chooseThenWithdraw[c.ID] {
			reply(c, "Intrekken")
		}
	}
	e.processPending(len(answers) + 1)
	if in := e.status(lateID); in.Status != store.InboundQuarantined || !strings.Contains(in.Reason, "closed") {
		t.Errorf("intake answer after the intake: %s (%q), want quarantined as closed", in.Status, in.Reason)
	}
	if docs, err := e.st.Documents(e.ctx, cases[0].ID); err != nil || len(docs) != 1 {
		t.Errorf("case %s holds %d documents after a late intake answer (%v), want 1", cases[0].Ref, len(docs), err)
	}
	for _, a := range answers {
		in := e.status(a.id)
		late := a.c == withdrawThenChoose && strings.HasPrefix(a.text, "Ik kies")
		switch {
		case late:
			if in.Status != store.InboundQuarantined || !strings.Contains(in.Reason, "after it closed") {
				t.Errorf("case %s: the choice stored after the withdrawal is %s (%q), want quarantined as after the close", a.c.Ref, in.Status, in.Reason)
			}
		case in.Status != store.InboundProcessed:
			t.Errorf("case %s: %q is %s (%q), want processed", a.c.Ref, a.text, in.Status, in.Reason)
		}
	}
	for _, c := range cases {
		want := procedure.StateAuthorising
		if chooseThenWithdraw[c.ID] || c == withdrawThenChoose {
			want = procedure.StateWithdrawn
		}
		got := e.caseOf(c.ID, want)
		if chooseThenWithdraw[c.ID] && got.Chosen == nil {
			t.Errorf("case %s was withdrawn without the choice stored before the withdrawal", c.Ref)
		}
		if c == withdrawThenChoose && got.Chosen != nil {
			t.Errorf("case %s took the choice stored after its withdrawal", c.Ref)
		}
	}
	if _, err := e.st.VerifyAudit(e.ctx); err != nil {
		t.Errorf("audit chain: %v", err)
	}
	if left, err := e.st.PendingInbound(e.ctx, 100); err != nil || len(left) != 0 {
		t.Errorf("%d messages left pending (%v)", len(left), err)
	}
}

// A shutdown (ctx ended) in the middle of a busy mailbox: ProcessPending
// returns, every message is either fully handled or still pending, and
// the next call handles the rest — each request makes exactly one case.
// A message stored while another message's decision is under way is taken
// on at once (KickInbound), not only once that decision has ended.
func TestProcessPendingTakesOnMailStoredMeanwhile(t *testing.T) {
	t.Parallel()
	held, release := make(chan struct{}), make(chan struct{})
	var hold sync.Once
	e := newEnv(t, envOptions{OnCommit: func(c *procedure.Case, _ []procedure.Effect, _ []store.AuditEntry) {
		if c.Employee.Email == employeeAddr(1) {
			hold.Do(func() { close(held); <-release })
		}
	}})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	e.store(requestFrom(e, 2))
	e.processPending(1)
	other := e.casesOf()[employeeAddr(2)][0]

	e.store(requestFrom(e, 1))
	done := make(chan error, 1)
	go func() {
		_, err := e.eng.ProcessPending(e.ctx)
		done <- err
	}()
	<-held // the request of employee 1 is being decided, and stays so
	q := e.questionFor(other.Ref, rig.AddrOriginal, "vraagstelling")
	e.store(e.signed(rig.AddrOriginal, "A. de Vries", rig.AddrOriginal, q.replyTo(t), "Re: "+q.Msg.Subject,
		"Akkoord met de vraagstelling.\n\nA. de Vries", q.Msg.MessageID, fileOf("Probleemanalyse.pdf", 8<<10)...))
	e.eng.KickInbound()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := e.st.Case(e.ctx, other.ID)
		if err != nil {
			t.Fatal(err)
		}
		if c.State == procedure.StateChoosing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the intake answer stored meanwhile was not decided while another decision was under way (case %s is %s)", c.Ref, c.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("process pending: %v", err)
	}
}

func TestProcessPendingStopsCleanly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	const n = 12
	for i := range n {
		e.store(requestFrom(e, i))
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	go func() {
		// Stop as soon as the first case is committed.
		for ctx.Err() == nil {
			if list, err := e.st.Cases(ctx, store.CaseFilter{}); err == nil && len(list) > 0 {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	first, err := e.eng.ProcessPending(ctx)
	switch {
	case err == nil:
		t.Logf("all %d handled before the stop took effect", first)
	case !errors.Is(err, context.Canceled):
		t.Fatalf("process pending: %v, want the context's error", err)
	}
	pending, err := e.st.PendingInbound(e.ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if first+len(pending) != n {
		t.Errorf("%d handled and %d pending after the stop, want %d in all", first, len(pending), n)
	}
	if got := e.countCases(); got != first {
		t.Errorf("%d cases after %d handled requests: a decision was left half-done", got, first)
	}
	t.Logf("handled %d before the stop, %d after", first, len(pending))
	e.processPending(len(pending))
	if got := e.countCases(); got != n {
		t.Errorf("%d cases, want %d", got, n)
	}
	if got := len(e.outbox()); got != 2*n {
		t.Errorf("%d mails queued, want %d (an acknowledgement and an intake question per case)", got, 2*n)
	}
	if _, err := e.st.VerifyAudit(e.ctx); err != nil {
		t.Errorf("audit chain: %v", err)
	}
}
