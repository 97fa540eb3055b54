package pgpmime

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"io"
	"math/rand/v2"
	"testing"
	"time"

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

// The batched CFB decryption gives what crypto/cipher's CFB gives, in
// place or not, whatever the pieces the ciphertext comes in: pieces that
// end inside a block, whole blocks, and more than a batch.
func TestCFBDecrypter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	key := make([]byte, 32)
	for _, n := range []int{0, 1, 15, 16, 17, 4095, 4096, 4097, 20000} {
		ct := make([]byte, n)
		for i := range ct {
			ct[i] = byte(rng.Uint32())
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, n)
		cipher.NewCFBDecrypter(block, make([]byte, aes.BlockSize)).XORKeyStream(want, ct)
		for _, inPlace := range []bool{false, true} {
			for round := range 20 {
				d := newCFBDecrypter(block)
				got := make([]byte, n)
				if inPlace {
					copy(got, ct)
				}
				for at := 0; at < n; {
					m := min(n-at, 1+rng.IntN(5000))
					if round%4 == 0 {
						m = min(n-at, 1+rng.IntN(20)) // mostly within blocks
					}
					src := ct[at : at+m]
					if inPlace {
						src = got[at : at+m]
					}
					d.XORKeyStream(got[at:at+m], src)
					at += m
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%d bytes, in place %v, round %d: plaintext differs from crypto/cipher's", n, inPlace, round)
				}
			}
		}
	}
}

// What go-crypto and encryptV1 write as SEIPD version 1, open decrypts
// with decryptData to the same bytes go-crypto's reader gives, read in
// pieces of any size; a changed byte anywhere that makes go-crypto's
// reader fail makes this one fail too, and none that go-crypto reads makes
// it give other bytes.
func TestDecryptV1(t *testing.T) {
	fixtures(t)
	svc := serviceFromEntity(fixSvc)
	v := &verifier{svc: svc, keys: keysDir(t, map[string]*openpgp.Entity{"arts@example.test": fixArts}), now: t0}
	for _, n := range []int{0, 1, 21, 22, 23, 200, seipdReadBuffer - 30, seipdReadBuffer + 5, 200 << 10} {
		plain := randomBytes(t, n)
		messages := map[string][]byte{}
		// go-crypto's writer: signed by the physician, compressed.
		var gc bytes.Buffer
		w, err := openpgp.Encrypt(&gc, []*openpgp.Entity{fixSvc}, fixArts, &openpgp.FileHints{IsBinary: true}, &packet.Config{
			Time: func() time.Time { return t0 }, DefaultCompressionAlgo: packet.CompressionZLIB})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(plain)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		messages["go-crypto"] = gc.Bytes()
		// encryptV1, literal data only.
		var ours bytes.Buffer
		ew, err := encryptV1(&ours, []*openpgp.Entity{fixSvc}, t0)
		if err != nil {
			t.Fatal(err)
		}
		lw, err := packet.SerializeLiteral(ew, true, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		lw.Write(plain)
		if err := lw.Close(); err != nil {
			t.Fatal(err)
		}
		messages["encryptV1"] = ours.Bytes()

		for name, msg := range messages {
			if !isSEIPDv1(t, msg) {
				t.Fatalf("%s: not a SEIPD version 1 message", name)
			}
			for _, piece := range []int{1, 7, 4096, 1 << 20} {
				got, signed, err := openAll(v, msg, piece)
				if err != nil || !bytes.Equal(got, plain) || signed != (name == "go-crypto") {
					t.Fatalf("%s, %d bytes in pieces of %d: got %d bytes, signature checked %v, %v", name, n, piece, len(got), signed, err)
				}
			}
			// Changed bytes: every byte of a small message, a sample of a
			// large one, and the last 40 (the MDC) always.
			step := max(1, len(msg)/300)
			for at := 0; at < len(msg); at++ {
				if at%step != 0 && at < len(msg)-40 {
					continue
				}
				bad := bytes.Clone(msg)
				bad[at] ^= 0x10
				got, _, err := openAll(v, bad, 4096)
				ref, refErr := goCryptoAll(bad)
				if refErr != nil && err == nil {
					t.Fatalf("%s, %d bytes: byte %d of %d changed: go-crypto fails (%v), open read it", name, n, at, len(msg), refErr)
				}
				if err == nil && !bytes.Equal(got, ref) {
					t.Fatalf("%s, %d bytes: byte %d changed: other bytes than go-crypto's", name, n, at)
				}
			}
		}
	}
}

// openAll reads a message through open in pieces of the given size, and
// reports whether a signature was checked and passed.
func openAll(v *verifier, msg []byte, piece int) ([]byte, bool, error) {
	md, err := v.open(bytes.NewReader(msg))
	if err != nil {
		return nil, false, err
	}
	var out []byte
	buf := make([]byte, piece)
	for {
		n, err := md.UnverifiedBody.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, md.IsSigned && md.SignatureError == nil, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}

// goCryptoAll reads a message the way go-crypto does by itself.
func goCryptoAll(msg []byte) ([]byte, error) {
	md, err := openpgp.ReadMessage(bytes.NewReader(msg), openpgp.EntityList{fixSvc, fixArts}, nil, &packet.Config{Time: func() time.Time { return t0 }})
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(md.UnverifiedBody)
	if err == nil && md.SignatureError != nil {
		err = md.SignatureError
	}
	return b, err
}

// isSEIPDv1 reports whether the message's encrypted data is a SEIPD
// packet of version 1, the kind decryptData decrypts itself.
func isSEIPDv1(t *testing.T, msg []byte) bool {
	t.Helper()
	r := packet.NewReader(bytes.NewReader(msg))
	for {
		p, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if se, ok := p.(*packet.SymmetricallyEncrypted); ok {
			return se.Version == 1 && se.IntegrityProtected
		}
	}
}
