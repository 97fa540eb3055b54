package pgpmime

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// ErrNoUsableKey means a recipient has no key that may be used now: none on
// file, or the one on file is expired, revoked, too weak, cannot encrypt or
// does not belong to the address. Medical content must then not be sent;
// the caller sends a content-free notice and alerts the backoffice.
var ErrNoUsableKey = errors.New("no usable OpenPGP key")

// MinRSABits is the smallest RSA (or other finite-field) key size accepted.
const MinRSABits = 3072

// WarnBefore is how long before expiry a key is reported as expiring soon.
const WarnBefore = 30 * 24 * time.Hour

// Problem names why a key is unusable, for callers that branch on it.
type Problem string

// The problems Judge reports.
const (
	ProblemNone        Problem = ""
	ProblemMissing     Problem = "missing"    // no key on file for the address
	ProblemUnreadable  Problem = "unreadable" // the key file does not parse
	ProblemRevoked     Problem = "revoked"
	ProblemExpired     Problem = "expired"
	ProblemNotYetValid Problem = "not-yet-valid"     // created after the moment judged
	ProblemNoEncrypt   Problem = "no-encryption-key" // no encryption-capable (sub)key valid now
	ProblemWeak        Problem = "weak-key"          // RSA/DSA/ElGamal under MinRSABits
	ProblemUserID      Problem = "user-id-mismatch"  // no valid user ID with the address
)

// Verdict is the judgement of one key for one address at one moment.
type Verdict struct {
	Usable  bool
	Problem Problem
	// Reason explains Problem in a sentence (English) for the backoffice.
	Reason      string
	Fingerprint string
	UserIDs     []string
	Created     time.Time
	// Expires is when the key (or its encryption subkey, whichever comes
	// first) expires; zero when it does not.
	Expires time.Time
	// ExpiresSoon is set when Expires is within WarnBefore of the moment
	// judged.
	ExpiresSoon bool
}

// Err returns nil for a usable key and otherwise an error wrapping
// ErrNoUsableKey with the reason.
func (v Verdict) Err() error {
	if v.Usable {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNoUsableKey, v.Reason)
}

// Judge decides whether key may be used now to encrypt to address (and to
// verify that address's signatures). A key is unusable when it is revoked or
// expired, has no encryption-capable (sub)key valid at now, uses RSA (DSA,
// ElGamal) under MinRSABits, or has no valid user ID whose e-mail address
// equals address (case-insensitive).
func Judge(key *PublicKey, address string, now time.Time) Verdict {
	if key == nil || key.entity == nil {
		return Verdict{Problem: ProblemMissing, Reason: "no key on file"}
	}
	e := key.entity
	v := Verdict{
		Fingerprint: fingerprint(e),
		UserIDs:     userIDs(e),
		Created:     e.PrimaryKey.CreationTime,
	}
	selfSig, _ := e.PrimarySelfSignature()
	v.Expires = keyExpiry(e.PrimaryKey, selfSig)
	encKey, canEncrypt := e.EncryptionKey(now)
	if canEncrypt && encKey.PublicKey != e.PrimaryKey {
		if t := keyExpiry(encKey.PublicKey, encKey.SelfSignature); !t.IsZero() && (v.Expires.IsZero() || t.Before(v.Expires)) {
			v.Expires = t
		}
	}
	if !v.Expires.IsZero() && now.Before(v.Expires) && v.Expires.Sub(now) <= WarnBefore {
		v.ExpiresSoon = true
	}
	fail := func(p Problem, format string, args ...any) Verdict {
		v.Problem = p
		v.Reason = fmt.Sprintf(format, args...)
		return v
	}
	switch {
	case e.Revoked(now):
		return fail(ProblemRevoked, "key %s is revoked", v.Fingerprint)
	case e.PrimaryKey.CreationTime.After(now):
		return fail(ProblemNotYetValid, "key %s is not valid before %s", v.Fingerprint, e.PrimaryKey.CreationTime.UTC().Format(time.RFC3339))
	case selfSig == nil:
		return fail(ProblemUnreadable, "key %s has no valid self-signature", v.Fingerprint)
	case e.PrimaryKey.KeyExpired(selfSig, now) || selfSig.SigExpired(now):
		return fail(ProblemExpired, "key %s expired on %s", v.Fingerprint, expiryText(v.Expires))
	}
	if bits, weak := weakKey(e.PrimaryKey); weak {
		return fail(ProblemWeak, "key %s is %s with %d bits; at least %d are required", v.Fingerprint, algoName(e.PrimaryKey.PubKeyAlgo), bits, MinRSABits)
	}
	if !canEncrypt {
		if sub := expiredEncryptionSubkey(e, now); !sub.IsZero() {
			return fail(ProblemExpired, "the encryption subkey of key %s expired on %s", v.Fingerprint, expiryText(sub))
		}
		return fail(ProblemNoEncrypt, "key %s has no encryption-capable subkey that is valid now", v.Fingerprint)
	}
	if bits, weak := weakKey(encKey.PublicKey); weak {
		return fail(ProblemWeak, "the encryption subkey of key %s is %s with %d bits; at least %d are required", v.Fingerprint, algoName(encKey.PublicKey.PubKeyAlgo), bits, MinRSABits)
	}
	want := strings.ToLower(strings.TrimSpace(address))
	matched := false
	for _, id := range e.Identities {
		if id.SelfSignature == nil || id.Revoked(now) || id.SelfSignature.SigExpired(now) {
			continue
		}
		if strings.EqualFold(strings.TrimSpace(id.UserId.Email), want) && want != "" {
			matched = true
			break
		}
	}
	if !matched {
		return fail(ProblemUserID, "key %s has no valid user ID with the address %q (it has: %s)", v.Fingerprint, address, strings.Join(v.UserIDs, "; "))
	}
	v.Usable = true
	return v
}

func keyExpiry(pk *packet.PublicKey, sig *packet.Signature) time.Time {
	if pk == nil || sig == nil || sig.KeyLifetimeSecs == nil || *sig.KeyLifetimeSecs == 0 {
		return time.Time{}
	}
	return pk.CreationTime.Add(time.Duration(*sig.KeyLifetimeSecs) * time.Second)
}

// expiredEncryptionSubkey returns the latest expiry among encryption subkeys
// that are otherwise valid but expired at now, so the reason can say
// "expired" rather than "none".
func expiredEncryptionSubkey(e *openpgp.Entity, now time.Time) time.Time {
	var latest time.Time
	for _, sk := range e.Subkeys {
		if sk.Sig == nil || !sk.Sig.FlagsValid || !sk.Sig.FlagEncryptCommunications || sk.Revoked(now) {
			continue
		}
		if sk.PublicKey.KeyExpired(sk.Sig, now) {
			if t := keyExpiry(sk.PublicKey, sk.Sig); t.After(latest) {
				latest = t
			}
		}
	}
	return latest
}

func weakKey(pk *packet.PublicKey) (int, bool) {
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoRSASignOnly,
		packet.PubKeyAlgoDSA, packet.PubKeyAlgoElGamal:
		bits, err := pk.BitLength()
		if err != nil {
			return 0, true
		}
		return int(bits), int(bits) < MinRSABits
	}
	return 0, false
}

func algoName(a packet.PublicKeyAlgorithm) string {
	switch a {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoRSASignOnly:
		return "RSA"
	case packet.PubKeyAlgoDSA:
		return "DSA"
	case packet.PubKeyAlgoElGamal:
		return "ElGamal"
	}
	return fmt.Sprintf("algorithm %d", a)
}

func expiryText(t time.Time) string {
	if t.IsZero() {
		return "an unknown date"
	}
	return t.UTC().Format("2006-01-02")
}
