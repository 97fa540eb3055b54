package bench

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"secondopinion/internal/pgpmime"
	"secondopinion/internal/rig"
)

func person(t *testing.T, name, addr string, now time.Time) *Person {
	t.Helper()
	armored, err := pgpmime.GenerateServiceKey(name, addr, now.Add(-time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := pgpmime.ParseServiceKey(armored, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Person{Name: name, Addr: addr, Key: k}
}

// TestDriverRead: a physician reads the service's PGP/MIME mail only when
// it decrypts and its signature is the service's key from the keyring; a
// plain mail is read as is. The attachment arrives intact.
func TestDriverRead(t *testing.T) {
	t.Parallel()
	now := time.Now()
	svc := person(t, "Service", "so@svc.example", now)
	arts := person(t, "Arts", "arts@x.example", now)
	stranger := person(t, "Vreemde", "so@svc.example", now) // same address, other key
	emp := &Person{Name: "Werknemer", Addr: "w@mail.example"}
	doc := FakePDF(300 << 10)

	keys, err := ParticipantKeyring(filepath.Join(t.TempDir(), "keys"), svc.Key.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	empty, err := pgpmime.OpenKeyring(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	box := NewPostbox("so@svc.example")
	compose := func(from, to *Person, encrypt bool, id string) *Mail {
		t.Helper()
		c := rig.MailClient{Now: func() time.Time { return now }}
		if encrypt {
			c.Service = to.Key.Public() // encrypt to the recipient
		}
		raw, err := c.Compose(from, id, to.Addr, "[SO-2026-0001] Medische stukken", "Zie de bijlage.", "", encrypt,
			File{Name: "Probleemanalyse.pdf", Body: doc})
		if err != nil {
			t.Fatal(err)
		}
		box.Accept(from.Addr, []string{to.Addr}, raw)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		m, err := box.Wait(ctx, to.Addr, "SO-2026-0001")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tests := []struct {
		name    string
		from    *Person
		reader  *Person
		encrypt bool
		keys    *pgpmime.Keyring
		wantErr string
	}{
		{"signed and encrypted by the service", svc, arts, true, keys, ""},
		{"plain mail", svc, emp, false, keys, ""},
		{"service key not in the keyring", svc, arts, true, empty, "registered key"},
		{"signed by another key for the service's address", stranger, arts, true, keys, "registered key"},
		{"reader without a key", svc, emp, true, keys, "no key"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to := tt.reader
			if tt.encrypt && to.Key == nil {
				to = arts // encrypted to someone; read by the keyless one
			}
			m := compose(tt.from, to, tt.encrypt, "<"+strings.Repeat("x", i+1)+"@svc>")
			d := &Driver{Keys: tt.keys, Now: func() time.Time { return now }}
			text, files, err := d.Read(tt.reader, m)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) ||
					(tt.wantErr == "registered key") != errors.Is(err, pgpmime.ErrNotAuthenticated) {
					t.Fatalf("Read err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !strings.Contains(text, "Zie de bijlage.") || len(files) != 1 || files[0].Name != "Probleemanalyse.pdf" || !bytes.Equal(files[0].Body, doc) {
				t.Errorf("read text %q and %d files; want the text and the document intact", text, len(files))
			}
			if text2, err := d.ReadText(tt.reader, m); err != nil || text2 != text {
				t.Errorf("ReadText = %q, %v; want the text Read gives", text2, err)
			}
		})
	}
}

func TestFakePDF(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 10, 1 << 20} {
		b := FakePDF(size)
		if !bytes.HasPrefix(b, []byte("%PDF-1.4\n")) || !bytes.HasSuffix(b, []byte("%%EOF\n")) || (size > 40 && len(b) != size) {
			t.Errorf("FakePDF(%d): %d bytes, %q…%q", size, len(b), b[:min(len(b), 9)], b[max(0, len(b)-6):])
		}
	}
}
