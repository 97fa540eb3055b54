package authform

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"

	"codeberg.org/go-pdf/fpdf"

	"secondopinion/templates"
)

// Options configure a Renderer. The zero value uses the embedded texts.
type Options struct {
	// FS is laid out like the templates directory: form/nl.yaml,
	// form/en.yaml and any logo they name. Nil means templates.FS.
	FS fs.FS
}

// Renderer renders forms with one set of texts. It is safe for concurrent
// use; make one and keep it.
type Renderer struct {
	texts map[string]*texts
}

// New loads and checks the texts of every language.
func New(opts Options) (*Renderer, error) {
	fsys := opts.FS
	if fsys == nil {
		fsys = templates.FS
	}
	if _, err := loadFonts(); err != nil {
		return nil, err
	}
	r := &Renderer{texts: make(map[string]*texts)}
	for lang := range languages {
		t, err := loadTexts(fsys, lang)
		if err != nil {
			return nil, err
		}
		r.texts[lang] = t
	}
	return r, nil
}

var (
	defaultOnce     sync.Once
	defaultRenderer *Renderer
	defaultErr      error
)

// Render validates f and writes its form as PDF to w. With opts.FS nil it
// uses the embedded texts, loaded once; otherwise it loads opts.FS on every
// call (keep a Renderer from New for repeated use).
func Render(w io.Writer, f Form, opts Options) error {
	if opts.FS == nil {
		defaultOnce.Do(func() { defaultRenderer, defaultErr = New(Options{}) })
		r, err := defaultRenderer, defaultErr
		if err != nil {
			return err
		}
		return r.Render(w, f)
	}
	r, err := New(opts)
	if err != nil {
		return err
	}
	return r.Render(w, f)
}

// Page geometry in millimetres (A4 portrait).
const (
	pageW    = 210.0
	marginL  = 18.0
	marginR  = 18.0
	contentW = pageW - marginL - marginR
	topY     = 12.0 // header top
	bodyY    = 31.0 // first body line
	marginB  = 12.0
	labelW   = 50.0 // label column of the parties block
	lh       = 4.0  // body line height
	bodyPt   = 8.5
	smallPt  = 7.5
	family   = "dejavu"
)

// Colours.
var (
	ink    = [3]int{0x1a, 0x1a, 0x1a}
	muted  = [3]int{0x5a, 0x5a, 0x5a}
	accent = [3]int{0x1f, 0x4e, 0x79}
	rule   = [3]int{0xb0, 0xb8, 0xc0}
	band   = [3]int{0xe8, 0xee, 0xf4}
)

// content is every string on the form, filled in before drawing so the
// document's font encoding can be made from exactly the characters used.
type content struct {
	title, header       string
	page                func(page, pages int) string
	intro               string
	secParties          string
	parties             []party
	secQuestion         string
	subjectLabel        string
	subject             string
	questionLabel       string
	question            string
	secDocuments        string
	docCols             []string
	docs                [][4]string
	docsNote, workplace string
	secCosts, costs     string
	secAuth, authText   string
	points              []string
	secSign             string
	signEmployee        string
	signOriginal        string
	signName, signPlace string
	signDate, signSig   string
	employeeName        string
	originalName        string
	secReturn           string
	ret                 []string
}

// party is one row of the parties block: a label, a name in bold and
// details after it.
type party struct{ label, name, details string }

// Render validates f and writes its form as PDF to w.
func (r *Renderer) Render(w io.Writer, f Form) error {
	f = f.normalized()
	if err := f.validate(); err != nil {
		return err
	}
	t := r.texts[f.Lang]
	c, runes, err := t.content(&f)
	if err != nil {
		return err
	}
	enc, err := newEncoding(runes)
	if err != nil {
		return err
	}
	faces, err := loadFonts()
	if err != nil {
		return err
	}
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetCreationDate(f.Date)
	pdf.SetModificationDate(f.Date)
	pdf.SetCatalogSort(true)
	pdf.SetCompression(true)
	pdf.SetProducer("secondopinion", false)
	pdf.SetTitle(c.title+" "+f.Ref, true)
	pdf.SetAuthor(f.Provider, true)
	pdf.SetLang(f.Lang)
	pdf.SetMargins(marginL, bodyY, marginR)
	pdf.SetAutoPageBreak(true, marginB)
	if err := faces.regular.addTo(pdf, family, "", enc); err != nil {
		return err
	}
	if err := faces.bold.addTo(pdf, family, "B", enc); err != nil {
		return err
	}
	d := &drawer{pdf: pdf, enc: enc, t: t, c: c}
	if t.logo != nil {
		pdf.RegisterImageOptionsReader("logo", fpdf.ImageOptions{ImageType: t.logoTp}, bytes.NewReader(t.logo))
	}
	pdf.SetHeaderFunc(d.header)
	d.draw()
	d.pageNumbers()
	if err := pdf.Error(); err != nil {
		return fmt.Errorf("render form %s: %w", f.Ref, err)
	}
	if err := pdf.Output(w); err != nil {
		return fmt.Errorf("write form %s: %w", f.Ref, err)
	}
	return nil
}

// content fills in every text of the form.
func (t *texts) content(f *Form) (*content, map[rune]struct{}, error) {
	runes := make(map[rune]struct{})
	keep := func(s string) string {
		for _, r := range s {
			if r != '\n' {
				runes[r] = struct{}{}
			}
		}
		return s
	}
	date := func(y int, m int, d int) string { return fmt.Sprintf("%d %s %d", d, t.months[m-1], y) }
	civil := func(s string) string {
		var y, m, d int
		fmt.Sscanf(s, "%d-%d-%d", &y, &m, &d)
		return date(y, m, d)
	}
	withDienst := func(p Physician) string { return p.Name + " (" + p.Arbodienst + ")" }
	v := &view{
		Ref: f.Ref, Date: date(f.Date.Year(), int(f.Date.Month()), f.Date.Day()), Provider: f.Provider,
		Reply: f.ReplyAddress, Employee: f.Employee.Name, EmployeeEmail: f.Employee.Email,
		Employer: f.Employer.Name, Original: withDienst(f.OriginalPhysician), Chosen: withDienst(f.Chosen),
		Documents: len(f.Documents), RetentionYears: f.RetentionYears,
	}
	if f.Employee.BirthDate != "" {
		v.BirthDate = civil(f.Employee.BirthDate)
	}
	if f.Backup != nil {
		v.Backup = withDienst(*f.Backup)
	}
	var err error
	x := func(name string) string {
		if err != nil {
			return ""
		}
		var s string
		s, err = t.exec(name, v)
		return keep(s)
	}
	v.Subject = x("subjects." + f.Subject)
	v.Payer = x("costs.payers." + f.Payer)
	v.Reason = x("costs.reasons." + f.PayerReason)

	c := &content{title: x("title"), header: x("header"), intro: x("intro")}
	pageTmpl := t.tmpl["page"]
	c.page = func(page, pages int) string {
		pv := *v
		pv.Page, pv.Pages = page, pages
		var b bytes.Buffer
		pageTmpl.Execute(&b, &pv) // checked when the texts were loaded
		return strings.TrimSpace(b.String())
	}
	keep(c.page(0, 0))
	for r := '0'; r <= '9'; r++ {
		keep(string(r))
	}

	c.secParties = x("sections.parties")
	pool := func(p Physician) string {
		if p.InPool {
			return x("labels.in_pool")
		}
		return x("labels.outside_pool")
	}
	empDetails := keep(f.Employee.Email)
	if v.BirthDate != "" {
		empDetails = x("labels.born") + " · " + empDetails
	}
	c.parties = []party{
		{x("labels.employee"), keep(f.Employee.Name), keep(empDetails)},
		{x("labels.employer"), keep(f.Employer.Name), ""},
		{x("labels.original"), keep(f.OriginalPhysician.Name), keep(f.OriginalPhysician.Arbodienst)},
		{x("labels.chosen"), keep(f.Chosen.Name), keep(f.Chosen.Arbodienst + " · " + pool(f.Chosen))},
	}
	if f.Backup != nil {
		c.parties = append(c.parties, party{x("labels.backup"), keep(f.Backup.Name), keep(f.Backup.Arbodienst + " · " + pool(*f.Backup))})
	} else {
		c.parties = append(c.parties, party{x("labels.backup"), "", x("labels.no_backup")})
	}

	c.secQuestion = x("sections.question")
	c.subjectLabel = x("labels.subject")
	c.subject = v.Subject
	c.questionLabel = x("labels.question")
	c.question = keep(f.Question)

	c.secDocuments = x("sections.documents")
	for i := range 4 {
		c.docCols = append(c.docCols, x(fmt.Sprintf("documents.columns[%d]", i)))
	}
	for i, d := range f.Documents {
		h := d.SHA256[:16]
		c.docs = append(c.docs, [4]string{
			fmt.Sprintf("%d", i+1), keep(d.Title), keep(civil(d.Date)),
			h[0:4] + " " + h[4:8] + " " + h[8:12] + " " + h[12:16],
		})
	}
	switch len(f.Documents) {
	case 0:
		c.docsNote = x("documents.none")
	case 1:
		c.docsNote = x("documents.only_one")
	default:
		c.docsNote = x("documents.only")
	}
	c.workplace = x("documents.workplace")

	c.secCosts = x("sections.costs")
	c.costs = x("costs.summary")

	c.secAuth = x("sections.authorisation")
	c.authText = x("authorisation.text")
	for i := range t.points {
		c.points = append(c.points, x(fmt.Sprintf("authorisation.points[%d]", i)))
	}
	c.secSign = x("sections.signatures")
	c.signEmployee = x("signatures.employee")
	c.signOriginal = x("signatures.original")
	c.signName = x("signatures.name")
	c.signPlace = x("signatures.place")
	c.signDate = x("signatures.date")
	c.signSig = x("signatures.signature")
	c.employeeName = f.Employee.Name
	c.originalName = f.OriginalPhysician.Name

	c.secReturn = x("sections.return")
	for i := range t.ret {
		c.ret = append(c.ret, x(fmt.Sprintf("return[%d]", i)))
	}
	keep("•·:_")
	if err != nil {
		return nil, nil, err
	}
	for r := range runes {
		if !printable(r) {
			return nil, nil, fmt.Errorf("form texts: character %q (%U) is not in the form's font", r, r)
		}
	}
	return c, runes, nil
}

// drawer lays out one form.
type drawer struct {
	pdf *fpdf.Fpdf
	enc *encoding
	t   *texts
	c   *content
}

func (d *drawer) font(style string, size float64, col [3]int) {
	d.pdf.SetFont(family, style, size)
	d.pdf.SetTextColor(col[0], col[1], col[2])
}

func (d *drawer) s(s string) string { return d.enc.tr(s) }

// bottom is the lowest y body text may reach on a page.
func (d *drawer) bottom() float64 {
	_, h := d.pdf.GetPageSize()
	return h - marginB
}

// need starts a new page unless h millimetres are left on this one.
func (d *drawer) need(h float64) {
	if d.pdf.GetY()+h > d.bottom() {
		d.pdf.AddPage()
	}
}

// header draws the repeated page header; the page number is added at the
// end, when the number of pages is known.
func (d *drawer) header() {
	p := d.pdf
	x := marginL
	if d.t.logo != nil {
		info := p.GetImageInfo("logo")
		h := 14.0
		w := h * info.Width() / info.Height()
		p.ImageOptions("logo", marginL, topY-1, w, h, false, fpdf.ImageOptions{ImageType: d.t.logoTp}, 0, "")
		x += w + 4
	}
	d.font("B", 13, accent)
	p.SetXY(x, topY)
	p.CellFormat(pageW-marginR-x, 6.5, d.s(d.c.title), "", 2, "L", false, 0, "")
	d.font("", smallPt, muted)
	p.SetX(x)
	p.CellFormat(pageW-marginR-x, 5, d.s(d.c.header), "", 2, "L", false, 0, "")
	p.SetDrawColor(rule[0], rule[1], rule[2])
	p.SetLineWidth(0.3)
	p.Line(marginL, bodyY-4, pageW-marginR, bodyY-4)
	p.SetXY(marginL, bodyY)
}

// pageNumbers writes "page X of Y" into every header.
func (d *drawer) pageNumbers() {
	p := d.pdf
	n := p.PageCount()
	for i := 1; i <= n; i++ {
		p.SetPage(i)
		// Appending to a finished page: force the font and colour out
		// again, whatever fpdf believes is current.
		p.SetFont(family, "B", 1)
		d.font("", smallPt, muted)
		p.SetXY(marginL, topY+6.5)
		p.CellFormat(contentW, 5, d.s(d.c.page(i, n)), "", 0, "R", false, 0, "")
	}
}

func (d *drawer) section(title string) {
	p := d.pdf
	d.need(1.5 + 5.5 + 0.8 + 3*lh) // never a heading alone at the foot of a page
	p.Ln(1.5)
	d.font("B", 10, accent)
	p.SetFillColor(band[0], band[1], band[2])
	p.CellFormat(contentW, 5.5, d.s(" "+title), "", 1, "L", true, 0, "")
	p.Ln(0.8)
}

// para writes a wrapped paragraph across the content width, or from x
// when indented.
func (d *drawer) para(s string, style string, indent float64) {
	p := d.pdf
	d.font(style, bodyPt, ink)
	p.SetLeftMargin(marginL + indent)
	p.SetX(marginL + indent)
	p.MultiCell(contentW-indent, lh, d.s(s), "", "L", false)
	p.SetLeftMargin(marginL)
}

// bullets writes a list with hanging indent.
func (d *drawer) bullets(items []string) {
	p := d.pdf
	for _, it := range items {
		d.need(lh)
		d.font("", bodyPt, ink)
		y := p.GetY()
		p.SetXY(marginL+1.5, y)
		p.CellFormat(4, lh, d.s("•"), "", 0, "L", false, 0, "")
		d.para(it, "", 5.5)
		p.Ln(0.5)
	}
}

// labelled writes a label in the left column and flowing text (a bold
// name, then details) in the right one.
func (d *drawer) labelled(label, name, details string) {
	p := d.pdf
	d.need(lh)
	y := p.GetY()
	d.font("", bodyPt, muted)
	p.SetXY(marginL, y)
	p.CellFormat(labelW, lh, d.s(label), "", 0, "L", false, 0, "")
	p.SetLeftMargin(marginL + labelW)
	p.SetX(marginL + labelW)
	if name != "" {
		d.font("B", bodyPt, ink)
		p.Write(lh, d.s(name))
		if details != "" {
			d.font("", bodyPt, ink)
			p.Write(lh, d.s(" · "))
		}
	}
	if details != "" {
		d.font("", bodyPt, ink)
		p.Write(lh, d.s(details))
	}
	p.SetLeftMargin(marginL)
	p.Ln(lh + 0.6)
	p.SetX(marginL)
}

func (d *drawer) draw() {
	p, c := d.pdf, d.c
	p.AddPage()
	d.para(c.intro, "", 0)

	d.section(c.secParties)
	for _, pt := range c.parties {
		d.labelled(pt.label, pt.name, pt.details)
	}

	d.section(c.secQuestion)
	d.labelled(c.subjectLabel, "", c.subject)
	d.font("", bodyPt, muted)
	d.need(2 * lh)
	y := p.GetY()
	p.SetXY(marginL, y)
	p.CellFormat(labelW, lh, d.s(c.questionLabel), "", 0, "L", false, 0, "")
	p.SetY(y)
	d.para(c.question, "", labelW)

	d.section(c.secDocuments)
	d.documents()
	p.Ln(1.5)
	d.para(c.docsNote, "B", 0)
	p.Ln(0.8)
	d.para(c.workplace, "", 0)

	d.section(c.secCosts)
	d.para(c.costs, "", 0)

	d.section(c.secAuth)
	d.para(c.authText, "", 0)
	p.Ln(0.8)
	d.bullets(c.points)

	d.signatures()

	d.section(c.secReturn)
	d.bullets(c.ret)
}

// Column widths of the document table.
var docColW = [4]float64{9, contentW - 9 - 30 - 36, 30, 36}

func (d *drawer) docHeader() {
	p := d.pdf
	d.font("B", smallPt, ink)
	p.SetFillColor(band[0], band[1], band[2])
	p.SetX(marginL)
	for i, col := range d.c.docCols {
		p.CellFormat(docColW[i], 5, d.s(" "+col), "", 0, "L", true, 0, "")
	}
	p.Ln(5)
}

func (d *drawer) documents() {
	p, c := d.pdf, d.c
	if len(c.docs) == 0 {
		return
	}
	const pad = 0.8
	rowLH := 3.6
	d.need(5 + rowLH + 2*pad)
	d.docHeader()
	p.SetDrawColor(rule[0], rule[1], rule[2])
	p.SetLineWidth(0.2)
	for _, row := range c.docs {
		d.font("", smallPt, ink)
		lines := p.SplitLines([]byte(d.s(row[1])), docColW[1]-2)
		h := float64(len(lines))*rowLH + 2*pad
		if p.GetY()+h > d.bottom() {
			p.AddPage()
			d.docHeader()
			d.font("", smallPt, ink)
		}
		y := p.GetY()
		x := marginL
		for i, cell := range row {
			p.SetXY(x, y+pad)
			if i == 1 {
				for j, ln := range lines {
					p.SetXY(x, y+pad+float64(j)*rowLH)
					p.CellFormat(docColW[1]-2, rowLH, " "+string(ln), "", 0, "L", false, 0, "")
				}
			} else {
				p.CellFormat(docColW[i], rowLH, d.s(" "+cell), "", 0, "L", false, 0, "")
			}
			x += docColW[i]
		}
		p.Line(marginL, y+h, marginL+contentW, y+h)
		p.SetXY(marginL, y+h)
	}
}

// signatures draws the two signature blocks side by side, kept together
// on one page.
func (d *drawer) signatures() {
	p, c := d.pdf, d.c
	const boxH, step = 13.0, lh + 2.0
	blockH := lh + 1.5 + 3*step + boxH + 1
	d.need(8.5 + blockH)
	d.section(c.secSign)
	y0 := p.GetY()
	colW := (contentW - 8) / 2
	for i, who := range [2][2]string{{c.signEmployee, c.employeeName}, {c.signOriginal, c.originalName}} {
		x := marginL + float64(i)*(colW+8)
		y := y0
		d.font("B", bodyPt, accent)
		p.SetXY(x, y)
		p.CellFormat(colW, lh, d.s(who[0]), "", 0, "L", false, 0, "")
		y += lh + 1.5
		lw := 24.0
		p.SetDrawColor(rule[0], rule[1], rule[2])
		p.SetLineWidth(0.25)
		for _, field := range [][2]string{{c.signName, who[1]}, {c.signPlace, ""}, {c.signDate, ""}} {
			d.font("", bodyPt, muted)
			p.SetXY(x, y)
			p.CellFormat(lw, lh, d.s(field[0]), "", 0, "L", false, 0, "")
			d.font("", bodyPt, ink)
			p.CellFormat(colW-lw, lh, d.s(field[1]), "", 0, "L", false, 0, "")
			p.Line(x+lw, y+lh+0.6, x+colW, y+lh+0.6)
			y += step
		}
		d.font("", bodyPt, muted)
		p.SetXY(x, y)
		p.CellFormat(lw, lh, d.s(c.signSig), "", 0, "L", false, 0, "")
		p.Rect(x+lw, y, colW-lw, boxH, "D")
	}
	p.SetXY(marginL, y0+blockH)
}
