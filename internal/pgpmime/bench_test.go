package pgpmime

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"secondopinion/internal/testenv"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// patternReader yields n pseudo-random (incompressible) bytes without
// holding them: a 64 KiB block repeated with a changing offset.
type patternReader struct {
	block []byte
	n, i  int
}

func newPatternReader(n int) *patternReader {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return &patternReader{block: b, n: n}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	k := min(len(b), p.n, len(p.block)-p.i%len(p.block))
	copy(b, p.block[p.i%len(p.block):][:k])
	p.i += k + 7
	p.n -= k
	return k, nil
}

var benchSizes = []struct {
	name string
	n    int
}{{"1MB", 1 << 20}, {"50MB", 50 << 20}}

// BenchmarkWriteEncrypted: compose + sign + encrypt + armor a mail with one
// attachment, streamed to io.Discard.
func BenchmarkWriteEncrypted(b *testing.B) {
	fixtures(b)
	svc := serviceFromEntity(fixSvc)
	to := []*PublicKey{publicFromEntity(b, fixArts, "arts@example.test")}
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(int64(size.n))
			var peak uint64
			for b.Loop() {
				m := &Message{Header: testHeader("so@service.example.test", "arts@example.test"), Text: "Stukken.\n",
					Attachments: []Attachment{{Filename: "dossier.pdf", ContentType: "application/pdf", Open: func() (io.ReadCloser, error) {
						return io.NopCloser(newPatternReader(size.n)), nil
					}}}}
				p := testenv.HeapRise(func() {
					if err := WriteEncrypted(io.Discard, m, to, svc, t0); err != nil {
						b.Fatal(err)
					}
				})
				peak = max(peak, p)
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		})
	}
}

// BenchmarkDecrypt: parse + decrypt + verify such a mail from a file,
// the decrypted entity streamed to io.Discard.
func BenchmarkDecrypt(b *testing.B) {
	fixtures(b)
	svc := serviceFromEntity(fixSvc)
	kr := keysDir(b, map[string]*openpgp.Entity{"arts@example.test": fixArts})
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "mail.eml")
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			m := &Message{Header: testHeader("arts@example.test", "so@service.example.test"), Text: "Advies.\n",
				Attachments: []Attachment{{Filename: "advies.pdf", Open: func() (io.ReadCloser, error) {
					return io.NopCloser(newPatternReader(size.n)), nil
				}}}}
			if err := WriteEncrypted(f, m, []*PublicKey{svc.Public()}, serviceFromEntity(fixArts), t0); err != nil {
				b.Fatal(err)
			}
			f.Close()
			b.SetBytes(int64(size.n))
			var peak uint64
			for b.Loop() {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				p := testenv.HeapRise(func() {
					d, err := Decrypt(io.Discard, f, svc, kr, t0)
					if err != nil || d.Signature.Status != StatusValid {
						b.Fatalf("%v %+v", err, d)
					}
				})
				f.Close()
				peak = max(peak, p)
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		})
	}
}

// BenchmarkSeal: seal a document to the service key into a file and open
// it again, as a received document and its forwarding do.
func BenchmarkSeal(b *testing.B) {
	fixtures(b)
	svc := serviceFromEntity(fixSvc)
	path := filepath.Join(b.TempDir(), "sealed")
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(int64(size.n))
			for b.Loop() {
				f, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				if err := SealForService(f, newPatternReader(size.n), svc, t0); err != nil {
					b.Fatal(err)
				}
				f.Seek(0, io.SeekStart)
				if err := OpenSealed(io.Discard, f, svc, t0); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}
