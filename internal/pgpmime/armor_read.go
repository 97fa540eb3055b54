package pgpmime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/segmentio/asm/base64"
)

// armorReader decodes the body of one ASCII-armored block in large batches
// (go-crypto's decoder reads through a 100-byte buffer). It passes over the
// CRC-24 line, as go-crypto's does: RFC 9580 §6.1 has a reader not reject
// an object whose checksum is missing, malformed or wrong, since the
// encryption's integrity check (MDC or AEAD) covers every byte.
type armorReader struct {
	br   *bufio.Reader
	enc  []byte // base64 characters not yet decoded
	out  []byte // decoded bytes not yet returned
	dec  []byte
	done bool
	err  error
}

const armorDecodeBatch = 32 << 10

var errArmorTruncated = errors.New("armor: block not terminated")

// openArmor skips to the first armor header line in br and returns the
// block type and a reader of the block's decoded body.
func openArmor(br *bufio.Reader) (string, *armorReader, error) {
	var typ string
	for typ == "" {
		line, err := readLine(br)
		if err != nil {
			return "", nil, io.EOF
		}
		line = bytes.TrimSpace(line)
		if bytes.HasPrefix(line, []byte("-----BEGIN ")) && bytes.HasSuffix(line, []byte("-----")) && len(line) > 16 {
			typ = string(line[11 : len(line)-5])
		}
	}
	a := &armorReader{br: br}
	// Armor headers ("Version: …") up to the blank line.
	for {
		line, err := readLine(br)
		if err != nil {
			return typ, nil, errArmorTruncated
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			break
		}
		if !bytes.Contains(line, []byte(": ")) {
			// No blank line after the header line: lenient, as GnuPG.
			if err := a.addLine(line); err != nil {
				return typ, nil, err
			}
			break
		}
	}
	return typ, a, nil
}

// readLine returns the next line; a line longer than the buffer is returned
// in pieces (armor lines are short, so such pieces are garbage or base64
// that fails to decode).
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return line, nil
	}
	if err != nil && len(line) > 0 {
		return line, nil
	}
	return line, err
}

// addLine takes one trimmed body line.
func (a *armorReader) addLine(line []byte) error {
	switch {
	case len(line) == 0:
	case bytes.HasPrefix(line, []byte("-----END ")):
		a.done = true
	case line[0] == '=':
		// The checksum line (no base64 line starts with padding).
	default:
		a.enc = append(a.enc, line...)
	}
	return nil
}

func (a *armorReader) fill() error {
	for !a.done && len(a.enc) < armorDecodeBatch {
		line, err := readLine(a.br)
		if err != nil {
			return errArmorTruncated
		}
		if err := a.addLine(bytes.TrimSpace(line)); err != nil {
			return err
		}
	}
	n := len(a.enc) / 4 * 4
	if a.done && n != len(a.enc) {
		return errors.New("armor: base64 body has a bad length")
	}
	if cap(a.dec) < n/4*3 {
		a.dec = make([]byte, n/4*3)
	}
	m, err := base64.StdEncoding.Decode(a.dec[:cap(a.dec)], a.enc[:n])
	if err != nil {
		return fmt.Errorf("armor: %v", err)
	}
	a.out = a.dec[:m]
	a.enc = a.enc[:copy(a.enc, a.enc[n:])]
	return nil
}

func (a *armorReader) Read(p []byte) (int, error) {
	for len(a.out) == 0 {
		if a.err != nil {
			return 0, a.err
		}
		if a.done && len(a.enc) == 0 {
			return 0, io.EOF
		}
		if err := a.fill(); err != nil {
			a.err = err
		}
	}
	n := copy(p, a.out)
	a.out = a.out[n:]
	return n, nil
}
