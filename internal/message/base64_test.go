package message

import (
	"bytes"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	gomessage "github.com/emersion/go-message"
)

// decodeBoth decodes body as a base64 part, with go-message's decoder and
// with ours (reading it in pieces of the given size when that is > 0).
func decodeBoth(body []byte, piece int) (want, got []byte, wantErr, gotErr error) {
	var h gomessage.Header
	h.Set("Content-Type", "application/pdf")
	h.Set("Content-Transfer-Encoding", "base64")
	e, _ := gomessage.New(h, bytes.NewReader(body))
	want, wantErr = io.ReadAll(e.Body)
	var r io.Reader = bytes.NewReader(body)
	switch {
	case piece == 1:
		r = iotest.OneByteReader(r)
	case piece > 1:
		r = io.MultiReader(bytes.NewReader(body[:min(piece, len(body))]), bytes.NewReader(body[min(piece, len(body)):]))
	}
	ours, err := newEntity(h, r)
	if err != nil {
		return want, nil, wantErr, err
	}
	got, gotErr = io.ReadAll(ours.Body)
	return want, got, wantErr, gotErr
}

// base64File is n bytes of a file and their base64 in lines of 76, as a
// mail client sends an attachment.
func base64File(n int) (file, body []byte) {
	file = make([]byte, n)
	for i := range file {
		file[i] = byte(i * 7 % 251)
	}
	enc := base64.StdEncoding.EncodeToString(file)
	for i := 0; i < len(enc); i += 76 {
		body = append(body, enc[i:min(i+76, len(enc))]+"\r\n"...)
	}
	return file, body
}

func TestBase64LikeGoMessage(t *testing.T) {
	file, body := base64File(100_003)
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"a file in lines of 76", string(body), true},
		{"one long line", strings.ReplaceAll(string(body), "\r\n", ""), true},
		{"indented lines", strings.ReplaceAll(string(body), "\r\n", "\r\n \t"), true},
		{"empty", "", true},
		{"padding", "QQ==\r\n", true},
		{"data after the padding", "QQ==QUFB\r\n", false},
		{"a group cut short", "QUFBQ\r\n", false},
		{"a character outside the alphabet", "QU*B\r\n", false},
		{"one character, then a million line breaks", "Q" + strings.Repeat("\r\n", 1<<20), false},
		{"a group split by line breaks", "QU\r\n\r\nFB" + strings.Repeat("\n", 40000) + "QQ==", true},
	} {
		for _, piece := range []int{0, 1, 3, 77} {
			want, got, wantErr, gotErr := decodeBoth([]byte(tc.body), piece)
			if (gotErr == nil) != tc.ok || (wantErr == nil) != tc.ok {
				t.Errorf("%s (pieces of %d): ours %v, go-message %v; want ok=%v", tc.name, piece, gotErr, wantErr, tc.ok)
			}
			if tc.ok && !bytes.Equal(got, want) {
				t.Errorf("%s (pieces of %d): %d bytes decoded, go-message %d", tc.name, piece, len(got), len(want))
			}
		}
	}
	if _, got, _, _ := decodeBoth(body, 0); !bytes.Equal(got, file) {
		t.Error("the file does not come back")
	}
}

// Long bodies with a fault here and there, where the vector decoder runs:
// ours decodes what go-message decodes, and refuses what it refuses. The
// fuzzer's own inputs are mostly too short to reach that code.
func TestBase64FaultsInLongBodies(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	faults := []string{"*", "=", "==", "\r", " ", "\t", "\r\n\r\n", "\x00", "Ä", "-", "_"}
	for i := range 3000 {
		file := make([]byte, rng.IntN(4000))
		for j := range file {
			file[j] = byte(rng.Uint32())
		}
		enc := []byte(base64.StdEncoding.EncodeToString(file))
		line := 4 * (1 + rng.IntN(40))
		var body []byte
		for j := 0; j < len(enc); j += line {
			body = append(body, enc[j:min(j+line, len(enc))]...)
			body = append(body, "\r\n"[rng.IntN(2):]...)
		}
		for range rng.IntN(3) {
			at := rng.IntN(len(body) + 1)
			body = slices.Insert(body, at, []byte(faults[rng.IntN(len(faults))])...)
		}
		piece := []int{0, 1, 3, 77, 4096}[i%5]
		want, got, wantErr, gotErr := decodeBoth(body, piece)
		if (wantErr == nil) != (gotErr == nil) || wantErr == nil && !bytes.Equal(want, got) {
			t.Fatalf("body %q (pieces of %d): go-message %d bytes, %v; ours %d bytes, %v", body, piece, len(want), wantErr, len(got), gotErr)
		}
	}
}

// Where go-message decodes a base64 body, ours gives the same bytes; where
// it refuses one, so does ours.
func FuzzBase64(f *testing.F) {
	f.Add([]byte("QUJD\r\nREVG\r\n"), 0)
	f.Add([]byte("QQ==\r\n"), 1)
	f.Add([]byte("QQ==QQ==\r\n"), 3)
	f.Add([]byte(" QU JD\tRE\r\nVG"), 2)
	f.Fuzz(func(t *testing.T, body []byte, piece int) {
		want, got, wantErr, gotErr := decodeBoth(body, piece%100)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("go-message: %v, ours: %v", wantErr, gotErr)
		}
		if wantErr == nil && !bytes.Equal(want, got) {
			t.Fatalf("go-message gives %q, ours %q", want, got)
		}
	})
}

// A 1 MiB file in lines of 76, decoded by go-message and by ours.
func BenchmarkBase64(b *testing.B) {
	file, body := base64File(1 << 20)
	var h gomessage.Header
	h.Set("Content-Transfer-Encoding", "base64")
	for _, d := range []struct {
		name string
		new  func(gomessage.Header, io.Reader) (*gomessage.Entity, error)
	}{{"go-message", gomessage.New}, {"ours", newEntity}} {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(file)))
			for b.Loop() {
				e, _ := d.new(h, bytes.NewReader(body))
				if n, err := io.Copy(io.Discard, e.Body); err != nil || n != int64(len(file)) {
					b.Fatal(n, err)
				}
			}
		})
	}
}
