package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"secondopinion/internal/procedure"
	"secondopinion/internal/store"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "data"), &store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// addCase commits a new case in state with the given deadlines.
func addCase(t *testing.T, s *store.Store, state procedure.State, dls ...procedure.Deadline) {
	t.Helper()
	ctx := context.Background()
	_, ref, err := s.NextCase(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	c := &procedure.Case{Ref: ref, State: state, CreatedAt: t0.Add(-72 * time.Hour), Deadlines: dls,
		Employee: procedure.Person{Name: "Jan", Email: "jan@x.example"}}
	if _, err := s.Apply(ctx, store.Decision{Case: c, Now: t0.Add(-72 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

// addInbound stores a raw message that arrived at at and gives it status
// (store.InboundNew leaves it pending).
func addInbound(t *testing.T, s *store.Store, n int, at time.Time, status string) {
	t.Helper()
	ctx := context.Background()
	raw := fmt.Sprintf("Message-ID: <in%d@x.example>\r\nSubject: ja\r\n\r\nakkoord\r\n", n)
	id, _, err := s.StoreRaw(ctx, store.RawMeta{UID: uint32(n), ReceivedAt: at}, strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if status != store.InboundNew {
		if err := s.MarkInbound(ctx, id, status, "test", 0, t0); err != nil {
			t.Fatal(err)
		}
	}
}

func addOutbox(t *testing.T, s *store.Store, n int, at time.Time) {
	t.Helper()
	if err := s.Enqueue(context.Background(), store.OutboxRow{MessageID: fmt.Sprintf("<out%d@so.example>", n),
		From: "so@so.example", To: []string{"a@x.example"}, Body: []byte("m")}, at); err != nil {
		t.Fatal(err)
	}
}

func newEndpoint(t *testing.T, s *store.Store, started time.Time) *httptest.Server {
	t.Helper()
	e, err := New(Options{Store: s, Now: func() time.Time { return t0 }, Started: started})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

// scrape returns every sample of /metrics as "name{l=v,...}" → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", res.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("/metrics is not in the text format: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Histogram != nil:
				out[key+"_count"] = float64(m.Histogram.GetSampleCount())
			default:
				out[key] = 0
			}
		}
	}
	return out
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestMetricsShowTheStore(t *testing.T) {
	s := openStore(t)
	addCase(t, s, procedure.StateChoosing, procedure.Deadline{Step: procedure.StepChoice, Kind: procedure.Remind, Due: t0.Add(-2 * time.Hour)})
	addCase(t, s, procedure.StateChoosing, procedure.Deadline{Step: procedure.StepChoice, Kind: procedure.Escalate, Due: t0.Add(time.Hour)})
	addCase(t, s, procedure.StateAdvising, procedure.Deadline{Step: procedure.StepAdvice, Kind: procedure.Escalate, Due: t0.Add(-90 * time.Second)})
	addCase(t, s, procedure.StateCompleted, procedure.Deadline{Step: procedure.StepRetention, Kind: procedure.Expire, Due: t0.AddDate(20, 0, 0)})
	addInbound(t, s, 1, t0.Add(-30*time.Second), store.InboundNew)
	addInbound(t, s, 2, t0.Add(-10*time.Second), store.InboundNew)
	addInbound(t, s, 3, t0.Add(-time.Hour), store.InboundQuarantined)
	addInbound(t, s, 4, t0.Add(-2*time.Hour), store.InboundQuarantined)
	addInbound(t, s, 5, t0.Add(-3*time.Hour), store.InboundProcessed)
	addInbound(t, s, 6, t0.Add(-4*time.Hour), store.InboundQuarantined)
	addInbound(t, s, 7, t0.Add(-5*time.Hour), store.InboundRejected)
	addOutbox(t, s, 1, t0.Add(-5*time.Minute))
	addOutbox(t, s, 2, t0.Add(-time.Minute))
	addOutbox(t, s, 3, t0.Add(-time.Minute))
	if err := s.AddAlert(context.Background(), 0, "key of x expires on 2026-04-01", t0); err != nil {
		t.Fatal(err)
	}
	due, err := s.DueOutbox(context.Background(), t0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range due {
		switch it.MessageID {
		case "<out3@so.example>":
			s.OutboxSent(context.Background(), it.ID, t0)
		case "<out1@so.example>": // cut off by a crash: still counts as waiting
			s.OutboxSending(context.Background(), it.ID, t0.Add(-4*time.Minute))
		}
	}

	schema, err := s.SchemaVersion(context.Background())
	if err != nil || schema < 4 {
		t.Fatalf("schema version %d, %v", schema, err)
	}
	srv := newEndpoint(t, s, time.Now())
	got := scrape(t, srv.URL)
	want := map[string]float64{
		"secondopinion_store_up":                                  1,
		"secondopinion_schema_version":                            float64(schema),
		"secondopinion_cases{state=choosing}":                     2,
		"secondopinion_cases{state=advising}":                     1,
		"secondopinion_cases{state=completed}":                    1,
		"secondopinion_cases{state=intake}":                       0,
		"secondopinion_cases{state=purged}":                       0,
		"secondopinion_deadlines_overdue{kind=reminder}":          1,
		"secondopinion_deadlines_overdue{kind=escalation}":        1,
		"secondopinion_deadlines_overdue{kind=expiry}":            0,
		"secondopinion_deadline_overdue_seconds{kind=reminder}":   7200,
		"secondopinion_deadline_overdue_seconds{kind=escalation}": 90,
		"secondopinion_deadline_overdue_seconds{kind=expiry}":     0,
		"secondopinion_outbox_messages{status=queued}":            1,
		"secondopinion_outbox_messages{status=sending}":           1,
		"secondopinion_outbox_messages{status=sent}":              1,
		"secondopinion_outbox_messages{status=failed}":            0,
		"secondopinion_outbox_oldest_queued_seconds":              300,
		"secondopinion_inbound_pending_messages":                  2,
		"secondopinion_inbound_oldest_pending_seconds":            30,
		"secondopinion_quarantine_messages":                       3,
		"secondopinion_alerts_unresolved":                         1,
		"secondopinion_ingest_lag_seconds_count":                  0,
	}
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s missing", k)
		} else if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
	if n := countPrefix(got, "secondopinion_cases{"); n != len(procedure.States) {
		t.Errorf("%d case states exported, want all %d", n, len(procedure.States))
	}
	for _, std := range []string{"go_goroutines", "process_resident_memory_bytes", "process_open_fds"} {
		if _, ok := got[std]; !ok {
			t.Errorf("standard metric %s missing", std)
		}
	}
}

func countPrefix(m map[string]float64, prefix string) int {
	n := 0
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

func TestIngestLagIsAHistogram(t *testing.T) {
	s := openStore(t)
	e, err := New(Options{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	defer srv.Close()
	e.ObserveIngestLag(3 * time.Second)
	e.ObserveIngestLag(40 * time.Second)
	if n := scrape(t, srv.URL)["secondopinion_ingest_lag_seconds_count"]; n != 2 {
		t.Errorf("ingest lag count %v, want 2", n)
	}
}

func TestScrapeOfAClosedStoreSaysStoreDown(t *testing.T) {
	s := openStore(t)
	srv := newEndpoint(t, s, time.Now())
	s.Close()
	got := scrape(t, srv.URL)
	if got["secondopinion_store_up"] != 0 {
		t.Errorf("store_up %v with a closed database", got["secondopinion_store_up"])
	}
	if _, ok := got["secondopinion_cases{state=choosing}"]; ok {
		t.Error("case figures exported without a database")
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("the runtime metrics went with the database")
	}
}

func TestHealthz(t *testing.T) {
	long := time.Now().Add(-time.Hour) // started long ago: the stale checks apply
	tests := []struct {
		name    string
		fill    func(t *testing.T, s *store.Store)
		started time.Time
		closed  bool
		status  int
		body    []string // substrings of the body
	}{
		{"idle daemon", func(*testing.T, *store.Store) {}, long, false, 200, []string{"ok\n"}},
		{"fresh work is fine", func(t *testing.T, s *store.Store) {
			addInbound(t, s, 1, t0.Add(-time.Minute), store.InboundNew)
			addOutbox(t, s, 1, t0.Add(-time.Minute))
			addCase(t, s, procedure.StateChoosing, procedure.Deadline{Step: procedure.StepChoice, Kind: procedure.Escalate, Due: t0.Add(-time.Minute)})
		}, long, false, 200, []string{"ok\n"}},
		{"a reminder held until office hours is fine", func(t *testing.T, s *store.Store) {
			addCase(t, s, procedure.StateChoosing, procedure.Deadline{Step: procedure.StepChoice, Kind: procedure.Remind, Due: t0.Add(-15 * time.Hour)})
		}, long, false, 200, []string{"ok\n"}},
		{"quarantine waits for people, not for the daemon", func(t *testing.T, s *store.Store) {
			addInbound(t, s, 1, t0.Add(-72*time.Hour), store.InboundQuarantined)
		}, long, false, 200, []string{"ok\n"}},
		{"inbound loop stuck", func(t *testing.T, s *store.Store) {
			addInbound(t, s, 1, t0.Add(-20*time.Minute), store.InboundNew)
			addInbound(t, s, 2, t0.Add(-time.Minute), store.InboundNew)
		}, long, false, 503, []string{"inbound: 2 stored messages not handled, the oldest since 2026-03-02T08:40:00Z"}},
		{"sweep not running", func(t *testing.T, s *store.Store) {
			addCase(t, s, procedure.StateChoosing, procedure.Deadline{Step: procedure.StepChoice, Kind: procedure.Escalate, Due: t0.Add(-time.Hour)})
		}, long, false, 503, []string{"deadlines: 1 escalation deadlines overdue", "sweep"}},
		{"retention purge not done", func(t *testing.T, s *store.Store) {
			addCase(t, s, procedure.StateCompleted, procedure.Deadline{Step: procedure.StepRetention, Kind: procedure.Expire, Due: t0.Add(-24 * time.Hour)})
		}, long, false, 503, []string{"deadlines: 1 expiry deadlines overdue"}},
		{"delivery worker stuck", func(t *testing.T, s *store.Store) {
			addOutbox(t, s, 1, t0.Add(-30*time.Minute))
		}, long, false, 503, []string{"outbox: 1 mails due since 2026-03-02T08:30:00Z"}},
		{"every problem at once", func(t *testing.T, s *store.Store) {
			addInbound(t, s, 1, t0.Add(-20*time.Minute), store.InboundNew)
			addOutbox(t, s, 1, t0.Add(-30*time.Minute))
		}, long, false, 503, []string{"inbound:", "outbox:"}},
		{"old work right after a restart is given time", func(t *testing.T, s *store.Store) {
			addInbound(t, s, 1, t0.Add(-20*time.Hour), store.InboundNew)
			addOutbox(t, s, 1, t0.Add(-20*time.Hour))
		}, time.Now(), false, 200, []string{"ok\n"}},
		{"database gone", func(*testing.T, *store.Store) {}, time.Now(), true, 503, []string{"database:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			tt.fill(t, s)
			srv := newEndpoint(t, s, tt.started)
			if tt.closed {
				s.Close()
			}
			status, body := get(t, srv.URL+"/healthz")
			if status != tt.status {
				t.Errorf("status %d, want %d; body:\n%s", status, tt.status, body)
			}
			for _, want := range tt.body {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q:\n%s", want, body)
				}
			}
			if strings.Contains(body, "x.example") || strings.Contains(body, "jan") {
				t.Errorf("health output names a person or message:\n%s", body)
			}
		})
	}
}

// TestHealthzMailbox: with MailboxEvery (the ingester's poll interval) set,
// /healthz fails once the mailbox has gone unread for StaleAfter beyond it,
// also when it was never read since the start, and /metrics shows how long.
func TestHealthzMailbox(t *testing.T) {
	const every = 5 * time.Minute // + StaleAfter 10 minutes: 15 minutes allowed
	tests := []struct {
		name    string
		every   time.Duration
		read    time.Time // zero: no pass reported
		started time.Time
		status  int
		body    string
		unread  float64 // -1: the metric is absent
	}{
		{"read 14 minutes ago", every, t0.Add(-14 * time.Minute), t0.Add(-time.Hour), 200, "ok\n", 14 * 60},
		{"read 16 minutes ago", every, t0.Add(-16 * time.Minute), t0.Add(-time.Hour), 503,
			"imap: the mailbox was last read at 2026-03-02T08:44:00Z: the ingester cannot reach the server", 16 * 60},
		{"never read since the start", every, time.Time{}, t0.Add(-time.Hour), 503,
			"imap: the mailbox has not been read since the start at 2026-03-02T08:00:00Z", 60 * 60},
		{"without MailboxEvery the mailbox is not watched", 0, time.Time{}, t0.Add(-time.Hour), 200, "ok\n", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(Options{Store: openStore(t), Now: func() time.Time { return t0 }, Started: tt.started, MailboxEvery: tt.every})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(e)
			defer srv.Close()
			if !tt.read.IsZero() {
				e.MailboxRead(tt.read)
			}
			status, body := get(t, srv.URL+"/healthz")
			if status != tt.status || !strings.Contains(body, tt.body) {
				t.Errorf("healthz %d %q, want %d with %q", status, body, tt.status, tt.body)
			}
			unread, ok := scrape(t, srv.URL)["secondopinion_mailbox_unread_seconds"]
			switch {
			case tt.unread < 0 && ok:
				t.Errorf("secondopinion_mailbox_unread_seconds = %v without MailboxEvery", unread)
			case tt.unread >= 0 && unread != tt.unread:
				t.Errorf("secondopinion_mailbox_unread_seconds = %v (present %v), want %v", unread, ok, tt.unread)
			}
		})
	}
}

func TestOnlyTheTwoPathsAreServed(t *testing.T) {
	srv := newEndpoint(t, openStore(t), time.Now())
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/", 404},
		{"GET", "/debug/pprof/", 404},
		{"POST", "/healthz", 405},
		{"HEAD", "/healthz", 200},
		{"GET", "/metrics", 200},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, res.StatusCode, c.status)
		}
	}
}

func TestServeStopsWithTheContext(t *testing.T) {
	s := openStore(t)
	e, err := New(Options{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, stop, err := Serve(ctx, "127.0.0.1:0", e, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if status, body := get(t, "http://"+addr.String()+"/healthz"); status != 200 || body != "ok\n" {
		t.Fatalf("healthz %d %q", status, body)
	}

	// The port is taken now: a second daemon must not start half-way.
	if _, _, err := Serve(ctx, addr.String(), e, nil); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second listen on %s: %v, want address in use", addr, err)
	}

	cancel()
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return after the context ended")
	}
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c.Close()
		t.Error("still listening after the context ended")
	}
}

func TestStopWithoutCancelShutsDown(t *testing.T) {
	e, err := New(Options{Store: openStore(t)})
	if err != nil {
		t.Fatal(err)
	}
	addr, stop, err := Serve(context.Background(), "127.0.0.1:0", e, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop() // an early return in serve must not hang on a context that never ends
	if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c.Close()
		t.Error("still listening after stop")
	}
}
