package pgpmime

import (
	"bytes"
	"io"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// What encryptV1 writes, go-crypto's reader decrypts, for plaintexts that
// end anywhere around the partial body chunks and the three lengths of the
// last chunk; to two recipients, each of whom can read it. A wrong byte
// anywhere in the ciphertext fails the modification detection code.
func TestEncryptV1(t *testing.T) {
	a := newEntity(t, "A", "a@example.test", t0, 0, 0)
	b := newEntity(t, "B", "b@example.test", t0, 0, 0)
	for _, n := range []int{0, 1, 150, 170, 8300, 8400, partialChunk - 60, partialChunk - 41, partialChunk, 3*partialChunk + 7, 300 << 10} {
		plain := randomBytes(t, n)
		var out bytes.Buffer
		w, err := encryptV1(&out, []*openpgp.Entity{a, b}, t0)
		if err != nil {
			t.Fatal(err)
		}
		lw, err := packet.SerializeLiteral(w, true, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lw.Write(plain); err != nil {
			t.Fatal(err)
		}
		if err := lw.Close(); err != nil { // closes w: the MDC and the last chunk
			t.Fatal(err)
		}
		if err := w.Close(); err == nil {
			t.Errorf("closed twice without error")
		}
		for _, k := range []*openpgp.Entity{a, b} {
			md, err := openpgp.ReadMessage(bytes.NewReader(out.Bytes()), openpgp.EntityList{k}, nil, nil)
			if err != nil {
				t.Fatalf("%d bytes, read as %s: %v", n, k.PrimaryIdentity().UserId.Email, err)
			}
			got, err := io.ReadAll(md.UnverifiedBody)
			if err != nil || !bytes.Equal(got, plain) || !md.IsEncrypted {
				t.Fatalf("%d bytes: got %d bytes, encrypted %v, %v", n, len(got), md.IsEncrypted, err)
			}
		}
		// Flip a bit of the last ciphertext byte (inside the MDC) and of a
		// byte in the middle of the encrypted data.
		for _, at := range []int{out.Len() - 1, out.Len() - 23 - n/2} {
			bad := bytes.Clone(out.Bytes())
			bad[at] ^= 0x01
			md, err := openpgp.ReadMessage(bytes.NewReader(bad), openpgp.EntityList{a}, nil, nil)
			if err == nil {
				_, err = io.ReadAll(md.UnverifiedBody)
			}
			if err == nil {
				t.Errorf("%d bytes, byte %d of %d changed: read without error", n, at, out.Len())
			}
		}
	}
}

// A recipient whose key does not list AES-256 gets AES-128, as go-crypto
// would choose; one that does gets AES-256.
func TestEncryptV1Cipher(t *testing.T) {
	for _, tc := range []struct {
		prefs []uint8
		want  packet.CipherFunction
	}{
		{[]uint8{uint8(packet.CipherAES256), uint8(packet.CipherAES128)}, packet.CipherAES256},
		{[]uint8{uint8(packet.CipherAES128)}, packet.CipherAES128},
		{nil, packet.CipherAES128},
	} {
		k := newEntity(t, "K", "k@example.test", t0, 0, 0)
		self, _ := k.PrimarySelfSignature()
		self.PreferredSymmetric = tc.prefs
		var out bytes.Buffer
		w, err := encryptV1(&out, []*openpgp.Entity{k}, t0)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		p, err := packet.Read(&out)
		if err != nil {
			t.Fatal(err)
		}
		ek, ok := p.(*packet.EncryptedKey)
		if !ok {
			t.Fatalf("first packet %T", p)
		}
		sub, _ := k.EncryptionKey(t0)
		if err := ek.Decrypt(sub.PrivateKey, nil); err != nil {
			t.Fatal(err)
		}
		if ek.CipherFunc != tc.want {
			t.Errorf("preferences %v: cipher %v, want %v", tc.prefs, ek.CipherFunc, tc.want)
		}
	}
}
