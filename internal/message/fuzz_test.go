package message

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

func corpusSeeds(f *testing.F) [][]byte {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", "*.eml"))
	if err != nil {
		f.Fatal(err)
	}
	var out [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func FuzzParse(f *testing.F) {
	for _, b := range corpusSeeds(f) {
		f.Add(b)
	}
	f.Add(manyParts(3))
	f.Add(nested(3))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(bytes.NewReader(b), Options{MaxParts: 50, MaxDepth: 5, MaxTextBytes: 1 << 16})
		if err != nil {
			return
		}
		if !utf8.ValidString(m.Text) || !utf8.ValidString(m.Subject) {
			t.Errorf("invalid UTF-8 in Text or Subject")
		}
	})
}

func FuzzExtractReply(f *testing.F) {
	for _, b := range corpusSeeds(f) {
		if m, err := Parse(bytes.NewReader(b), Options{}); err == nil {
			f.Add(m.Text)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := ExtractReply(s)
		if len(r) > len(s) {
			t.Errorf("reply longer than the text: %q from %q", r, s)
		}
		if utf8.ValidString(s) && !utf8.ValidString(r) {
			t.Errorf("invalid UTF-8 from valid input")
		}
	})
}

func FuzzParseAnswer(f *testing.F) {
	for _, b := range corpusSeeds(f) {
		if m, err := Parse(bytes.NewReader(b), Options{}); err == nil {
			for i := range Kinds {
				f.Add(uint8(i), m.Reply)
			}
		}
	}
	for _, s := range []string{"1 ja 2 nee", "10-12-2026 14.30", "de tweede, backup de eerste", "niet akkoord"} {
		f.Add(uint8(0), s)
	}
	q := QuestionContext{Options: corpusOptions, Now: testNow, Loc: testLoc}
	f.Fuzz(func(t *testing.T, k uint8, s string) {
		kind := Kinds[int(k)%len(Kinds)]
		a := ParseAnswer(kind, s, q)
		switch {
		case a.Kind == KindUnclear && a.Why == "":
			t.Errorf("unclear without a reason")
		case a.Kind != KindUnclear && a.Kind != kind:
			t.Errorf("asked %s, got %s", kind, a.Kind)
		case a.Kind == KindChoice && (a.Choice < 0 || a.Choice > len(q.Options) || a.Choice == 0 && a.OtherName == ""):
			t.Errorf("choice %d out of range", a.Choice)
		case a.Kind == KindDateTime && a.Time.Before(q.Now):
			t.Errorf("datetime in the past: %v", a.Time)
		}
	})
}
