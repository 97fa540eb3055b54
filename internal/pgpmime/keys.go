package pgpmime

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	pgpcrypto "github.com/ProtonMail/gopenpgp/v2/crypto"
)

// ServiceKey is the service's own unlocked private key. It signs what the
// service sends and decrypts what is sent to it and the documents it keeps.
type ServiceKey struct {
	entity *openpgp.Entity
}

// PublicKey is a participant's public key as registered in the keys
// directory, together with the address it is registered for (the file name).
type PublicKey struct {
	// Address is the lower-case e-mail address the key is registered for;
	// empty for a key not (yet) in the keys directory.
	Address string
	entity  *openpgp.Entity
}

// LoadServiceKey reads the armored private key at path and unlocks it with
// passphrase (nil or empty when the key is not protected). The caller reads
// the passphrase from a file or the environment; it is never logged here.
func LoadServiceKey(path string, passphrase []byte) (*ServiceKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("service key: %w", err)
	}
	return ParseServiceKey(data, passphrase)
}

// ParseServiceKey is LoadServiceKey for key bytes already in memory.
func ParseServiceKey(armored []byte, passphrase []byte) (*ServiceKey, error) {
	key, err := pgpcrypto.NewKeyFromArmoredReader(bytes.NewReader(armored))
	if err != nil {
		return nil, fmt.Errorf("service key: read: %w", err)
	}
	if !key.IsPrivate() {
		return nil, errors.New("service key: the file holds a public key; a private key is needed")
	}
	locked, err := key.IsLocked()
	if err != nil {
		return nil, fmt.Errorf("service key: %w", err)
	}
	if locked {
		if len(passphrase) == 0 {
			return nil, errors.New("service key: the key is passphrase-protected and no passphrase was given")
		}
		key, err = key.Unlock(passphrase)
		if err != nil {
			return nil, errors.New("service key: wrong passphrase")
		}
	}
	return &ServiceKey{entity: key.GetEntity()}, nil
}

// GenerateServiceKey makes a new service key (Ed25519 signing primary key
// with an X25519 encryption subkey, created at now, no expiry) for the given
// name and address, and returns it armored. With a non-empty passphrase the
// secret key material is encrypted with it.
func GenerateServiceKey(name, email string, now time.Time, passphrase []byte) ([]byte, error) {
	return GenerateKey(name, email, now, 0, passphrase)
}

// GenerateKey makes an Ed25519/X25519 key pair created at now that expires
// after lifetime (0: never), and returns the armored private key. Besides
// the service key it makes the keys of the demo's and the tests'
// participants, among them keys that have already expired.
func GenerateKey(name, email string, now time.Time, lifetime time.Duration, passphrase []byte) ([]byte, error) {
	addr, err := NormalizeAddress(email)
	if err != nil {
		return nil, fmt.Errorf("generate service key: %w", err)
	}
	cfg := &packet.Config{
		Algorithm:       packet.PubKeyAlgoEdDSA,
		Curve:           packet.Curve25519,
		DefaultHash:     crypto.SHA256,
		DefaultCipher:   packet.CipherAES256,
		Time:            func() time.Time { return now },
		KeyLifetimeSecs: uint32(lifetime / time.Second),
	}
	e, err := openpgp.NewEntity(name, "", addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("generate service key: %w", err)
	}
	// Self-signatures are made when serializing; do it before locking.
	var raw bytes.Buffer
	if err := e.SerializePrivate(&raw, cfg); err != nil {
		return nil, fmt.Errorf("generate service key: %w", err)
	}
	if len(passphrase) > 0 {
		if e, err = openpgp.ReadEntity(packet.NewReader(&raw)); err != nil {
			return nil, fmt.Errorf("generate service key: %w", err)
		}
		if err := e.EncryptPrivateKeys(passphrase, cfg); err != nil {
			return nil, fmt.Errorf("generate service key: protect: %w", err)
		}
		raw.Reset()
		if err := e.SerializePrivateWithoutSigning(&raw, cfg); err != nil {
			return nil, fmt.Errorf("generate service key: %w", err)
		}
	}
	var out bytes.Buffer
	aw, err := armor.Encode(&out, openpgp.PrivateKeyType, nil)
	if err != nil {
		return nil, err
	}
	if _, err := aw.Write(raw.Bytes()); err != nil {
		return nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// Fingerprint is the hex fingerprint of the service key's primary key.
func (s *ServiceKey) Fingerprint() string { return fingerprint(s.entity) }

// Public returns the service key's public part, registered for the address
// of its primary user ID.
func (s *ServiceKey) Public() *PublicKey {
	var pub bytes.Buffer
	if err := s.entity.Serialize(&pub); err == nil {
		if e, err := openpgp.ReadEntity(packet.NewReader(&pub)); err == nil {
			return &PublicKey{Address: primaryAddress(e), entity: e}
		}
	}
	// Serialize of a loaded entity does not fail; fall back to sharing it.
	return &PublicKey{Address: primaryAddress(s.entity), entity: s.entity}
}

// ArmoredPublic returns the service key's public key, armored, to hand to
// the physicians.
func (s *ServiceKey) ArmoredPublic() ([]byte, error) { return s.Public().Armored() }

// ReadPublicKeys reads one or more public keys, armored or binary. Secret key
// material in the input is dropped.
func ReadPublicKeys(r io.Reader) ([]*PublicKey, error) {
	data, err := io.ReadAll(io.LimitReader(r, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	var el openpgp.EntityList
	if bytes.Contains(data, []byte("-----BEGIN PGP")) {
		el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	keys := make([]*PublicKey, 0, len(el))
	for _, e := range el {
		var pub bytes.Buffer
		if err := e.Serialize(&pub); err != nil {
			return nil, fmt.Errorf("read key %s: %w", fingerprint(e), err)
		}
		pe, err := openpgp.ReadEntity(packet.NewReader(&pub))
		if err != nil {
			return nil, fmt.Errorf("read key %s: %w", fingerprint(e), err)
		}
		keys = append(keys, &PublicKey{entity: pe})
	}
	if len(keys) == 0 {
		return nil, errors.New("read key: no key found")
	}
	return keys, nil
}

// Fingerprint is the upper-case hex fingerprint of the primary key.
func (k *PublicKey) Fingerprint() string { return fingerprint(k.entity) }

// UserIDs lists the key's user IDs, sorted.
func (k *PublicKey) UserIDs() []string { return userIDs(k.entity) }

// Addresses lists the distinct lower-case e-mail addresses of the key's user
// IDs, sorted.
func (k *PublicKey) Addresses() []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range k.entity.Identities {
		a, err := NormalizeAddress(id.UserId.Email)
		if err != nil || seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Armored returns the public key, armored.
func (k *PublicKey) Armored() ([]byte, error) {
	var out bytes.Buffer
	aw, err := armor.Encode(&out, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := k.entity.Serialize(aw); err != nil {
		return nil, fmt.Errorf("armor key %s: %w", k.Fingerprint(), err)
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// NormalizeAddress returns the bare lower-case form of an e-mail address, as
// used for file names in the keys directory. It refuses anything that could
// escape the directory.
func NormalizeAddress(s string) (string, error) {
	a, err := mail.ParseAddress(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("address %q: %w", s, err)
	}
	addr := strings.ToLower(a.Address)
	if strings.ContainsAny(addr, "/\\\x00") || strings.HasPrefix(addr, ".") || !strings.Contains(addr, "@") {
		return "", fmt.Errorf("address %q: not usable as a key file name", s)
	}
	return addr, nil
}

func fingerprint(e *openpgp.Entity) string {
	return strings.ToUpper(fmt.Sprintf("%x", e.PrimaryKey.Fingerprint))
}

func userIDs(e *openpgp.Entity) []string {
	out := make([]string, 0, len(e.Identities))
	for name := range e.Identities {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func primaryAddress(e *openpgp.Entity) string {
	if id := e.PrimaryIdentity(); id != nil {
		if a, err := NormalizeAddress(id.UserId.Email); err == nil {
			return a
		}
	}
	return ""
}
