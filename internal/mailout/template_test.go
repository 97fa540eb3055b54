package mailout

import (
	"errors"
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

func TestRender(t *testing.T) {
	fsys := os.DirFS("testdata")
	data := map[string]any{"Ref": "SO-2026-0042", "Name": "Jeroen", "Deadline": "4 maart 12:00"}
	tests := []struct {
		name, lang, tmpl string
		wantSubject      string
		wantBody         string // substring
	}{
		{"dutch", "nl", "notice", "[SO-2026-0042] Uw aanvraag is ontvangen", "Beste Jeroen,\n\nWij hebben uw aanvraag"},
		{"english", "en", "notice", "[SO-2026-0042] Your request has been received", "Dear Jeroen,"},
		{"english missing falls back to dutch", "en", "reminder", "[SO-2026-0042] Herinnering: kies vóór 4 maart 12:00", "Antwoord met 1 of 2.\n"},
		{"unknown language is dutch", "de", "notice", "[SO-2026-0042] Uw aanvraag is ontvangen", "Beste Jeroen"},
		{"no language is dutch", "", "notice", "[SO-2026-0042] Uw aanvraag is ontvangen", "Beste Jeroen"},
		{"path in language is dutch", "../en", "notice", "[SO-2026-0042] Uw aanvraag is ontvangen", "Beste Jeroen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			subject, body, err := Render(fsys, tt.lang, tt.tmpl, data)
			if err != nil {
				t.Fatal(err)
			}
			if subject != tt.wantSubject {
				t.Errorf("subject = %q, want %q", subject, tt.wantSubject)
			}
			if !strings.Contains(body, tt.wantBody) || strings.HasPrefix(body, "\n") || !strings.HasSuffix(body, "\n") || strings.HasSuffix(body, "\n\n") {
				t.Errorf("body = %q, want it to contain %q, without leading or doubled final newline", body, tt.wantBody)
			}
		})
	}
}

func TestRenderErrors(t *testing.T) {
	fsys := os.DirFS("testdata")
	tests := []struct {
		name, tmpl string
		data       any
		want       error // nil: any error
		wantText   string
	}{
		{"missing field", "notice", map[string]any{"Ref": "SO-1"}, nil, "Name"},
		{"missing struct field", "notice", struct{ Ref string }{"SO-1"}, nil, "Name"},
		{"no such template", "nope", map[string]any{}, ErrNoTemplate, ""},
		{"path traversal", "../nl/notice", map[string]any{}, ErrNoTemplate, ""},
		{"no subject line", "badsubject", map[string]any{}, nil, "Subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Render(fsys, "nl", tt.tmpl, tt.data)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err = %v, want mention of %q", err, tt.wantText)
			}
		})
	}
}

// A value that ends the subject line early cannot slip a header into the
// mail: the template fails instead.
func TestRenderSubjectWithNewline(t *testing.T) {
	fsys := fstest.MapFS{"mail/nl/x.tmpl": {Data: []byte("Subject: Vraag van {{.Name}}\n\nTekst\n")}}
	_, _, err := Render(fsys, "nl", "x", map[string]string{"Name": "Jan\nBcc: evil@x.test"})
	if err == nil {
		t.Fatal("subject with a line break rendered without error")
	}
}
