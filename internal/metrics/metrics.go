// Package metrics is the daemon's operations endpoint: /healthz for a
// liveness probe and /metrics in the Prometheus text exposition format
// (https://prometheus.io/docs/instrumenting/exposition_formats/).
//
// Both read the store at request time; nothing polls in the background, so
// an idle endpoint costs nothing and a scrape always shows the database as
// it is. Neither ever shows a name, an address, a subject or any medical
// content: only counts, ages and states.
//
// /healthz judges the daemon by what it does, not by heartbeats: the
// database must answer within a short timeout, and work the daemon's loops
// exist to do must not lie undone for long — the mailbox not read (the
// ingester), a stored message not handled (the inbound loop), an
// escalation or retention deadline not fired (the sweep), mail due and not
// attempted (the delivery worker). A loop that died or hangs shows as such
// work growing old.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"secondopinion/internal/loopback"
	"secondopinion/internal/procedure"
	"secondopinion/internal/store"
)

// Options configure an Endpoint; zero fields take the defaults.
type Options struct {
	// Store is read at every scrape and health check. Required.
	Store *store.Store
	// Now is the clock deadlines and the outbox are stamped with (the
	// engine's); default time.Now.
	Now func() time.Time
	// Started is when the daemon started (default: when New is called).
	// The stale-work checks of /healthz begin StaleAfter later, so work
	// left from before a restart is given time to be done.
	Started time.Time
	// StaleAfter is how long work the daemon should already have done may
	// wait before /healthz fails; default 10 minutes (the loops look for
	// work every minute).
	StaleAfter time.Duration
	// Timeout bounds the database queries of one request; default 2 s.
	Timeout time.Duration
	// Logger gets the errors of scrapes and failed health checks; default
	// discards.
	Logger *slog.Logger
	// MailboxEvery is the longest the ingester goes between two passes
	// over the mailbox when all is well (its poll interval; it reports
	// each pass to MailboxRead). When set, /healthz fails once no pass has
	// come for StaleAfter beyond it, and /metrics has
	// secondopinion_mailbox_unread_seconds. Zero: neither.
	MailboxEvery time.Duration
}

// Endpoint serves /healthz and /metrics.
type Endpoint struct {
	o   Options
	mux *http.ServeMux
	lag prometheus.Histogram
	// read is when the ingester last finished a pass over the mailbox
	// (UnixNano; 0: not yet).
	read atomic.Int64
}

// New returns an endpoint over o.Store with its own metrics registry (the
// Go runtime and process collectors, the store's figures and the ingest
// lag histogram).
func New(o Options) (*Endpoint, error) {
	if o.Store == nil {
		return nil, fmt.Errorf("metrics: no store")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Started.IsZero() {
		o.Started = time.Now()
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 10 * time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Endpoint{o: o, mux: http.NewServeMux()}
	e.lag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "secondopinion_ingest_lag_seconds",
		Help: "Time from a message's arrival on the IMAP server (INTERNALDATE, whole seconds) to its raw bytes stored.",
		// INTERNALDATE has whole seconds; finer buckets would mean nothing.
		Buckets: []float64{1, 2, 5, 10, 30, 60, 120, 300, 900, 3600},
	})
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		storeCollector{e},
		e.lag,
	}
	if o.MailboxEvery > 0 {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "secondopinion_mailbox_unread_seconds",
			Help: "Time since the ingester last finished a pass over the IMAP mailbox (since the start before the first); a pass comes at least every IMAP poll interval while the server can be reached.",
		}, func() float64 { return e.o.Now().Sub(e.lastRead()).Seconds() }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	e.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	e.mux.HandleFunc("GET /healthz", e.healthz)
	return e, nil
}

// ServeHTTP serves GET (and HEAD) /healthz and /metrics.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) { e.mux.ServeHTTP(w, r) }

// ObserveIngestLag records one message's ingest lag; it is mailin's
// Options.ObserveLag.
func (e *Endpoint) ObserveIngestLag(d time.Duration) { e.lag.Observe(d.Seconds()) }

// MailboxRead records that the ingester finished a pass over the mailbox
// at at; it is mailin's Options.ObservePass.
func (e *Endpoint) MailboxRead(at time.Time) { e.read.Store(at.UnixNano()) }

// lastRead is when the mailbox was last read, or the start before that.
func (e *Endpoint) lastRead() time.Time {
	if n := e.read.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return e.o.Started
}

func (e *Endpoint) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), e.o.Timeout)
	defer cancel()
	problems := e.Check(ctx)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if len(problems) == 0 {
		fmt.Fprintln(w, "ok")
		return
	}
	e.o.Logger.Warn("health check failed", "problems", len(problems), "first", problems[0])
	w.WriteHeader(http.StatusServiceUnavailable)
	for _, p := range problems {
		fmt.Fprintln(w, p)
	}
}

// Check returns what is wrong with the daemon now, one line per problem;
// none means healthy.
func (e *Endpoint) Check(ctx context.Context) []string {
	if _, err := e.o.Store.SchemaVersion(ctx); err != nil {
		return []string{dbProblem(ctx, err, e.o.Timeout)}
	}
	if time.Since(e.o.Started) < e.o.StaleAfter {
		return nil
	}
	now := e.o.Now()
	st, err := e.o.Store.Stats(ctx, now)
	if err != nil {
		return []string{dbProblem(ctx, err, e.o.Timeout)}
	}
	var problems []string
	if every := e.o.MailboxEvery; every > 0 {
		if read := e.lastRead(); now.Sub(read) > e.o.StaleAfter+every {
			what := "was last read at"
			if e.read.Load() == 0 {
				what = "has not been read since the start at"
			}
			problems = append(problems, fmt.Sprintf("imap: the mailbox %s %s: the ingester cannot reach the server, cannot log in, or hangs; the log says why (\"imap session ended\")",
				what, stamp(read)))
		}
	}
	stale := func(since time.Time) bool { return !since.IsZero() && now.Sub(since) > e.o.StaleAfter }
	if st.InboundPending > 0 && stale(st.InboundOldestPending) {
		problems = append(problems, fmt.Sprintf("inbound: %d stored messages not handled, the oldest since %s: the inbound loop is not processing",
			st.InboundPending, stamp(st.InboundOldestPending)))
	}
	// Reminders wait for office hours; escalations and the retention purge
	// fire at once, so only those say whether the sweep runs.
	for _, kind := range []procedure.DeadlineKind{procedure.Escalate, procedure.Expire} {
		if od := st.Overdue[kind]; od.Count > 0 && stale(od.Oldest) {
			problems = append(problems, fmt.Sprintf("deadlines: %d %s deadlines overdue, the oldest since %s: the deadline sweep is not running or fails",
				od.Count, kind, stamp(od.Oldest)))
		}
	}
	if st.OutboxDue > 0 && stale(st.OutboxOldestDue) {
		problems = append(problems, fmt.Sprintf("outbox: %d mails due since %s and not attempted: the delivery worker is not running",
			st.OutboxDue, stamp(st.OutboxOldestDue)))
	}
	return problems
}

func dbProblem(ctx context.Context, err error, timeout time.Duration) string {
	if ctx.Err() != nil {
		return fmt.Sprintf("database: no answer within %s", timeout)
	}
	return fmt.Sprintf("database: %v", err)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Serve listens on addr and serves h in its own goroutine until ctx is
// done or stop is called, then shuts the server down. It returns once
// listening (or with the listen error), so a port already in use stops the
// daemon at start. stop shuts down (if ctx has not already) and waits for
// the server to finish. An address beyond loopback is allowed but logged:
// the endpoint has no authentication.
func Serve(ctx context.Context, addr string, h http.Handler, logger *slog.Logger) (bound net.Addr, stop func(), err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("health and metrics endpoint: %w", err)
	}
	if !loopback.Addr(addr) {
		logger.Warn("the health and metrics endpoint listens beyond this machine and has no authentication; firewall it", "listen", ln.Addr().String())
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			logger.Error("health and metrics endpoint stopped", "err", err)
		}
	}()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		<-done
	}()
	logger.Info("health and metrics endpoint", "listen", ln.Addr().String())
	return ln.Addr(), func() { cancel(); <-stopped }, nil
}
