package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestBenchJSON(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), &env{stdout: &out, stderr: &errb},
		[]string{"bench", "--cases", "4", "--concurrency", "2", "--attachment-size", "32KB", "--nosync", "--json", "--out", t.TempDir()})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if n := strings.Count(strings.TrimSpace(out.String()), "\n"); n != 0 {
		t.Errorf("want exactly one JSON line, got %d more:\n%s", n, out.String())
	}
	var r map[string]any
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	for _, k := range []string{"cases", "cases_per_second", "reaction_ms", "peak_rss_mb", "db_bytes_per_case"} {
		if _, ok := r[k]; !ok {
			t.Errorf("no %q in %s", k, out.String())
		}
	}
	if r["cases"] != float64(4) || r["cases_per_second"].(float64) <= 0 || r["db_bytes_per_case"].(float64) <= 0 {
		t.Errorf("implausible: %s", out.String())
	}
	react, _ := r["reaction_ms"].(map[string]any)
	for _, k := range []string{"p50", "p95", "p99"} {
		if v, _ := react[k].(float64); v <= 0 {
			t.Errorf("reaction_ms.%s = %v", k, react[k])
		}
	}
}

func TestBenchUsage(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"bad size", []string{"bench", "--attachment-size", "lots"}},
		{"zero cases", []string{"bench", "--cases", "0"}},
		{"stray argument", []string{"bench", "now"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), &env{stdout: &out, stderr: &errb}, tt.args); code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", code, errb.String())
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		bad  bool
	}{
		{"1MB", 1 << 20, false},
		{"1 MiB", 1 << 20, false},
		{"512KiB", 512 << 10, false},
		{"1.5M", 3 << 19, false},
		{"20000", 20000, false},
		{"0", 0, true},
		{"-1MB", 0, true},
		{"2GB", 0, true},
		{"MB", 0, true},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if (err != nil) != tt.bad || got != tt.want {
				t.Errorf("parseSize(%q) = %d, %v; want %d (error %v)", tt.in, got, err, tt.want, tt.bad)
			}
		})
	}
}
