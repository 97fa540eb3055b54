package pgpmime

import (
	"bytes"
	"io"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// FuzzRead: whatever arrives by mail, Decrypt returns; it never panics and
// never reports a valid signature for content it did not verify.
func FuzzRead(f *testing.F) {
	fixtures(f)
	svc := serviceFromEntity(fixSvc)
	kr := keysDir(f, map[string]*openpgp.Entity{"arts@example.test": fixArts})
	good := writeTo(f, fixArts, "arts@example.test", []*PublicKey{svc.Public()}, "Advies.\n", bytesAttachment("a.pdf", "application/pdf", []byte("%PDF-1.4 x")))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("From: a@example.test\r\nContent-Type: text/plain\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA+x\r\n-----END PGP MESSAGE-----\r\n"))
	f.Add([]byte("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n\x85\x01\x0c\x03\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: multipart/mixed; boundary=y\r\n\r\n--y\r\n\r\n--y--\r\n--x--\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Decrypt(io.Discard, bytes.NewReader(data), svc, kr, t0)
		if err == nil && d.Signature.Status == StatusValid && !bytes.Equal(data, good) {
			// Only the untouched message, or one differing outside the
			// signed payload, may verify.
			if !bytes.Contains(data, good[bytes.Index(good, []byte("-----BEGIN PGP MESSAGE-----")):bytes.Index(good, []byte("-----END PGP MESSAGE-----"))]) {
				t.Fatalf("unverified content reported valid")
			}
		}
	})
}
