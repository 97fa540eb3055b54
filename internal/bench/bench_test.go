package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestRunCompletesCases(t *testing.T) {
	dir := t.TempDir()
	res, err := Run(context.Background(), Options{Dir: dir, Cases: 6, Concurrency: 3, Attachment: 64 << 10, NoSync: true, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// A second run into the same directory (bench --out DIR again) is
	// refused with the reason; it panicked, closing a rig it never had.
	if _, err := Run(context.Background(), Options{Dir: dir, Cases: 1, Concurrency: 1, Attachment: 16 << 10, NoSync: true, Timeout: time.Minute}); err == nil || !strings.Contains(err.Error(), "service key") {
		t.Errorf("a second run into %s: %v; want the refusal to overwrite its service key", dir, err)
	}
	if res.Cases != 6 || res.CasesPerSecond <= 0 || res.Daemon != "in-process" {
		t.Errorf("%d cases at %.1f/s (%s)", res.Cases, res.CasesPerSecond, res.Daemon)
	}
	// Seven answered steps per case: request, intake, choice, the second
	// signature, acceptance, advice, consent.
	if res.Reactions != 6*(Steps-1) {
		t.Errorf("%d reactions timed, want %d", res.Reactions, 6*(Steps-1))
	}
	if res.Reaction.P50 <= 0 || res.Reaction.P99 < res.Reaction.P50 {
		t.Errorf("reaction percentiles %+v", res.Reaction)
	}
	if len(res.ReactionByStep) != len(ReactionSteps) {
		t.Errorf("reactions of %d steps, want the %d steps %q", len(res.ReactionByStep), len(ReactionSteps), ReactionSteps)
	}
	for _, step := range ReactionSteps {
		if p := res.ReactionByStep[step]; p.P50 <= 0 || p.Max > res.Reaction.Max {
			t.Errorf("%s: %+v (all steps: %+v)", step, p, res.Reaction)
		}
	}
	if res.PeakRSSMB <= 0 || res.DBBytesPerCase < 64<<10 {
		t.Errorf("peak RSS %.1f MB, %d db bytes per case (the medical file alone is 64 KiB)", res.PeakRSSMB, res.DBBytesPerCase)
	}
	if w := res.SchedWait; w == nil || w.Max <= 0 || w.P99 > w.Max {
		t.Errorf("wait for a core: %+v, want the percentiles of the run's waits", w)
	}
	if res.MailsIn != 6*Steps || res.Duplicates != 0 {
		t.Errorf("%d mails in (want %d), %d sent twice without any crash", res.MailsIn, 6*Steps, res.Duplicates)
	}
}

func TestRunWithOpenCases(t *testing.T) {
	res, err := Run(context.Background(), Options{Dir: t.TempDir(), Cases: 2, Concurrency: 2, Attachment: 16 << 10, NoSync: true, Open: 40, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.Open != 40 || res.OpenSetupSeconds <= 0 || res.PeakRSSMB <= 0 {
		t.Errorf("open %d in %.2f s, peak RSS %.1f MB", res.Open, res.OpenSetupSeconds, res.PeakRSSMB)
	}
}

func TestPercentiles(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	var hundred []time.Duration
	for i := 100; i >= 1; i-- {
		hundred = append(hundred, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		name string
		in   []time.Duration
		want Percent
	}{
		{"none", nil, Percent{}},
		{"one", ms(7), Percent{7, 7, 7, 7}},
		{"hundred, unsorted", hundred, Percent{50, 95, 99, 100}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentiles(tt.in); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPostboxCountsDuplicatesAndHandsMailOut(t *testing.T) {
	p := NewPostbox("so@svc.example")
	mail := func(id, subject string) []byte {
		return []byte(fmt.Sprintf("From: so@svc.example\r\nMessage-Id: %s\r\nSubject: %s\r\nReply-To: so+tok@svc.example\r\n\r\nbody\r\n", id, subject))
	}
	p.Accept("so@svc.example", []string{"a@x.example"}, mail("<1@svc>", "[SO-2026-0001] Kies uw arts"))
	p.Accept("so@svc.example", []string{"a@x.example"}, mail("<1@svc>", "[SO-2026-0001] Kies uw arts"))
	p.Accept("so@svc.example", []string{"a@x.example"}, mail("<2@svc>", "[SO-2026-0002] =?utf-8?q?Graag_uw_advies?="))
	p.Accept("a@x.example", []string{"so+tok@svc.example"}, mail("<3@a>", "Re: [SO-2026-0001] Kies uw arts"))
	tr := p.Traffic()
	if tr.Inbound != 1 || tr.Outbound != 3 || tr.Distinct != 2 || tr.Duplicates != 1 || len(tr.DuplicateIDs) != 1 || tr.DuplicateIDs[0] != "<1@svc>" {
		t.Errorf("traffic %+v", tr)
	}
	if _, ok := p.AcceptedAt("<3@a>"); !ok {
		t.Error("the participant's mail has no acceptance time")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m, err := p.Wait(ctx, "A@x.example", "SO-2026-0002", "advies")
	if err != nil || m.MessageID != "<2@svc>" || m.ReplyTo != "so+tok@svc.example" {
		t.Fatalf("got %+v, %v", m, err)
	}
	if _, err := p.Wait(ctx, "a@x.example", "SO-2026-0002", "advies"); err == nil {
		t.Error("a taken mail was handed out again")
	}
}

// TestPostboxFiledCopies: the daemon's copies to its own +sent address
// are neither participants' mails nor sent twice, and a copy sent along
// with the mail to a participant leaves that mail readable.
func TestPostboxFiledCopies(t *testing.T) {
	p := NewPostbox("so@svc.example")
	mail := func(id, subject string) []byte {
		return []byte(fmt.Sprintf("From: so@svc.example\r\nMessage-Id: %s\r\nSubject: %s\r\n\r\nbody\r\n", id, subject))
	}
	p.Accept("so@svc.example", []string{"a@x.example"}, mail("<1@svc>", "[SO-2026-0001] Kies uw arts"))
	p.Accept("so@svc.example", []string{"so+sent@svc.example"}, mail("<1@svc>", "[SO-2026-0001] Kies uw arts"))
	p.Accept("so@svc.example", []string{"b@x.example", "so+sent@svc.example"}, mail("<2@svc>", "[SO-2026-0002] Kies uw arts"))
	tr := p.Traffic()
	if tr.Inbound != 0 || tr.Outbound != 2 || tr.Duplicates != 0 || tr.Filed != 2 || tr.BytesFiled == 0 {
		t.Errorf("traffic %+v; want 2 daemon mails, no duplicates, 2 filed copies, nothing inbound", tr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m, err := p.Wait(ctx, "b@x.example", "SO-2026-0002")
	if err != nil || len(m.Raw) == 0 {
		t.Fatalf("b's mail: %v, %d bytes", err, len(m.Raw))
	}
	if n := p.Count("so@svc.example", ""); n != 0 {
		t.Errorf("the service's own copies are waiting for a participant: %d", n)
	}
}
