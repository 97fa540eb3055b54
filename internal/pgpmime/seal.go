package pgpmime

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// ErrSealBroken means a sealed document did not open: it is not encrypted to
// the service key, not signed by it, or it was altered.
var ErrSealBroken = errors.New("sealed document does not verify")

// SealForService streams r to w as a binary OpenPGP message encrypted to the
// service key and signed by it, at now. Documents are kept only in this form
// (DESIGN: documents are stored encrypted to the service key).
func SealForService(w io.Writer, r io.Reader, svc *ServiceKey, now time.Time) error {
	if _, ok := svc.entity.EncryptionKey(now); !ok {
		return fmt.Errorf("seal: the service key %s cannot encrypt at %s", svc.Fingerprint(), now.UTC().Format(time.RFC3339))
	}
	pw, err := openpgp.Encrypt(w, []*openpgp.Entity{svc.entity}, svc.entity, &openpgp.FileHints{IsBinary: true, ModTime: now}, messageConfig(now))
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if _, err := io.Copy(pw, r); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	return nil
}

// OpenSealed streams the document sealed by SealForService from r to w. The
// signature and integrity are known only at the end: on an error the caller
// must discard what was written (decrypt into a temporary file or straight
// into the re-encryption, and commit only on nil).
func OpenSealed(w io.Writer, r io.Reader, svc *ServiceKey, now time.Time) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrSealBroken, p)
		}
	}()
	md, err := openpgp.ReadMessage(r, openpgp.EntityList{svc.entity}, nil, (&verifier{now: now}).config())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSealBroken, err)
	}
	if !md.IsEncrypted || !md.IsSigned || md.SignedBy == nil || md.SignedBy.Entity != svc.entity {
		return fmt.Errorf("%w: not sealed by the service key", ErrSealBroken)
	}
	if _, err := io.Copy(w, md.UnverifiedBody); err != nil {
		return fmt.Errorf("%w: %v", ErrSealBroken, err)
	}
	if md.SignatureError != nil {
		return fmt.Errorf("%w: %v", ErrSealBroken, md.SignatureError)
	}
	return nil
}
