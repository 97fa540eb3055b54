package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestAlerts(t *testing.T) {
	w := newBoWorld(t)
	w.newCase(t, time.Now(), "jan@example.nl", false)
	ctx := context.Background()
	st := w.openStore(t)
	st.AddAlert(ctx, 0, "message 7 quarantined: no case reference", time.Now())
	st.AddAlert(ctx, 0, "key of B. Bakker expires on 2026-04-01", time.Now())
	st.Close()

	code, out, _ := w.run(t, "alerts")
	if code != 0 || !strings.Contains(out, "no case reference") || !strings.Contains(out, "expires on 2026-04-01") {
		t.Fatalf("alerts: %d\n%s", code, out)
	}
	var id string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "no case reference") {
			id = strings.Fields(l)[0]
		}
	}
	if code, out, _ := w.run(t, "alerts", "resolve", id); code != 0 || !strings.Contains(out, "1 alert(s) resolved") {
		t.Fatalf("resolve: %d %s", code, out)
	}
	if code, _, errOut := w.run(t, "alerts", "resolve", id); code != 1 || !strings.Contains(errOut, "already resolved") {
		t.Errorf("resolving twice: %d %s", code, errOut)
	}
	_, out, _ = w.run(t, "alerts")
	if strings.Contains(out, "no case reference") || !strings.Contains(out, "expires") {
		t.Errorf("after resolving one:\n%s", out)
	}
	if _, out, _ := w.run(t, "alerts", "--all"); !strings.Contains(out, "resolved") {
		t.Errorf("--all does not show the resolved alert:\n%s", out)
	}
	if code, _, _ := w.run(t, "alerts", "resolve"); code != 2 {
		t.Errorf("resolve without ID: exit %d", code)
	}
	if code, out, _ := w.run(t, "alerts", "resolve", "--all"); code != 0 || !strings.Contains(out, "resolved") {
		t.Errorf("resolve --all: %d %s", code, out)
	}
}
