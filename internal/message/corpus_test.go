package message

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden .json files of the corpus")

var corpusOptions = []string{"Dr. A. de Vries", "drs. Petra Bakker-Jansen"}

// corpus lists every message under testdata/corpus with the question it
// answers. The expected report is NAME.json beside NAME.eml.
var corpus = []struct {
	name string
	kind Kind
}{
	{"outlook-desktop-nl-choice", KindChoice},
	{"outlook-desktop-en-yesno", KindYesNo},
	{"outlook-web-nl-consent-html", KindConsent},
	{"outlook-mobile-en-choice", KindChoice},
	{"outlook-html-empty-plain-choice", KindChoice},
	{"outlook-nl-consent-sentence", KindConsent},
	{"outlook-nl-choice-disclaimer", KindChoice},
	{"gmail-nl-datetime", KindDateTime},
	{"gmail-en-datetime", KindDateTime},
	{"gmail-nl-html-only-yesno", KindYesNo},
	{"gmail-en-bottom-post-yesno", KindYesNo},
	{"iphone-nl-yesno-no", KindYesNo},
	{"iphone-en-datetime-no-time", KindDateTime},
	{"apple-mail-nl-choice-backup", KindChoice},
	{"apple-mail-en-consent-only-physician", KindConsent},
	{"thunderbird-nl-flowed-consent", KindConsent},
	{"latin1-qp-nl-question", KindQuestion},
	{"windows1252-8bit-nl-yesno", KindYesNo},
	{"utf8-base64-nl-refusal", KindRefusal},
	{"pgp-signed-nl-refusal-confirm", KindRefusal},
	{"pgp-mime-encrypted", KindQuestion},
	{"pgp-inline-encrypted", KindQuestion},
	{"attachment-pdf-nl", ""},
	{"attachment-rfc2231-filename", ""},
	{"attachment-rfc2047-filename-outlook", ""},
	{"forward-rfc822-employer", ""},
	{"forward-inline-gmail-en", ""},
	{"forward-inline-apple-nl", ""},
	{"autoreply-outlook-nl", KindChoice},
	{"autoreply-afwezig-subject", KindYesNo},
	{"autoreply-x-autoreply", KindYesNo},
	{"autoreply-precedence-bulk", KindYesNo},
	{"autoreply-out-of-office-en", KindYesNo},
	{"bounce-postfix-dsn", KindChoice},
	{"bounce-exchange-dsn-mixed", ""},
	{"bounce-qmail-nonstandard", ""},
	{"bounce-exim-nonstandard", ""},
	{"spoofed-sender-forged-authres", KindYesNo},
	{"replayed-token-other-sender", KindChoice},
	{"malformed-no-closing-boundary", KindYesNo},
	{"malformed-no-blank-line", KindYesNo},
	{"malformed-bad-base64", ""},
	{"malformed-unknown-charset", KindYesNo},
	{"malformed-mbox-8bit-latin1", KindYesNo},
	{"malformed-content-type", KindChoice},
	{"consent-unclear-bare-ja", KindConsent},
	{"choice-unclear-two", KindChoice},
	{"yesno-quoted-words-ignored", KindYesNo},
	{"choice-other-physician", KindChoice},
	{"datetime-past-unclear", KindDateTime},
}

func corpusInspect(t testing.TB, name string, kind Kind) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "corpus", name+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Inspect(f, InspectOptions{
		Expect:            kind,
		Context:           QuestionContext{Options: corpusOptions, Now: testNow, Loc: testLoc},
		TrustedAuthservID: "mx.example.nl",
	})
	if rep == nil {
		t.Fatalf("Inspect(%s): %v", name, err)
	}
	out, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func TestCorpus(t *testing.T) {
	listed := map[string]bool{}
	for _, c := range corpus {
		listed[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			got := corpusInspect(t, c.name, c.kind)
			golden := filepath.Join("testdata", "corpus", c.name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("report differs from %s (run with -update after checking)\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "corpus", "*.eml"))
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".eml"); !listed[name] {
			t.Errorf("%s is not in the corpus table", f)
		}
	}
	if len(files) < 40 {
		t.Errorf("corpus has %d messages, want at least 40", len(files))
	}
}
