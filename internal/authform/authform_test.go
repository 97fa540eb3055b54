package authform

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/text/unicode/norm"

	"secondopinion/internal/testenv"
	"secondopinion/templates"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// loadCase reads a case from testdata.
func loadCase(t testing.TB, name string) Form {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var f Form
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f
}

// longCase is the Dutch case with 40 documents and a question of 3000
// characters, which must flow over several pages.
func longCase(t testing.TB) Form {
	f := loadCase(t, "case-nl.json")
	f.Ref = "SO-2026-0045"
	var q strings.Builder
	sentences := []string{
		"Werknemer ervaart sinds oktober 2025 toenemende klachten bij tillen boven schouderhoogte.",
		"De eigen bedrijfsarts acht het eigen werk in nachtdienst niet passend, werknemer is het daar niet mee eens.",
		"Graag uw oordeel over de belastbaarheid, de passendheid van het eigen werk en de prognose.",
	}
	for i := 0; q.Len() < 3000; i++ {
		if i > 0 && i%6 == 0 {
			q.WriteString("\n\n")
		} else if i > 0 {
			q.WriteString(" ")
		}
		q.WriteString(sentences[i%len(sentences)])
	}
	f.Question = string([]rune(q.String())[:3000])
	f.Documents = nil
	for i := range 40 {
		title := fmt.Sprintf("Consultverslag bedrijfsarts nr. %d", i+1)
		if i%7 == 3 {
			title = fmt.Sprintf("Brief van de behandelend fysiotherapeut over het verloop van de behandeling van de rechterschouder, deel %d", i+1)
		}
		f.Documents = append(f.Documents, Document{
			Title:  title,
			Date:   time.Date(2025, 10, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 3*i).Format(time.DateOnly),
			SHA256: fmt.Sprintf("%x", sha256.Sum256([]byte(title))),
		})
	}
	return f
}

func render(t testing.TB, f Form) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Render(&buf, f, Options{}); err != nil {
		t.Fatalf("render: %v", err)
	}
	return buf.Bytes()
}

// pdfText checks the PDF with qpdf and returns pdftotext -layout's text.
func pdfText(t *testing.T, pdf []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "form.pdf")
	if err := os.WriteFile(path, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qpdf", "--check", path).CombinedOutput(); err != nil {
		t.Fatalf("qpdf --check: %v\n%s", err, out)
	}
	out, err := exec.Command("pdftotext", "-layout", "-enc", "UTF-8", path, "-").Output()
	if err != nil {
		t.Fatalf("pdftotext: %v", err)
	}
	return string(out)
}

func TestGolden(t *testing.T) {
	testenv.Require(t, "pdftotext", "qpdf")
	tests := []struct {
		name  string
		form  func(t testing.TB) Form
		pages int      // a one-page form must stay one page
		want  []string // what a signer must find, beyond the golden file
	}{
		{"nl", func(t testing.TB) Form { return loadCase(t, "case-nl.json") }, 2, []string{
			"Zaak SO-2026-0042 · 2 maart 2026", "Şahin Müller-Öztürk", "geboren 19 juli 1984",
			"dr. Łukasz Wiśniewski", "dr. Nguyễn Thị Lan", "3f2a 9c1d 0b7e 55aa", "Alleen deze 3 stukken",
			"zonder uw toestemming", "uw werkgever", "20 jaar", "akkoord", "intrekken", "Handtekening", "pagina 1 van",
		}},
		{"en", func(t testing.TB) Form { return loadCase(t, "case-en.json") }, 1, []string{
			"Case SO-2026-0043", "Łukasz Kowalczyk", "Only this one document", "paid by you",
			"did not\napprove", "15 years", "no backup physician chosen", "page 1 of",
		}},
		{"long", longCase, 3, []string{"Consultverslag bedrijfsarts nr. 40", "Alleen deze 40 stukken"}},
		{"scripts", func(t testing.TB) Form { return loadCase(t, "case-scripts.json") }, 2, []string{
			"Nguyễn Văn Đức", "Kovács & Søndergaard", "dr. Γιώργος Παπαδόπουλος", "dr. Ольга Иванова",
			"dr. İlkay Yılmaz-Çelik", "Ærø",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := pdfText(t, render(t, tt.form(t)))
			golden := filepath.Join("testdata", "golden", tt.name+".txt")
			if *update {
				if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if text != string(want) {
				t.Errorf("text of the form differs from %s (run go test -update and review the diff):\n%s", golden, text)
			}
			flat := strings.Join(strings.Fields(text), " ")
			for _, w := range tt.want {
				if !strings.Contains(flat, strings.Join(strings.Fields(w), " ")) {
					t.Errorf("form lacks %q", w)
				}
			}
			pages := strings.Split(strings.TrimRight(text, "\f\n"), "\f")
			if len(pages) != tt.pages {
				t.Errorf("%d pages, want %d", len(pages), tt.pages)
			}
			word, of := "pagina", "van"
			if strings.HasPrefix(tt.name, "en") {
				word, of = "page", "of"
			}
			for i, pg := range pages {
				num := fmt.Sprintf("%s %d %s %d", word, i+1, of, len(pages))
				if !strings.Contains(pg, num) {
					t.Errorf("page %d lacks %q", i+1, num)
				}
				if !strings.Contains(pg, "SO-2026-00") {
					t.Errorf("page %d lacks the repeated header with the case reference", i+1)
				}
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	f := longCase(t)
	a, b := render(t, f), render(t, f)
	if !bytes.Equal(a, b) {
		t.Fatal("two renderings of the same form differ")
	}
	if !bytes.Contains(a, []byte("/CreationDate (D:20260302")) {
		t.Error("creation date is not the form's date")
	}
	f.Date = f.Date.Add(24 * time.Hour)
	if bytes.Equal(a, render(t, f)) {
		t.Error("a different date gives the same PDF")
	}
}

func TestDecomposedNamesPrintLikeComposed(t *testing.T) {
	f := loadCase(t, "case-scripts.json")
	want := render(t, f)
	f.Employee.Name = norm.NFD.String(f.Employee.Name)
	f.Backup.Name = norm.NFD.String(f.Backup.Name)
	if f.Employee.Name == loadCase(t, "case-scripts.json").Employee.Name {
		t.Fatal("test name has no combining marks")
	}
	if !bytes.Equal(render(t, f), want) {
		t.Error("a name typed with combining marks renders differently from the precomposed one")
	}
}

func TestValidation(t *testing.T) {
	tests := []struct {
		name   string
		change func(f *Form)
		want   []string // substrings of the error, each a problem a backoffice must see
	}{
		{"missing ref", func(f *Form) { f.Ref = " " }, []string{"ref: missing"}},
		{"zero date", func(f *Form) { f.Date = time.Time{} }, []string{"date: missing"}},
		{"unknown language", func(f *Form) { f.Lang = "de" }, []string{`lang: want nl or en, got "de"`}},
		{"unknown subject", func(f *Form) { f.Subject = "aanstellingskeuring" }, []string{`subject: want verzuimbegeleiding, pago-pmo or beroepsziekte, got "aanstellingskeuring"`}},
		{"unknown payer", func(f *Form) { f.Payer = "uwv" }, []string{`payer: want provider, employer or employee, got "uwv"`}},
		{"payer does not follow reason", func(f *Form) { f.Payer = "employee" }, []string{"payer: employer pays when the reason is pool-other-contract, not employee"}},
		{"reason does not fit pool", func(f *Form) { f.Chosen.InPool = false }, []string{"payer_reason: pool-other-contract does not fit chosen.in_pool = false"}},
		{"unknown reason", func(f *Form) { f.PayerReason = "cheap" }, []string{`payer_reason: want pool-full-service`}},
		{"short hash", func(f *Form) { f.Documents[1].SHA256 = "abc123" }, []string{`documents[1].sha256: want 64 hexadecimal digits, got "abc123"`}},
		{"non-hex hash", func(f *Form) { f.Documents[0].SHA256 = strings.Repeat("zz", 32) }, []string{"documents[0].sha256: want 64 hexadecimal digits"}},
		{"duplicate document", func(f *Form) { f.Documents[2].SHA256 = strings.ToUpper(f.Documents[0].SHA256) }, []string{"documents[2].sha256: same document as documents[0]"}},
		{"bad document date", func(f *Form) { f.Documents[0].Date = "14-01-2026" }, []string{`documents[0].date: want a date YYYY-MM-DD, got "14-01-2026"`}},
		{"not independent", func(f *Form) { f.Chosen.Arbodienst = "arbo centraal" }, []string{"chosen.arbodienst: same arbodienst as the original physician"}},
		{"bad e-mail", func(f *Form) { f.Employee.Email = "sahin at example.nl" }, []string{`employee.email: not an e-mail address`}},
		{"control character in name", func(f *Form) { f.Employee.Name = "Şahin\nMüller" }, []string{"employee.name: contains control character U+000A"}},
		{"name outside the font", func(f *Form) { f.Employee.Name = "王小明" }, []string{`employee.name: character '王' (U+738B) is not in the form's font`}},
		{"no retention", func(f *Form) { f.RetentionYears = 0 }, []string{"retention_years: want 1 to 100, got 0"}},
		{"everything at once", func(f *Form) { *f = Form{} }, []string{"ref: missing", "employee.name: missing", "subject: missing", "question: missing", "payer: missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := loadCase(t, "case-nl.json")
			tt.change(&f)
			err := Render(&bytes.Buffer{}, f, Options{})
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Render = %v, want ErrInvalid", err)
			}
			if verr := f.Validate(); verr == nil || verr.Error() != err.Error() {
				t.Errorf("Validate = %v, Render = %v", verr, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		f := loadCase(t, "case-nl.json")
		if err := f.Validate(); err != nil {
			t.Fatal(err)
		}
	})
}

// testFS is a copy of the embedded texts, changed by change.
func testFS(t *testing.T, change func(m fstest.MapFS)) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	for _, lang := range []string{"nl", "en"} {
		b, err := templates.FS.ReadFile("form/" + lang + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		m["form/"+lang+".yaml"] = &fstest.MapFile{Data: b}
	}
	change(m)
	return m
}

func TestCustomTexts(t *testing.T) {
	testenv.Require(t, "pdftotext", "qpdf")
	png, err := os.ReadFile(filepath.Join("testdata", "logo.png"))
	if err != nil {
		t.Fatal(err)
	}
	fsys := testFS(t, func(m fstest.MapFS) {
		nl := string(m["form/nl.yaml"].Data)
		nl = strings.Replace(nl, `logo: ""`, `logo: form/logo.png`, 1)
		nl = strings.Replace(nl, "title: Machtigingsformulier second opinion bedrijfsarts", "title: Machtiging Arbo Centraal", 1)
		m["form/nl.yaml"] = &fstest.MapFile{Data: []byte(nl)}
		m["form/logo.png"] = &fstest.MapFile{Data: png}
	})
	r, err := New(Options{FS: fsys})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := r.Render(&buf, loadCase(t, "case-nl.json")); err != nil {
		t.Fatal(err)
	}
	if text := pdfText(t, buf.Bytes()); !strings.Contains(text, "Machtiging Arbo Centraal") {
		t.Errorf("changed title not on the form:\n%s", text)
	}
	if !bytes.Contains(buf.Bytes(), []byte("/Subtype /Image")) {
		t.Error("logo not in the PDF")
	}
}

func TestBrokenTexts(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(s string) string
		wantErr string
	}{
		{"unknown field", func(s string) string { return strings.Replace(s, "{{.Ref}}", "{{.Reference}}", 1) }, "form/nl.yaml: header:"},
		{"missing text", func(s string) string {
			return strings.Replace(s, "title: Machtigingsformulier second opinion bedrijfsarts", "title: ''", 1)
		}, "form/nl.yaml: title: missing"},
		{"unknown key", func(s string) string { return s + "\nfooter: x\n" }, "field footer not found"},
		{"missing logo", func(s string) string { return strings.Replace(s, `logo: ""`, `logo: form/logo.png`, 1) }, "form/nl.yaml: logo:"},
		{"glyph outside the font", func(s string) string { return strings.Replace(s, "Betrokkenen", "Betrokkenen 🙂", 1) }, "sections.parties: character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := testFS(t, func(m fstest.MapFS) {
				m["form/nl.yaml"] = &fstest.MapFile{Data: []byte(tt.edit(string(m["form/nl.yaml"].Data)))}
			})
			_, err := New(Options{FS: fsys})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzRender feeds arbitrary names and questions: Render returns a PDF or
// an error, and never panics.
func FuzzRender(f *testing.F) {
	f.Add("Şahin Müller-Öztürk", "Is het eigen werk passend?", "Probleemanalyse")
	f.Add("Nguyễn", "a\n\nb\tc", "")
	f.Add("\x00", strings.Repeat("x ", 3000), "((\\))")
	base := loadCase(f, "case-nl.json")
	f.Fuzz(func(t *testing.T, name, question, title string) {
		c := base
		c.Employee.Name, c.Question = name, question
		c.Documents = append([]Document(nil), base.Documents...)
		c.Documents[0].Title = title
		var buf bytes.Buffer
		if err := Render(&buf, c, Options{}); err == nil && !bytes.HasPrefix(buf.Bytes(), []byte("%PDF-")) {
			t.Fatal("no error and no PDF")
		}
	})
}

// BenchmarkRenderSinglePage renders a one-page form: the figure to watch
// is forms/s.
func BenchmarkRenderSinglePage(b *testing.B) {
	f := loadCase(b, "case-en.json")
	f.Question = "Is the employee fit for their own work?"
	r, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if err := r.Render(&buf, f); err != nil {
		b.Fatal(err)
	}
	if n := pageCount(buf.Bytes()); n != 1 {
		b.Fatalf("benchmark form has %d pages, want 1", n)
	}
	cpu0 := cpuTime()
	for b.Loop() {
		buf.Reset()
		if err := r.Render(&buf, f); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, cpuTime()-cpu0)
	b.ReportMetric(float64(buf.Len()), "pdf-bytes")
}

// BenchmarkRenderLong renders the 40-document form.
func BenchmarkRenderLong(b *testing.B) {
	f := longCase(b)
	r, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	cpu0 := cpuTime()
	for b.Loop() {
		buf.Reset()
		if err := r.Render(&buf, f); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, cpuTime()-cpu0)
}

// reportRate reports forms per second of wall time and, where the platform
// tells, per second of CPU time.
func reportRate(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "forms/s")
	if cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "forms/cpu-s")
	}
}

// pageCount counts the page objects of a PDF written by fpdf.
func pageCount(pdf []byte) int {
	return bytes.Count(pdf, []byte("/Type /Page\n"))
}

func TestDocumentTableHeaderRepeats(t *testing.T) {
	testenv.Require(t, "pdftotext", "qpdf")
	f := longCase(t)
	for i := range 60 {
		title := fmt.Sprintf("Aanvullend verslag %d", i+1)
		f.Documents = append(f.Documents, Document{Title: title, Date: "2026-02-01", SHA256: fmt.Sprintf("%x", sha256.Sum256([]byte(title)))})
	}
	text := pdfText(t, render(t, f))
	pages := strings.Split(text, "\f")
	n := 0
	for _, pg := range pages {
		if strings.Contains(pg, "Nr.   Document") {
			n++
		}
	}
	if n < 2 {
		t.Errorf("document table header on %d pages, want it repeated on every page the table spans", n)
	}
	if !strings.Contains(text, "Aanvullend verslag 60") {
		t.Error("last document missing")
	}
}
