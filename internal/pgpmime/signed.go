package pgpmime

import (
	"bufio"
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/emersion/go-message/textproto"

	_ "crypto/sha256" // hash functions a detached signature may name
	_ "crypto/sha512"
)

// maxSignaturePart bounds the application/pgp-signature part held in memory.
const maxSignaturePart = 64 << 10

// verifySignedPart handles RFC 3156 §6.1: the decrypted entity is
// multipart/signed. The first part is streamed to dst while it is hashed in
// canonical form (CRLF line ends, RFC 3156 §5) with every hash a signature
// may use, because the signature, and so its hash algorithm, comes after
// the content.
func (v *verifier) verifySignedPart(dst io.Writer, br *bufio.Reader, h textproto.Header) (SigStatus, error) {
	_, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
	delim := []byte("--" + params["boundary"])
	hashes := map[crypto.Hash]hash.Hash{
		crypto.SHA256: crypto.SHA256.New(),
		crypto.SHA384: crypto.SHA384.New(),
		crypto.SHA512: crypto.SHA512.New(),
		crypto.SHA224: crypto.SHA224.New(),
	}
	ws := make([]io.Writer, 0, len(hashes))
	for _, hh := range hashes {
		ws = append(ws, hh)
	}
	hw := io.MultiWriter(ws...)

	isDelim := func(line []byte) (is, closing bool) {
		t := bytes.TrimRight(line, " \t\r\n")
		if !bytes.HasPrefix(t, delim) {
			return false, false
		}
		rest := t[len(delim):]
		switch {
		case len(rest) == 0:
			return true, false
		case bytes.Equal(rest, []byte("--")):
			return true, true
		}
		return false, false
	}

	// Skip the header and the preamble up to the first delimiter.
	atStart := true
	for {
		line, err := br.ReadSlice('\n')
		if atStart {
			if is, _ := isDelim(line); is && len(line) > 0 && line[len(line)-1] == '\n' {
				break
			}
		}
		atStart = len(line) > 0 && line[len(line)-1] == '\n'
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return SigStatus{}, fmt.Errorf("%w: multipart/signed without parts: %v", ErrMalformed, err)
		}
	}

	// The signed part. The line end before a delimiter belongs to the
	// delimiter, so each line end is held back until the next line shows
	// it is content.
	var pendingEOL []byte
	atStart = true
	for {
		line, err := br.ReadSlice('\n')
		if atStart {
			if is, closing := isDelim(line); is {
				if closing {
					return SigStatus{}, fmt.Errorf("%w: multipart/signed without a signature part", ErrMalformed)
				}
				break
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) && len(line) == 0 {
			return SigStatus{}, fmt.Errorf("%w: multipart/signed ends inside the signed part: %v", ErrMalformed, err)
		}
		if pendingEOL != nil {
			if _, werr := dst.Write(pendingEOL); werr != nil {
				return SigStatus{}, werr
			}
			hw.Write([]byte("\r\n"))
			pendingEOL = nil
		}
		content := line
		atStart = false
		if n := len(line); n > 0 && line[n-1] == '\n' {
			atStart = true
			if n > 1 && line[n-2] == '\r' {
				content, pendingEOL = line[:n-2], []byte("\r\n")
			} else {
				content, pendingEOL = line[:n-1], []byte("\n")
			}
		}
		if _, werr := dst.Write(content); werr != nil {
			return SigStatus{}, werr
		}
		hw.Write(content)
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return SigStatus{}, fmt.Errorf("%w: multipart/signed ends inside the signed part: %v", ErrMalformed, err)
		}
	}

	// The signature part, up to the closing delimiter.
	var sigPart bytes.Buffer
	atStart = true
	for {
		line, err := br.ReadSlice('\n')
		if atStart {
			if is, _ := isDelim(line); is {
				break
			}
		}
		atStart = len(line) > 0 && line[len(line)-1] == '\n'
		sigPart.Write(line)
		if sigPart.Len() > maxSignaturePart {
			return SigStatus{}, fmt.Errorf("%w: signature part too large", ErrMalformed)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			break // tolerate a missing closing delimiter
		}
	}
	sig, err := parseDetachedSignature(sigPart.Bytes())
	if err != nil {
		return SigStatus{Status: StatusBadSignature, Err: err}, nil
	}
	st := SigStatus{SignerKeyID: fmt.Sprintf("%016X", *sig.IssuerKeyId)}
	el := append(openpgp.EntityList{v.svc.entity}, verifyList(v.keysOnFile())...)
	keys := el.KeysByIdUsage(*sig.IssuerKeyId, packet.KeyFlagSign)
	if len(keys) == 0 {
		st.Status = StatusUnknownSigner
		st.Err = fmt.Errorf("signed by key ID %s, which is not on file", st.SignerKeyID)
		return st, nil
	}
	hh, ok := hashes[sig.Hash]
	var sigErr error
	switch {
	case !ok:
		sigErr = fmt.Errorf("signature uses an unaccepted hash algorithm %v", sig.Hash)
	case sig.Version != 4:
		sigErr = fmt.Errorf("detached signature version %d is not supported", sig.Version)
	default:
		sigErr = keys[0].PublicKey.VerifySignature(hh, sig)
		if sigErr == nil && sig.SigExpired(v.now.Add(ClockSkew)) {
			sigErr = errors.New("signature expired")
		}
		if sigErr == nil && keys[0].PublicKey.KeyExpired(keys[0].SelfSignature, v.now.Add(ClockSkew)) {
			sigErr = errors.New("signing key expired")
		}
	}
	return v.judgeSigner(st, keys[0].Entity, sigErr), nil
}

func parseDetachedSignature(part []byte) (*packet.Signature, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(part)))
	if err != nil {
		return nil, fmt.Errorf("signature part: %v", err)
	}
	if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt != "application/pgp-signature" {
		return nil, fmt.Errorf("second part is %q, not application/pgp-signature", mt)
	}
	i := bytes.Index(part, []byte("-----BEGIN PGP SIGNATURE-----"))
	if i < 0 {
		return nil, errors.New("signature part holds no armored signature")
	}
	block, err := armor.Decode(bytes.NewReader(part[i:]))
	if err != nil {
		return nil, fmt.Errorf("signature armor: %v", err)
	}
	p, err := packet.Read(block.Body)
	if err != nil {
		return nil, fmt.Errorf("signature packet: %v", err)
	}
	sig, ok := p.(*packet.Signature)
	if !ok || sig.IssuerKeyId == nil {
		return nil, errors.New("signature part holds no signature with an issuer")
	}
	return sig, nil
}
