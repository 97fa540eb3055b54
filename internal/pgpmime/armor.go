package pgpmime

import (
	"io"

	"github.com/segmentio/asm/base64"
)

// base64Lines encodes to base64 in lines of a fixed length with CRLF line
// ends, in large batches: the line-wrapping writers of the libraries write
// a few bytes at a time, which cost more than the encryption of a large
// attachment. A batch of lines is encoded in one call, with AVX2 where the
// processor has it, and then cut into lines: encoding line by line would
// leave most of each line to the scalar code.
type base64Lines struct {
	w         io.Writer
	lineBytes int // input bytes per line: 48 for armor, 57 for MIME
	lineChars int // base64 characters per line, without the CRLF
	pending   []byte
	enc       []byte // a batch encoded in one piece
	buf       []byte // the batch in lines
	err       error
}

const base64Batch = 512 // lines encoded per write

func newBase64Lines(w io.Writer, lineBytes int) *base64Lines {
	chars := lineBytes / 3 * 4
	return &base64Lines{w: w, lineBytes: lineBytes, lineChars: chars, pending: make([]byte, 0, lineBytes),
		enc: make([]byte, base64Batch*chars), buf: make([]byte, 0, base64Batch*(chars+2))}
}

func (l *base64Lines) Write(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n := len(p)
	if len(l.pending) > 0 {
		c := min(len(p), l.lineBytes-len(l.pending))
		l.pending = append(l.pending, p[:c]...)
		p = p[c:]
		if len(l.pending) < l.lineBytes {
			return n, nil
		}
		l.buf = appendLine(l.buf[:0], l.pending)
		l.pending = l.pending[:0]
		if !l.flush() {
			return 0, l.err
		}
	}
	for len(p) >= l.lineBytes {
		k := min(len(p)/l.lineBytes, base64Batch) * l.lineBytes
		enc := l.enc[:k/3*4]
		base64.StdEncoding.Encode(enc, p[:k])
		p = p[k:]
		l.buf = l.buf[:0]
		for ; len(enc) > 0; enc = enc[l.lineChars:] {
			l.buf = append(l.buf, enc[:l.lineChars]...)
			l.buf = append(l.buf, '\r', '\n')
		}
		if !l.flush() {
			return 0, l.err
		}
	}
	l.pending = append(l.pending, p...)
	return n, nil
}

// Close writes the last, short line. It does not close the underlying
// writer.
func (l *base64Lines) Close() error {
	if l.err != nil {
		return l.err
	}
	if len(l.pending) > 0 {
		l.buf = appendLine(l.buf[:0], l.pending)
		l.pending = l.pending[:0]
		l.flush()
	}
	return l.err
}

func appendLine(dst, src []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, base64.StdEncoding.EncodedLen(len(src)))...)
	base64.StdEncoding.Encode(dst[n:], src)
	return append(dst, '\r', '\n')
}

func (l *base64Lines) flush() bool {
	if len(l.buf) == 0 {
		return true
	}
	_, l.err = l.w.Write(l.buf)
	l.buf = l.buf[:0]
	return l.err == nil
}

// armorWriter writes OpenPGP ASCII armor (RFC 4880 §6.2) with CRLF line
// ends, as a MIME body needs them, and the CRC-24 checksum line, which
// GnuPG 2.2 checks when present. go-crypto's encoder writes LF and computes
// the CRC bit by bit.
type armorWriter struct {
	lines *base64Lines
	w     io.Writer
	typ   string
	crc   uint32
}

func newArmorWriter(w io.Writer, blockType string) (*armorWriter, error) {
	if _, err := io.WriteString(w, "-----BEGIN "+blockType+"-----\r\n\r\n"); err != nil {
		return nil, err
	}
	return &armorWriter{lines: newBase64Lines(w, 48), w: w, typ: blockType, crc: 0xb704ce}, nil
}

func (a *armorWriter) Write(p []byte) (int, error) {
	a.crc = crc24Update(a.crc, p)
	return a.lines.Write(p)
}

// Close writes the last line, the checksum and the end line. It does not
// close the underlying writer.
func (a *armorWriter) Close() error {
	if err := a.lines.Close(); err != nil {
		return err
	}
	crc := []byte{byte(a.crc >> 16), byte(a.crc >> 8), byte(a.crc)}
	tail := append([]byte{'='}, appendLine(nil, crc)...)
	tail = append(tail, "-----END "+a.typ+"-----\r\n"...)
	_, err := a.w.Write(tail)
	return err
}

// crc24Tables are slicing-by-8 tables for the CRC-24 of RFC 4880 §6.1,
// computed on the CRC shifted into the top 24 bits of a uint32 so the usual
// MSB-first slicing applies. One byte at a time this checksum cost more
// than the encryption.
var crc24Tables = func() (t [8][256]uint32) {
	const poly = 0x864cfb << 8 // x^24 implicit, aligned with the top of a uint32
	for i := range t[0] {
		c := uint32(i) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ poly
			} else {
				c <<= 1
			}
		}
		t[0][i] = c
	}
	for k := 1; k < 8; k++ {
		for i := range t[k] {
			prev := t[k-1][i]
			t[k][i] = prev<<8 ^ t[0][prev>>24]
		}
	}
	return t
}()

func crc24Update(crc uint32, p []byte) uint32 {
	c := crc << 8
	t := &crc24Tables
	for len(p) >= 8 {
		c ^= uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3])
		c = t[7][c>>24] ^ t[6][c>>16&0xff] ^ t[5][c>>8&0xff] ^ t[4][c&0xff] ^
			t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]]
		p = p[8:]
	}
	for _, b := range p {
		c = c<<8 ^ t[0][byte(c>>24)^b]
	}
	return c >> 8
}
