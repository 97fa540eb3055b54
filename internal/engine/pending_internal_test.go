package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"secondopinion/internal/message"
	"secondopinion/internal/pgpmime"
	"secondopinion/internal/store"
)

func TestHeaderBlock(t *testing.T) {
	long := "Subject: " + strings.Repeat("x", 40<<10) + "\r\n"
	tests := []struct {
		name   string
		in     string
		max    int64
		want   string
		wantOK bool
	}{
		{"crlf", "From: a@b\r\nTo: c@d\r\n\r\nbody\r\n", 1024, "From: a@b\r\nTo: c@d\r\n\r\n", true},
		{"lf", "From: a@b\nTo: c@d\n\nbody\n", 1024, "From: a@b\nTo: c@d\n\n", true},
		{"folded", "Subject: a\r\n b\r\n\r\nbody", 1024, "Subject: a\r\n b\r\n\r\n", true},
		{"all header", "From: a@b\r\n", 1024, "From: a@b\r\n", true},
		{"empty", "", 1024, "", true},
		{"space before colon", "Subject : a\r\n\r\nbody", 1024, "Subject : a\r\n\r\n", true},
		{"no empty line", "From: a@b\r\nHallo,\r\n\r\nbody", 1024, "From: a@b\r\n", true},
		{"mbox From line", "From a@b Mon Jan  5\r\nFrom: a@b\r\n\r\nbody", 1024, "From a@b Mon Jan  5\r\nFrom: a@b\r\n\r\n", true},
		{"line longer than the buffer", long + "\r\nbody", 64 << 10, long + "\r\n", true},
		{"over the limit", long + "\r\nbody", 1024, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := headerBlock(strings.NewReader(tt.in), tt.max)
			if ok != tt.wantOK || string(got) != tt.want {
				t.Errorf("headerBlock = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// FuzzHeaderBlock: the header block is a prefix of the message within the
// limit, and message.Parse finds the same header fields in it as in the
// whole message.
func FuzzHeaderBlock(f *testing.F) {
	for _, s := range []string{"From: a\r\n\r\nb", "a\n\n", "x", "\r\n", "a: b\r\n c\r\n", "Subject : [SO-2026-0001]\r\nTo: so+abc@x\r\nbody"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		const max = 4096
		hdr, ok := headerBlock(bytes.NewReader(msg), max)
		if !ok {
			if len(msg) <= max {
				t.Fatalf("a message of %d bytes is over the limit of %d", len(msg), max)
			}
			return
		}
		if len(hdr) > max || !bytes.HasPrefix(msg, hdr) {
			t.Fatalf("header block %q is not a prefix of the message within %d bytes", hdr, max)
		}
		whole, err := message.Parse(bytes.NewReader(msg), message.Options{MaxHeaderBytes: max})
		if err != nil && whole == nil {
			return
		}
		part, _ := message.Parse(bytes.NewReader(hdr), message.Options{MaxHeaderBytes: max})
		if part == nil {
			t.Fatalf("the header block %q does not parse, the whole message does", hdr)
		}
		if fmt.Sprint(part.Recipients(), part.InReplyTo, part.References, part.Subject) != fmt.Sprint(whole.Recipients(), whole.InReplyTo, whole.References, whole.Subject) {
			t.Fatalf("header block %q: fields %v %v %v %q, the whole message %v %v %v %q", hdr,
				part.Recipients(), part.InReplyTo, part.References, part.Subject, whole.Recipients(), whole.InReplyTo, whole.References, whole.Subject)
		}
	})
}

// BenchmarkSeal stores a 1 MiB attachment sealed to the service key as
// seal does (through a pipe into the store, buffered), and, for
// comparison, through the pipe unbuffered (each packet header and body a
// write of its own, each waking the store's side).
func BenchmarkSeal(b *testing.B) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	armored, err := pgpmime.GenerateServiceKey("Service", "so@example.nl", now.Add(-time.Hour), nil)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := pgpmime.ParseServiceKey(armored, nil)
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(context.Background(), b.TempDir(), &store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	e := &Engine{o: Options{Store: st, Service: svc}}
	doc := make([]byte, 1<<20)
	cc := rand.NewChaCha8([32]byte{1})
	cc.Read(doc)
	check := func(b *testing.B, rel string) {
		b.Helper()
		f, err := st.OpenFile(rel)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		var out bytes.Buffer
		if err := pgpmime.OpenSealed(&out, f, svc, now); err != nil || !bytes.Equal(out.Bytes(), doc) {
			b.Fatalf("sealed document does not open to the original: %v", err)
		}
	}
	b.Run("pipe-buffered", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		var rel string
		for b.Loop() {
			if rel, err = e.seal(bytes.NewReader(doc), now); err != nil {
				b.Fatal(err)
			}
		}
		check(b, rel)
	})
	b.Run("pipe-unbuffered", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(pgpmime.SealForService(pw, bytes.NewReader(doc), svc, now)) }()
			_, _, err := st.PutFile("documents", pr)
			pr.CloseWithError(err)
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
