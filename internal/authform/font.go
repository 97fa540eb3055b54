package authform

import (
	"bytes"
	"compress/zlib"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"

	"codeberg.org/go-pdf/fpdf"
	"golang.org/x/image/font"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
)

// The form's typeface is DejaVu Sans (fonts/LICENSE): unlike the Go fonts
// it has the Vietnamese letters of Latin Extended Additional (ễ, ư, ơ), and
// Greek and Cyrillic besides.
//
// fpdf's own UTF-8 font path re-parses the whole font and writes 64K-entry
// tables for every document, several milliseconds per face. Instead the
// font is cut once to the repertoire below and embedded as a simple
// TrueType font whose 256-code encoding is made per document: ASCII keeps
// its codes and every other character the document uses gets one of the
// codes 127–255, named uniXXXX in the /Differences array so viewers and
// text extraction map it back to Unicode through the font's own cmap.

//go:embed fonts/DejaVuSans.ttf
var regularTTF []byte

//go:embed fonts/DejaVuSans-Bold.ttf
var boldTTF []byte

// repertoire is what a form may print: Latin (Basic, Latin-1, Extended-A
// and -B, Extended Additional), Greek, Cyrillic, punctuation and a few
// symbols.
var repertoire = [][2]rune{
	{0x20, 0x7e}, {0xa0, 0x24f}, {0x370, 0x3ff}, {0x400, 0x4ff},
	{0x1e00, 0x1eff}, {0x2010, 0x2027}, {0x2030, 0x203a}, {0x20ac, 0x20ac},
	{0x2122, 0x2122}, {0x2190, 0x2193}, {0x2610, 0x2612}, {0x2713, 0x2713},
}

// face is one weight of the cut font, ready to be embedded.
type face struct {
	name   string       // PDF BaseFont name
	file   string       // fpdf's key for the font file
	z      []byte       // the cut font, zlib-compressed once
	size   int          // uncompressed size of the cut font
	widths map[rune]int // advance per rune in 1/1000 em
	desc   fontDesc
}

// fontDesc mirrors fpdf.FontDescType, whose bounding box type is
// unexported; fpdf reads it from JSON by field name.
type fontDesc struct {
	Ascent, Descent, CapHeight, Flags int
	FontBBox                          struct{ Xmin, Ymin, Xmax, Ymax int }
	ItalicAngle, StemV, MissingWidth  int
}

type fontSet struct {
	regular, bold *face
}

var (
	fontsOnce sync.Once
	fonts     fontSet
	fontsErr  error
)

// loadFonts cuts and measures both faces, once per process.
func loadFonts() (fontSet, error) {
	fontsOnce.Do(func() {
		var b strings.Builder
		for _, r := range repertoire {
			for c := r[0]; c <= r[1]; c++ {
				b.WriteRune(c)
			}
		}
		cutset := b.String()
		reg, err := newFace("DejaVuSans", regularTTF, cutset, false)
		if err != nil {
			fontsErr = err
			return
		}
		bold, err := newFace("DejaVuSans-Bold", boldTTF, cutset, true)
		if err != nil {
			fontsErr = err
			return
		}
		fonts = fontSet{regular: reg, bold: bold}
	})
	return fonts, fontsErr
}

func newFace(name string, ttf []byte, cutset string, bold bool) (*face, error) {
	cut := fpdf.UTF8CutFont(ttf, cutset)
	f, err := sfnt.Parse(cut)
	if err != nil {
		return nil, fmt.Errorf("font %s: %w", name, err)
	}
	upem := fixed.Int26_6(f.UnitsPerEm()) << 6 // ppem = units per em: metrics in font units
	scale := func(v fixed.Int26_6) int {
		return int(math.Round(float64(v) / 64 * 1000 / float64(f.UnitsPerEm())))
	}
	var buf sfnt.Buffer
	widths := make(map[rune]int)
	for _, r := range cutset {
		g, err := f.GlyphIndex(&buf, r)
		if err != nil || g == 0 {
			continue // unassigned code point inside a range
		}
		adv, err := f.GlyphAdvance(&buf, g, upem, font.HintingNone)
		if err != nil {
			return nil, fmt.Errorf("font %s: advance of %U: %w", name, r, err)
		}
		widths[r] = scale(adv)
	}
	m, err := f.Metrics(&buf, upem, font.HintingNone)
	if err != nil {
		return nil, fmt.Errorf("font %s: metrics: %w", name, err)
	}
	bounds, err := f.Bounds(&buf, upem, font.HintingNone)
	if err != nil {
		return nil, fmt.Errorf("font %s: bounds: %w", name, err)
	}
	stem := 70
	if bold {
		stem = 120
	}
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestCompression)
	zw.Write(cut)
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("font %s: compress: %w", name, err)
	}
	return &face{
		name:   name,
		file:   name + ".z",
		z:      z.Bytes(),
		size:   len(cut),
		widths: widths,
		desc: fontDesc{
			Ascent:    scale(m.Ascent),
			Descent:   -scale(m.Descent),
			CapHeight: scale(m.CapHeight),
			Flags:     32, // nonsymbolic: glyphs are found by name through the cmap
			// sfnt's y axis points down.
			FontBBox:     struct{ Xmin, Ymin, Xmax, Ymax int }{scale(bounds.Min.X), -scale(bounds.Max.Y), scale(bounds.Max.X), -scale(bounds.Min.Y)},
			StemV:        stem,
			MissingWidth: widths[' '],
		},
	}, nil
}

// printable reports whether the font has a glyph for r.
func printable(r rune) bool {
	fs, err := loadFonts()
	if err != nil {
		return false
	}
	_, ok := fs.regular.widths[r]
	return ok
}

// unprintable returns the first rune of s the font cannot print.
func unprintable(s string) (rune, bool) {
	for _, r := range s {
		if !printable(r) {
			return r, true
		}
	}
	return 0, false
}

// firstCode is where the per-document codes for non-ASCII runes start.
const firstCode = 127

// encoding maps the runes of one document to single-byte codes.
type encoding struct {
	code map[rune]byte
	diff string // the /Differences entries for codes firstCode..255
}

// newEncoding assigns codes to the non-ASCII runes of the document, in
// rune order so the output does not depend on the order of drawing.
func newEncoding(runes map[rune]struct{}) (*encoding, error) {
	var extra []rune
	for r := range runes {
		if r > 0x7e {
			extra = append(extra, r)
		}
	}
	if len(extra) > 256-firstCode {
		return nil, fmt.Errorf("%w: the form uses %d different non-ASCII characters, at most %d fit", ErrTooManyCharacters, len(extra), 256-firstCode)
	}
	sort.Slice(extra, func(i, j int) bool { return extra[i] < extra[j] })
	e := &encoding{code: make(map[rune]byte, len(extra))}
	var d strings.Builder
	if len(extra) > 0 {
		fmt.Fprintf(&d, "%d", firstCode)
	}
	for i, r := range extra {
		e.code[r] = byte(firstCode + i)
		fmt.Fprintf(&d, " /uni%04X", r)
	}
	e.diff = d.String()
	return e, nil
}

// ErrTooManyCharacters means the text of one form needs more distinct
// characters than its font encoding holds.
var ErrTooManyCharacters = fmt.Errorf("too many different characters")

// tr encodes s for the document's fonts. Runes without a code (which the
// collection pass should have made impossible) become '?'.
func (e *encoding) tr(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] > 0x7e {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		switch c, ok := e.code[r]; {
		case r <= 0x7e:
			b = append(b, byte(r))
		case ok:
			b = append(b, c)
		default:
			b = append(b, '?')
		}
	}
	return string(b)
}

// fontDef is the JSON font definition fpdf.AddFontFromBytes reads.
type fontDef struct {
	Tp           string
	Name         string
	Desc         fontDesc
	Up, Ut       int
	Cw           []int
	Enc          string
	Diff         string
	File         string
	OriginalSize int
}

// addTo registers the face with the document under family/style, with
// widths and names for the document's encoding.
func (fc *face) addTo(pdf *fpdf.Fpdf, family, style string, e *encoding) error {
	cw := make([]int, 256)
	for c := 0x20; c <= 0x7e; c++ {
		cw[c] = fc.widths[rune(c)]
	}
	for r, c := range e.code {
		cw[c] = fc.widths[r]
	}
	def := fontDef{
		Tp: "TrueType", Name: fc.name, Desc: fc.desc, Up: -63, Ut: 44,
		Cw: cw, Diff: e.diff, File: fc.file, OriginalSize: fc.size,
	}
	js, err := json.Marshal(def)
	if err != nil {
		return fmt.Errorf("font %s: %w", fc.name, err)
	}
	pdf.AddFontFromBytes(family, style, js, fc.z)
	return pdf.Error()
}
