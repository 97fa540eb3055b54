package message

import (
	"bytes"
	stdbase64 "encoding/base64"
	"io"
	"strings"
	"sync"

	gomessage "github.com/emersion/go-message"
	"github.com/segmentio/asm/base64"
)

// newEntity is gomessage.New with a faster decoder for base64 bodies, the
// transfer encoding of every attachment: go-message reads them through
// encoding/base64's NewDecoder behind a reader that replaces blanks,
// 1 KiB and one byte at a time; a medical file of a megabyte spent about
// 6 ms there. The entity's header then no longer names the encoding (its
// body is decoded); nothing reads it afterwards.
func newEntity(h gomessage.Header, body io.Reader) (*gomessage.Entity, error) {
	mt, _, _ := h.ContentType()
	if !strings.HasPrefix(mt, "multipart/") && strings.EqualFold(h.Get("Content-Transfer-Encoding"), "base64") {
		h = h.Copy()
		h.Del("Content-Transfer-Encoding")
		body = &base64Reader{body: body}
	}
	return gomessage.New(h, body)
}

// base64Reader decodes a base64 body (RFC 2045 section 6.8), as
// go-message does: line breaks, spaces and tabs are skipped, anything else
// outside the alphabet is an error, and so is data after the padding or an
// incomplete last group. It takes the blanks out as it reads and hands
// Decode a chunk at a time, cut after a whole group: with no line breaks
// left, Decode runs on AVX2 where the processor has it, rather than
// stopping at the end of each line.
type base64Reader struct {
	r    *base64Bufs
	body io.Reader
	out  []byte // the part of r.buf not yet returned
	done bool   // padding seen: only blanks may follow
	err  error
}

// base64Bufs are a base64Reader's buffers, reused once it has ended: a
// message may have a thousand small base64 parts.
type base64Bufs struct {
	in  []byte // read from the body
	q   []byte // read, without blanks, not yet decoded: at most a partial group between reads
	buf []byte // decoded
}

var base64Pool = sync.Pool{New: func() any {
	return &base64Bufs{in: make([]byte, base64Chunk), q: make([]byte, 0, base64Chunk+4),
		buf: make([]byte, base64.StdEncoding.DecodedLen(base64Chunk+4))}
}}

// base64Chunk is how much is read from the body at once.
const base64Chunk = 32 << 10

func (d *base64Reader) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			if d.r != nil {
				d.r.q = d.r.q[:0]
				base64Pool.Put(d.r)
				d.r = nil
			}
			return 0, d.err
		}
		d.fill()
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

// appendData appends chunk to q without its blanks: line breaks, spaces
// and tabs. A mail client's lines have no spaces or tabs, and end in CRLF
// or LF; they are copied a line at a time.
func appendData(q, chunk []byte) []byte {
	if bytes.IndexByte(chunk, ' ') >= 0 || bytes.IndexByte(chunk, '\t') >= 0 {
		for _, c := range chunk {
			if !isBlank(c) {
				q = append(q, c)
			}
		}
		return q
	}
	from := len(q)
	for len(chunk) > 0 {
		line := chunk
		if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
			line, chunk = chunk[:i], chunk[i+1:]
		} else {
			chunk = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		q = append(q, line...)
	}
	if bytes.IndexByte(q[from:], '\r') < 0 {
		return q
	}
	k := from // a CR inside a line, or the CR of a CRLF cut between reads
	for _, c := range q[from:] {
		if c != '\r' {
			q[k] = c
			k++
		}
	}
	return q[:k]
}

// isBlank says whether c is skipped in a base64 body.
func isBlank(c byte) bool { return c == '\r' || c == '\n' || c == ' ' || c == '\t' }

// fill reads one chunk and decodes its whole groups into out; at the end
// of the body, or at an error, it sets err.
func (d *base64Reader) fill() {
	if d.r == nil {
		d.r = base64Pool.Get().(*base64Bufs)
	}
	b := d.r
	n, rerr := d.body.Read(b.in)
	b.q = appendData(b.q, b.in[:n])
	switch {
	case rerr == io.EOF:
		d.err = io.EOF
	case rerr != nil:
		d.err = rerr
	}
	cut := len(b.q) - len(b.q)%4 // after the last whole group
	if d.err == io.EOF && cut < len(b.q) {
		d.err = io.ErrUnexpectedEOF
	}
	if d.done && len(b.q) > 0 {
		d.err = stdbase64.CorruptInputError(0)
		return
	}
	if cut == 0 {
		return
	}
	// Decode writes what comes before a bad group, as go-message gives it.
	m, err := base64.StdEncoding.Decode(b.buf, b.q[:cut])
	d.out = b.buf[:m]
	if err != nil {
		d.err = err
		return
	}
	d.done = b.q[cut-1] == '='
	b.q = b.q[:copy(b.q, b.q[cut:])]
	if d.done && len(b.q) > 0 {
		d.err = stdbase64.CorruptInputError(0)
	}
}
