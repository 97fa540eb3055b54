package pgpmime

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// encryptV1 starts an OpenPGP message encrypted to the recipients: one
// public-key encrypted session key packet per recipient, then a
// Symmetrically Encrypted Integrity Protected Data packet, version 1
// (RFC 4880 §5.13, what every GnuPG reads), whose plaintext is what is
// written to the returned writer. Close writes the modification detection
// code and ends the packet.
//
// go-crypto writes the same packet (openpgp.Encrypt without AEAD), but runs
// its CFB mode a byte at a time and calls the block cipher with a fresh
// buffer per block: a 1.4 MB forwarding took 5 ms there and about half of
// that through crypto/cipher's CFB. The session key packets and everything
// inside the encryption (signature, literal data) are still go-crypto's.
func encryptV1(w io.Writer, to []*openpgp.Entity, now time.Time) (io.WriteCloser, error) {
	cipherFunc := packet.CipherAES256
	keys := make([]*packet.PublicKey, len(to))
	for i, e := range to {
		k, ok := e.EncryptionKey(now)
		if !ok {
			return nil, fmt.Errorf("key %X has no valid encryption key", e.PrimaryKey.Fingerprint)
		}
		keys[i] = k.PublicKey
		// The cipher every recipient lists, as go-crypto chooses it:
		// AES-256 if all prefer it, else AES-128, which all must read.
		self, _ := e.PrimarySelfSignature()
		if self == nil || !slices.Contains(self.PreferredSymmetric, uint8(packet.CipherAES256)) {
			cipherFunc = packet.CipherAES128
		}
	}
	key := make([]byte, cipherFunc.KeySize())
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	cfg := &packet.Config{Time: func() time.Time { return now }}
	for _, k := range keys {
		if err := packet.SerializeEncryptedKeyAEAD(w, k, cipherFunc, false, key, cfg); err != nil {
			return nil, err
		}
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	body := &partialWriter{w: w, buf: make([]byte, 1, partialChunk)}
	body.buf[0] = seipdVersion
	if _, err := w.Write([]byte{0xc0 | seipdTag}); err != nil {
		return nil, err
	}
	// The prefix: a block of random bytes and its last two again (RFC 4880
	// §5.13); then the plaintext and the MDC packet, all in plain CFB with a
	// zero IV (version 1 does not resynchronise after the prefix).
	prefix := make([]byte, aes.BlockSize+2)
	if _, err := rand.Read(prefix[:aes.BlockSize]); err != nil {
		return nil, err
	}
	copy(prefix[aes.BlockSize:], prefix[aes.BlockSize-2:aes.BlockSize])
	s := &seipdWriter{
		out: body,
		// Deprecated for new designs, as unauthenticated; SEIPD v1 is CFB
		// by definition, and the MDC is its integrity check.
		cfb: cipher.NewCFBEncrypter(block, make([]byte, aes.BlockSize)),
		mdc: sha1.New(),
	}
	if _, err := s.Write(prefix); err != nil {
		return nil, err
	}
	return s, nil
}

const (
	seipdTag     = 18
	seipdVersion = 1
	// partialChunk is the size of each partial body length chunk, a power
	// of two of at least 512 (RFC 4880 §4.2.2.4).
	partialChunk = 64 << 10
	partialLog2  = 16
)

// seipdWriter encrypts what is written to it and keeps the SHA-1 of the
// plaintext for the modification detection code.
type seipdWriter struct {
	out *partialWriter
	cfb cipher.Stream
	mdc hash.Hash
	buf []byte
}

func (s *seipdWriter) Write(p []byte) (int, error) {
	s.mdc.Write(p)
	n := len(p)
	for len(p) > 0 {
		c := min(len(p), partialChunk)
		s.buf = slices.Grow(s.buf[:0], c)[:c]
		s.cfb.XORKeyStream(s.buf, p[:c])
		if _, err := s.out.Write(s.buf); err != nil {
			return 0, err
		}
		p = p[c:]
	}
	return n, nil
}

// Close appends the MDC packet (tag 19, 20 bytes: the SHA-1 of the prefix,
// the plaintext and the packet's own two header bytes) and ends the packet.
func (s *seipdWriter) Close() error {
	trailer := []byte{0xc0 | 19, sha1.Size}
	s.mdc.Write(trailer)
	trailer = s.mdc.Sum(trailer)
	s.cfb.XORKeyStream(trailer, trailer)
	if _, err := s.out.Write(trailer); err != nil {
		return err
	}
	return s.out.Close()
}

var errClosed = errors.New("encrypted packet already closed")

// partialWriter writes a packet body in partial body length chunks of
// partialChunk bytes, and the rest, at Close, with a definite length.
type partialWriter struct {
	w   io.Writer
	buf []byte
}

func (p *partialWriter) Write(b []byte) (int, error) {
	if p.buf == nil {
		return 0, errClosed
	}
	n := len(b)
	for len(b) > 0 {
		if len(p.buf) == partialChunk {
			if _, err := p.w.Write([]byte{224 + partialLog2}); err != nil {
				return 0, err
			}
			if _, err := p.w.Write(p.buf); err != nil {
				return 0, err
			}
			p.buf = p.buf[:0]
		}
		c := copy(p.buf[len(p.buf):partialChunk], b)
		p.buf = p.buf[:len(p.buf)+c]
		b = b[c:]
	}
	return n, nil
}

// Close writes the last chunk, with a length of one, two or five bytes
// (RFC 4880 §4.2.2).
func (p *partialWriter) Close() error {
	if p.buf == nil {
		return errClosed
	}
	n := len(p.buf)
	var hdr []byte
	switch {
	case n < 192:
		hdr = []byte{byte(n)}
	case n < 8384:
		hdr = []byte{byte((n-192)>>8) + 192, byte(n - 192)}
	default:
		hdr = []byte{255, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	if _, err := p.w.Write(hdr); err != nil {
		return err
	}
	_, err := p.w.Write(p.buf)
	p.buf = nil
	return err
}
