package pgpmime

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"crypto/subtle"
	"hash"
	"io"

	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// decryptData returns the plaintext of an encrypted data packet under the
// session key, as the packet's own Decrypt does. A version 1 SEIPD packet
// with AES, what GnuPG and go-crypto write to a key without AEAD, is
// decrypted here: go-crypto runs its CFB decryption a byte at a time (a
// 1.4 MB intake took 4 ms there), while every keystream block of CFB
// decryption comes from ciphertext already read, so a batch of blocks is
// encrypted back to back. Every other packet is go-crypto's.
//
// The returned reader gives the plaintext packets; its Close reads to the
// end and reports whether the modification detection code matched
// (pgperrors.ErrMDCHashMismatch when not), as go-crypto's does. Read alone
// checks nothing: what it gave before Close is unverified.
func decryptData(data packet.EncryptedDataPacket, c packet.CipherFunction, key []byte) (io.ReadCloser, error) {
	se, ok := data.(*packet.SymmetricallyEncrypted)
	if !ok || se.Version != 1 || !se.IntegrityProtected ||
		c != packet.CipherAES128 && c != packet.CipherAES192 && c != packet.CipherAES256 {
		return data.Decrypt(c, key)
	}
	if len(key) != c.KeySize() {
		return nil, pgperrors.InvalidArgumentError("SEIPD: session key of the wrong length")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return &mdcReader{src: se.Contents, cfb: newCFBDecrypter(block), mdc: sha1.New(),
		buf: make([]byte, seipdReadBuffer)}, nil
}

// seipdReadBuffer is how much ciphertext the reader decrypts at a time.
const seipdReadBuffer = 64 << 10

// mdcTrailer is the MDC packet at the end of the plaintext: tag 19, length
// 20, then the SHA-1 of everything before it and of those two bytes.
const mdcTrailer = 2 + sha1.Size

// mdcReader decrypts a SEIPD version 1 body (RFC 4880 §5.13): the random
// prefix (a block and its last two bytes again), the plaintext, and the
// MDC packet, all in CFB with a zero IV. It hands out the plaintext and
// holds back the last mdcTrailer bytes until the end, where they are the
// MDC.
type mdcReader struct {
	src    io.Reader
	cfb    *cfbDecrypter
	mdc    hash.Hash
	buf    []byte // decrypted: buf[r:w] not yet handed out
	r, w   int
	prefix bool  // the prefix has been read and hashed
	eof    bool  // src has ended
	err    error // sticky: a read error, or the MDC's verdict
}

func (m *mdcReader) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if err := m.more(); err != nil {
		m.err = err
		return 0, err
	}
	n := copy(p, m.buf[m.r:m.w-mdcTrailer])
	m.mdc.Write(p[:n])
	m.r += n
	return n, nil
}

// Close reads what is left and returns the MDC's verdict: nil when it
// matched.
func (m *mdcReader) Close() error {
	for m.err == nil {
		if err := m.more(); err != nil {
			m.err = err
			break
		}
		m.mdc.Write(m.buf[m.r : m.w-mdcTrailer])
		m.r = m.w - mdcTrailer
	}
	switch m.err {
	case io.EOF:
		return nil
	case io.ErrUnexpectedEOF:
		return pgperrors.ErrMDCHashMismatch
	}
	return m.err
}

// more makes plaintext beyond the held-back trailer available, or finds
// the end: io.EOF when the MDC matched there, another error when it did
// not or the body broke off.
func (m *mdcReader) more() error {
	for !m.eof && (!m.prefix || m.w-m.r <= mdcTrailer) {
		if err := m.fill(); err != nil {
			return err
		}
	}
	if !m.prefix {
		return io.ErrUnexpectedEOF // it ended within the prefix
	}
	if m.w-m.r > mdcTrailer {
		return nil
	}
	return m.verify()
}

// fill reads and decrypts more of the body into buf.
func (m *mdcReader) fill() error {
	if m.r > 0 {
		m.w = copy(m.buf, m.buf[m.r:m.w])
		m.r = 0
	}
	n, err := m.src.Read(m.buf[m.w:])
	m.cfb.XORKeyStream(m.buf[m.w:m.w+n], m.buf[m.w:m.w+n])
	m.w += n
	if !m.prefix && m.w >= aes.BlockSize+2 {
		m.mdc.Write(m.buf[:aes.BlockSize+2])
		m.r = aes.BlockSize + 2
		m.prefix = true
	}
	switch {
	case err == io.EOF:
		m.eof = true
	case err != nil:
		return err
	}
	return nil
}

// verify checks the MDC packet, all that is left in buf at the end:
// io.EOF when it matches.
func (m *mdcReader) verify() error {
	t := m.buf[m.r:m.w]
	if len(t) != mdcTrailer || t[0] != 0xc0|19 || t[1] != sha1.Size {
		return pgperrors.ErrMDCHashMismatch
	}
	m.mdc.Write(t[:2])
	if subtle.ConstantTimeCompare(m.mdc.Sum(nil), t[2:]) != 1 {
		return pgperrors.ErrMDCHashMismatch
	}
	m.r = m.w
	return io.EOF
}

// cfbDecrypter is CFB decryption (NIST SP 800-38A) with a zero IV. Each
// keystream block is the encryption of the ciphertext block before it, all
// known when a batch of ciphertext is in hand: the blocks of a batch are
// encrypted back to back, without waiting on each other (1.5 GB/s here,
// against 0.7 for crypto/cipher's CFB, which goes a block at a time).
type cfbDecrypter struct {
	b    cipher.Block
	prev [aes.BlockSize]byte // the last ciphertext block, or the one begun
	ks   [aes.BlockSize]byte // keystream of the block begun
	used int                 // bytes of ks used; BlockSize when none is begun
	tmp  []byte              // keystream of a batch
}

func newCFBDecrypter(b cipher.Block) *cfbDecrypter {
	return &cfbDecrypter{b: b, used: aes.BlockSize, tmp: make([]byte, 4<<10)}
}

// XORKeyStream decrypts src into dst, which may be src itself.
func (d *cfbDecrypter) XORKeyStream(dst, src []byte) {
	const bs = aes.BlockSize
	// The rest of a block begun in the call before.
	for d.used < bs && len(src) > 0 {
		c := src[0]
		dst[0] = c ^ d.ks[d.used]
		d.prev[d.used] = c
		d.used++
		dst, src = dst[1:], src[1:]
	}
	// Whole blocks, a batch at a time: the keystream first, from the
	// ciphertext, then the XOR, which may overwrite it.
	for len(src) >= bs {
		n := min(len(src), len(d.tmp)) / bs * bs
		ks := d.tmp[:n]
		d.b.Encrypt(ks[:bs], d.prev[:])
		for i := bs; i < n; i += bs {
			d.b.Encrypt(ks[i:i+bs], src[i-bs:i])
		}
		copy(d.prev[:], src[n-bs:n])
		subtle.XORBytes(dst[:n], src[:n], ks)
		dst, src = dst[n:], src[n:]
	}
	// The start of a block the next call ends.
	if len(src) > 0 {
		d.b.Encrypt(d.ks[:], d.prev[:])
		d.used = 0
		for i, c := range src {
			dst[i] = c ^ d.ks[i]
			d.prev[i] = c
		}
		d.used = len(src)
	}
}
