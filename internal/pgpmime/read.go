package pgpmime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Errors of the reader that callers branch on. Any of them means the message
// is quarantined with the reason; none is ever acted upon.
var (
	// ErrNotEncrypted: the message holds no OpenPGP encrypted content
	// (plain mail, or a signed-only OpenPGP message).
	ErrNotEncrypted = errors.New("message is not OpenPGP encrypted")
	// ErrNotForUs: the message is encrypted, but not to the service key.
	ErrNotForUs = errors.New("message is not encrypted to the service key")
	// ErrMalformed: the structure or the OpenPGP data is broken, or the
	// integrity check failed.
	ErrMalformed = errors.New("malformed OpenPGP message")
	// ErrNotAuthenticated: the signature does not show that the registered
	// key of the sender signed the content (see RequireSignedBy).
	ErrNotAuthenticated = errors.New("content not signed by the sender's registered key")
)

// Status is the outcome of signature verification.
type Status int

// The verification outcomes.
const (
	StatusUnsigned      Status = iota // no signature
	StatusValid                       // good signature by the sender's registered, usable key
	StatusBadSignature                // a signature that does not verify
	StatusUnknownSigner               // signed by a key that is not on file
	StatusWrongSigner                 // good signature by a key on file, but not the sender's
	StatusUnusableKey                 // signed by the sender's key, which is expired, revoked or too weak
)

func (s Status) String() string {
	switch s {
	case StatusUnsigned:
		return "unsigned"
	case StatusValid:
		return "valid"
	case StatusBadSignature:
		return "bad signature"
	case StatusUnknownSigner:
		return "unknown signer"
	case StatusWrongSigner:
		return "wrong signer"
	case StatusUnusableKey:
		return "signer key unusable"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// SigStatus is the verification result as data.
type SigStatus struct {
	Status Status
	// SignerFingerprint is the signer's primary key fingerprint when the
	// key is on file; otherwise SignerKeyID holds the issuer key ID.
	SignerFingerprint string
	SignerKeyID       string
	// SignerAddress is the address the signer's key is registered for,
	// when it is on file.
	SignerAddress string
	Err           error // detail for anything but Valid and Unsigned
}

// Kind is the way the message was protected.
type Kind int

// The kinds of protected messages Read understands.
const (
	KindPGPMIME       Kind = iota + 1 // RFC 3156 §6.2: signed and encrypted in one OpenPGP message
	KindPGPMIMESigned                 // RFC 3156 §6.1: multipart/signed inside the encryption
	KindInline                        // armored message in a text/plain body
)

func (k Kind) String() string {
	switch k {
	case KindPGPMIME:
		return "PGP/MIME"
	case KindPGPMIMESigned:
		return "PGP/MIME (signed part)"
	case KindInline:
		return "inline PGP"
	}
	return "unknown"
}

// Decrypted describes a decrypted message.
type Decrypted struct {
	Kind Kind
	// From is the address in the outer From header (lower case); empty
	// when there is not exactly one.
	From string
	// Header is the outer header, for threading (Message-ID,
	// In-Reply-To) and the reply token.
	Header    textproto.Header
	Signature SigStatus
	// Inner is the decrypted MIME entity; only Read fills it (Decrypt
	// streams it to its writer). For inline PGP it is a text/plain entity
	// around the decrypted text.
	Inner []byte
}

// MaxInner bounds what Read holds in memory; use Decrypt for more.
const MaxInner = 32 << 20

// Read is Decrypt into memory, for messages up to MaxInner.
func Read(r io.Reader, svc *ServiceKey, keys *Keyring, now time.Time) (*Decrypted, error) {
	var buf bytes.Buffer
	// The decrypted entity is about 3/4 of the armored message: allocate
	// that once rather than doubling up to it, which clears (and, in a
	// growing heap, faults in) twice the memory.
	if n := remaining(r); n > 0 {
		buf.Grow(int(min(n/4*3+64<<10, MaxInner)))
	}
	lw := &limitWriter{w: &buf, n: MaxInner}
	d, err := Decrypt(lw, r, svc, keys, now)
	if err != nil {
		return d, err
	}
	d.Inner = buf.Bytes()
	return d, nil
}

// Decrypt reads a full RFC 5322 message from r, decrypts it with the service
// key, verifies its signature against the keys on file at now, and writes
// the decrypted MIME entity to dst. The sender's registered key is the one
// on file for the outer From address; the signature is Valid only when
// that key signed. dst receives data before the integrity and signature
// checks end: on an error, or a status other than Valid, the caller must
// discard what was written.
func Decrypt(dst io.Writer, r io.Reader, svc *ServiceKey, keys *Keyring, now time.Time) (d *Decrypted, err error) {
	defer func() {
		// Parsers never panic out of the API, whatever the input.
		if p := recover(); p != nil {
			d, err = nil, fmt.Errorf("%w: %v", ErrMalformed, p)
		}
	}()
	if svc == nil {
		return nil, errors.New("decrypt: no service key")
	}
	e, err := message.Read(bufio.NewReaderSize(r, 64<<10))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	d = &Decrypted{Header: e.Header.Header}
	if addrs, err := (&mail.Header{Header: e.Header}).AddressList("From"); err == nil && len(addrs) == 1 {
		if a, err := NormalizeAddress(addrs[0].Address); err == nil {
			d.From = a
		}
	}
	v := &verifier{svc: svc, keys: keys, now: now, from: d.From}

	mt, params, _ := e.Header.ContentType()
	switch {
	case mt == "multipart/encrypted":
		if !strings.EqualFold(params["protocol"], "application/pgp-encrypted") {
			return d, fmt.Errorf("%w: multipart/encrypted with protocol %q", ErrNotEncrypted, params["protocol"])
		}
		body, err := encryptedPart(e)
		if err != nil {
			return d, err
		}
		d.Kind = KindPGPMIME
		kind, err := v.decryptMIME(dst, body, &d.Signature)
		if kind != 0 {
			d.Kind = kind
		}
		return d, err
	default:
		block, err := findInline(e, 0)
		if err != nil {
			return d, err
		}
		d.Kind = KindInline
		if _, err := io.WriteString(dst, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"); err != nil {
			return d, err
		}
		md, err := v.open(block)
		if err != nil {
			return d, err
		}
		if _, err := io.Copy(dst, md.UnverifiedBody); err != nil {
			return d, readError(err)
		}
		d.Signature = v.status(md)
		return d, nil
	}
}

// encryptedPart returns the body of the application/octet-stream part of a
// multipart/encrypted entity (RFC 3156 §4).
func encryptedPart(e *message.Entity) (io.Reader, error) {
	mr := e.MultipartReader()
	if mr == nil {
		return nil, fmt.Errorf("%w: multipart/encrypted without parts", ErrMalformed)
	}
	ctl, err := mr.NextPart()
	if err != nil {
		return nil, fmt.Errorf("%w: multipart/encrypted: %v", ErrMalformed, err)
	}
	if mt, _, _ := ctl.Header.ContentType(); mt != "application/pgp-encrypted" {
		return nil, fmt.Errorf("%w: first part is %q, not application/pgp-encrypted", ErrMalformed, mt)
	}
	if _, err := io.Copy(io.Discard, io.LimitReader(ctl.Body, 1<<16)); err != nil {
		return nil, fmt.Errorf("%w: control part: %v", ErrMalformed, err)
	}
	p, err := mr.NextPart()
	if err != nil {
		return nil, fmt.Errorf("%w: multipart/encrypted without the encrypted part: %v", ErrMalformed, err)
	}
	if mt, _, _ := p.Header.ContentType(); mt != "application/octet-stream" {
		return nil, fmt.Errorf("%w: second part is %q, not application/octet-stream", ErrMalformed, mt)
	}
	return p.Body, nil
}

// findInline looks for an armored PGP MESSAGE in the first text/plain part
// that holds one, depth first.
func findInline(e *message.Entity, depth int) (io.Reader, error) {
	if depth > 8 {
		return nil, fmt.Errorf("%w: MIME nesting too deep", ErrMalformed)
	}
	mt, _, _ := e.Header.ContentType()
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return nil, ErrNotEncrypted
			}
			if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			if p == nil {
				return nil, ErrNotEncrypted
			}
			b, err := findInline(p, depth+1)
			if err == nil || !errors.Is(err, ErrNotEncrypted) {
				return b, err
			}
		}
	}
	if mt != "text/plain" && mt != "" {
		return nil, ErrNotEncrypted
	}
	typ, ar, err := openArmor(bufio.NewReaderSize(e.Body, 64<<10))
	switch {
	case errors.Is(err, io.EOF):
		return nil, ErrNotEncrypted
	case typ == "PGP SIGNED MESSAGE":
		return nil, fmt.Errorf("%w: inline signed but not encrypted", ErrNotEncrypted)
	case typ != "PGP MESSAGE":
		return nil, fmt.Errorf("%w: inline block %q", ErrNotEncrypted, typ)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return ar, nil
}

// verifier decrypts with the service key and judges signatures against the
// keys on file.
type verifier struct {
	svc  *ServiceKey
	keys *Keyring
	now  time.Time
	from string

	onFile []*PublicKey // loaded on first use
	loaded bool
}

func (v *verifier) keysOnFile() []*PublicKey {
	if !v.loaded {
		v.onFile = v.keys.all()
		v.loaded = true
	}
	return v.onFile
}

// ClockSkew is how far a sender's clock may run ahead of ours: go-crypto
// rejects a signature made "in the future", so signatures are checked at
// now+ClockSkew (which only makes the expiry checks stricter by as much).
const ClockSkew = 5 * time.Minute

func (v *verifier) config() *packet.Config {
	at := v.now.Add(ClockSkew)
	return &packet.Config{Time: func() time.Time { return at }}
}

// open starts decrypting one OpenPGP message (armored input already
// unwrapped, or binary). It is openpgp.ReadMessage for a message that must
// be encrypted to the service key, with the encrypted data decrypted by
// decryptData; what is inside (compression, literal data, signatures) is
// go-crypto's ReadMessage again. The integrity check runs when
// UnverifiedBody ends, as go-crypto's does.
func (v *verifier) open(r io.Reader) (*openpgp.MessageDetails, error) {
	cfg := v.config()
	packets := packet.NewReader(r)
	var (
		keys []*packet.EncryptedKey
		ids  []uint64
		data packet.EncryptedDataPacket
	)
	for data == nil {
		p, err := packets.Next()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch p := p.(type) {
		case *packet.EncryptedKey:
			ids = append(ids, p.KeyId)
			keys = append(keys, p)
		case *packet.SymmetricallyEncrypted:
			if !p.IntegrityProtected {
				return nil, fmt.Errorf("%w: encrypted without integrity protection", ErrMalformed)
			}
			data = p
		case *packet.AEADEncrypted:
			data = p
		case *packet.Compressed, *packet.LiteralData, *packet.OnePassSignature:
			return nil, ErrNotEncrypted
		}
		// Other packets (a passphrase's session key, markers) are passed
		// over, as go-crypto does.
	}
	svc := openpgp.EntityList{v.svc.entity}
	var (
		plain io.ReadCloser
		with  openpgp.Key
	)
find:
	for _, ek := range keys {
		cands := svc.KeysById(ek.KeyId)
		if ek.KeyId == 0 { // an anonymous recipient
			cands = svc.DecryptionKeys()
		}
		for _, k := range cands {
			if k.PrivateKey == nil || k.PrivateKey.Encrypted {
				continue
			}
			if len(ek.Key) == 0 && ek.Decrypt(k.PrivateKey, cfg) != nil {
				continue
			}
			var err error
			plain, err = decryptData(data, ek.CipherFunc, ek.Key)
			if err != nil && !errors.Is(err, pgperrors.ErrKeyIncorrect) {
				return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			if plain != nil {
				with = k
				break find
			}
		}
	}
	if plain == nil {
		return nil, ErrNotForUs
	}
	el := append(svc, verifyList(v.keysOnFile())...)
	md, err := openpgp.ReadMessage(plain, el, nil, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if md.IsEncrypted {
		return nil, fmt.Errorf("%w: an encrypted message inside the encrypted message", ErrMalformed)
	}
	md.IsEncrypted, md.EncryptedToKeyIds, md.DecryptedWith = true, ids, with
	md.UnverifiedBody = &checkAtEnd{r: md.UnverifiedBody, c: plain}
	return md, nil
}

// checkAtEnd reads r and, at its end, closes c, the decryption, whose Close
// runs the integrity check: the end is an error unless it passed.
type checkAtEnd struct {
	r   io.Reader
	c   io.Closer
	err error
}

func (e *checkAtEnd) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.r.Read(p)
	if err == io.EOF {
		if cerr := e.c.Close(); cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		e.err = err
	}
	return n, err
}

// readError classifies an error while reading decrypted data: an integrity
// (MDC/AEAD) failure or truncation makes the message malformed.
func readError(err error) error {
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

// status turns the details of a fully read message into a SigStatus.
func (v *verifier) status(md *openpgp.MessageDetails) SigStatus {
	if !md.IsSigned {
		return SigStatus{Status: StatusUnsigned}
	}
	st := SigStatus{SignerKeyID: fmt.Sprintf("%016X", md.SignedByKeyId)}
	if md.SignedBy == nil {
		st.Status = StatusUnknownSigner
		st.Err = fmt.Errorf("signed by key ID %s, which is not on file", st.SignerKeyID)
		return st
	}
	return v.judgeSigner(st, md.SignedBy.Entity, md.SignatureError)
}

// judgeSigner decides the status once the signing entity is known and the
// cryptographic check has run (sigErr).
func (v *verifier) judgeSigner(st SigStatus, signer *openpgp.Entity, sigErr error) SigStatus {
	st.SignerFingerprint = fingerprint(signer)
	for _, k := range v.keysOnFile() {
		if k.entity == signer {
			st.SignerAddress = k.Address
		}
	}
	if signer == v.svc.entity {
		st.SignerAddress = "(service key)"
	}
	registered := v.registered()
	isRegistered := registered != nil && registered.Fingerprint() == st.SignerFingerprint
	switch {
	case isRegistered && !Judge(registered, v.from, v.now).Usable:
		st.Status = StatusUnusableKey
		st.Err = Judge(registered, v.from, v.now).Err()
	case sigErr != nil:
		st.Status = StatusBadSignature
		st.Err = sigErr
	case !isRegistered:
		st.Status = StatusWrongSigner
		if registered == nil {
			st.Err = fmt.Errorf("signed by %s (%s), but no key is registered for the sender %q", st.SignerFingerprint, st.SignerAddress, v.from)
		} else {
			st.Err = fmt.Errorf("signed by %s (%s), but the sender %q has key %s", st.SignerFingerprint, st.SignerAddress, v.from, registered.Fingerprint())
		}
	default:
		st.Status = StatusValid
	}
	return st
}

// registered returns the key on file for the sender, usable or not.
func (v *verifier) registered() *PublicKey {
	if v.from == "" || v.keys == nil {
		return nil
	}
	k, _, _ := v.keys.Lookup(v.from, v.now)
	return k
}

// RequireSignedBy returns nil only when d's signature is Valid and, when
// expected is not nil, made by expected. Anything else wraps
// ErrNotAuthenticated with the reason, for the quarantine.
func RequireSignedBy(d *Decrypted, expected *PublicKey) error {
	if d == nil {
		return fmt.Errorf("%w: nothing decrypted", ErrNotAuthenticated)
	}
	s := d.Signature
	if s.Status != StatusValid {
		if s.Err != nil {
			return fmt.Errorf("%w: %s: %v", ErrNotAuthenticated, s.Status, s.Err)
		}
		return fmt.Errorf("%w: %s", ErrNotAuthenticated, s.Status)
	}
	if expected != nil && expected.Fingerprint() != s.SignerFingerprint {
		return fmt.Errorf("%w: signed by %s, expected %s", ErrNotAuthenticated, s.SignerFingerprint, expected.Fingerprint())
	}
	return nil
}

// decryptMIME decrypts the armored payload of a PGP/MIME message. When the
// decrypted entity is itself multipart/signed (RFC 3156 §6.1) it verifies
// the detached signature and writes only the signed part to dst.
func (v *verifier) decryptMIME(dst io.Writer, body io.Reader, st *SigStatus) (Kind, error) {
	br := bufio.NewReaderSize(body, 64<<10)
	var payload io.Reader = br
	if peek, _ := br.Peek(64); len(peek) == 0 || peek[0]&0x80 == 0 {
		// Armored, as RFC 3156 §4 requires; a binary OpenPGP message
		// starts with a packet tag, whose top bit is set.
		typ, ar, err := openArmor(br)
		if err != nil {
			return 0, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if typ != "PGP MESSAGE" {
			return 0, fmt.Errorf("%w: armored %q, not a PGP MESSAGE", ErrMalformed, typ)
		}
		payload = ar
	}
	md, err := v.open(payload)
	if err != nil {
		return 0, err
	}
	plain := bufio.NewReaderSize(&stickyEOF{r: md.UnverifiedBody}, 64<<10)
	h, signed, err := peekSigned(plain)
	if err != nil {
		return 0, err
	}
	if !signed {
		if _, err := io.Copy(dst, plain); err != nil {
			return 0, readError(err)
		}
		*st = v.status(md)
		return KindPGPMIME, nil
	}
	s, err := v.verifySignedPart(dst, plain, h)
	if err != nil {
		return KindPGPMIMESigned, err
	}
	// Drain to the end so the integrity check of the encryption runs.
	if _, err := io.Copy(io.Discard, plain); err != nil {
		return KindPGPMIMESigned, readError(err)
	}
	*st = s
	return KindPGPMIMESigned, nil
}

// peekSigned looks at the header of the decrypted entity, without consuming
// it, and reports whether it is multipart/signed with OpenPGP.
func peekSigned(br *bufio.Reader) (textproto.Header, bool, error) {
	var peek []byte
	for n := 512; ; n *= 2 {
		p, err := br.Peek(n)
		peek = p
		if bytes.Contains(p, []byte("\r\n\r\n")) || bytes.Contains(p, []byte("\n\n")) || err != nil || n >= br.Size() {
			break
		}
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(peek)))
	if err != nil {
		return textproto.Header{}, false, nil // not a MIME header; passed on as is
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/signed" || !strings.EqualFold(params["protocol"], "application/pgp-signature") || params["boundary"] == "" {
		return h, false, nil
	}
	return h, true, nil
}

// remaining is how many bytes r has left to read, when r can tell (a file
// or an in-memory reader), else 0.
func remaining(r io.Reader) int64 {
	switch r := r.(type) {
	case interface{ Len() int }:
		return int64(r.Len())
	case *os.File:
		fi, err := r.Stat()
		if err != nil {
			return 0
		}
		pos, err := r.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0
		}
		return fi.Size() - pos
	}
	return 0
}

// limitWriter fails once more than n bytes are written.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, fmt.Errorf("decrypted content exceeds %d bytes; use Decrypt with a file", MaxInner)
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// stickyEOF keeps returning the first error (EOF included) of r: go-crypto's
// signature reader must not be read again after its EOF, and bufio reads
// again after handing out a Peek's EOF.
type stickyEOF struct {
	r   io.Reader
	err error
}

func (s *stickyEOF) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	s.err = err
	return n, err
}
