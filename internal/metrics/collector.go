package metrics

import (
	"context"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"secondopinion/internal/procedure"
)

var (
	descUp = prometheus.NewDesc("secondopinion_store_up",
		"1 when the database answered this scrape's queries, else 0 (and the store's figures are left out).", nil, nil)
	descSchema = prometheus.NewDesc("secondopinion_schema_version",
		"The highest database migration applied.", nil, nil)
	descCases = prometheus.NewDesc("secondopinion_cases",
		"Cases per procedure state (every state is present, 0 when empty).", []string{"state"}, nil)
	descOverdue = prometheus.NewDesc("secondopinion_deadlines_overdue",
		"Deadlines due and not yet fired, per kind: reminder (held until office hours), escalation, expiry (the retention purge).", []string{"kind"}, nil)
	descOverdueAge = prometheus.NewDesc("secondopinion_deadline_overdue_seconds",
		"How long the oldest overdue deadline of each kind has been due; 0 when none is.", []string{"kind"}, nil)
	descOutbox = prometheus.NewDesc("secondopinion_outbox_messages",
		"Outgoing mail per status: queued (waiting or retrying), sending (an attempt under way, or its outcome unknown after a crash until its sent copy is found), sent, failed (permanently; an alert was raised).", []string{"status"}, nil)
	descOutboxAge = prometheus.NewDesc("secondopinion_outbox_oldest_queued_seconds",
		"Age of the oldest mail still queued or sending; 0 when the queue is empty.", nil, nil)
	descPending = prometheus.NewDesc("secondopinion_inbound_pending_messages",
		"Inbound messages stored and not yet handled.", nil, nil)
	descPendingAge = prometheus.NewDesc("secondopinion_inbound_oldest_pending_seconds",
		"Age (since arrival on the IMAP server) of the oldest stored inbound message not yet handled; 0 when none waits.", nil, nil)
	descQuarantine = prometheus.NewDesc("secondopinion_quarantine_messages",
		"Inbound messages in quarantine, waiting for the backoffice.", nil, nil)
	descAlerts = prometheus.NewDesc("secondopinion_alerts_unresolved",
		"Alerts for the backoffice not marked resolved.", nil, nil)
)

// storeCollector reads the store at scrape time.
type storeCollector struct{ e *Endpoint }

// Describe implements prometheus.Collector.
func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descSchema, descCases, descOverdue, descOverdueAge,
		descOutbox, descOutboxAge, descPending, descPendingAge, descQuarantine, descAlerts} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	o := c.e.o
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	now := o.Now()
	st, err := o.Store.Stats(ctx, now)
	if err != nil {
		o.Logger.Warn("metrics scrape: the store did not answer", "err", err)
		ch <- gauge(descUp, 0)
		return
	}
	ch <- gauge(descUp, 1)
	ch <- gauge(descSchema, float64(st.SchemaVersion))

	states := slices.Clone(procedure.States)
	for s := range st.Cases {
		if !slices.Contains(states, s) {
			states = append(states, s) // a state this binary does not know
		}
	}
	for _, s := range states {
		ch <- gauge(descCases, float64(st.Cases[s]), string(s))
	}

	kinds := []procedure.DeadlineKind{procedure.Remind, procedure.Escalate, procedure.Expire}
	for k := range st.Overdue {
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	for _, k := range kinds {
		od := st.Overdue[k]
		ch <- gauge(descOverdue, float64(od.Count), string(k))
		ch <- gauge(descOverdueAge, age(now, od.Oldest), string(k))
	}

	ch <- gauge(descOutbox, float64(st.OutboxQueued), "queued")
	ch <- gauge(descOutbox, float64(st.OutboxSending), "sending")
	ch <- gauge(descOutbox, float64(st.OutboxSent), "sent")
	ch <- gauge(descOutbox, float64(st.OutboxFailed), "failed")
	ch <- gauge(descOutboxAge, age(now, st.OutboxOldestQueued))
	ch <- gauge(descPending, float64(st.InboundPending))
	ch <- gauge(descPendingAge, age(now, st.InboundOldestPending))
	ch <- gauge(descQuarantine, float64(st.Quarantined))
	ch <- gauge(descAlerts, float64(st.AlertsOpen))
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// age is now - t in seconds, 0 for a zero t or a t in the future (a clock
// that stepped back).
func age(now, t time.Time) float64 {
	if t.IsZero() || !now.After(t) {
		return 0
	}
	return now.Sub(t).Seconds()
}
