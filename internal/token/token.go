// Package token owns the reply token: the part after "+" in the reply
// address local+TOKEN@domain that every question mail carries (see
// DESIGN.md, "Mail conventions"). A token names the case, the question and
// the role of the recipient it was sent to, and is protected by an HMAC
// (RFC 2104, SHA-256 truncated to 80 bits as RFC 2104 section 5 allows) so
// nobody can forge an answer to another case or question.
//
// Tokens are written in lowercase base32 (RFC 4648 section 6, no padding)
// because mail systems may fold the local part to lower case, and are
// short enough (about 21 characters for realistic case numbers) to stay
// well inside the 64-octet local-part limit of RFC 5321 section 4.5.3.1.1.
//
// Whether a valid token's question is still open, and whether it came from
// the registered address for its role, is for the caller to decide: a token
// only proves that we issued it.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ErrBadToken is returned for any token that we did not issue with this
// key: malformed, truncated, tampered with or signed with another key.
var ErrBadToken = errors.New("token: bad reply token")

// Role is the recipient's role in the case the token was issued for.
type Role uint8

// The roles. Zero is not a role, so an unset Role is never valid.
const (
	RoleEmployee          Role = 1 // werknemer
	RoleOriginalPhysician Role = 2 // eigen bedrijfsarts
	RoleSOPhysician       Role = 3 // second-opinion physician
	RoleEmployer          Role = 4 // werkgever
	RoleBackoffice        Role = 5
)

var roleNames = [...]string{
	RoleEmployee:          "employee",
	RoleOriginalPhysician: "original-physician",
	RoleSOPhysician:       "so-physician",
	RoleEmployer:          "employer",
	RoleBackoffice:        "backoffice",
}

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool { return r >= RoleEmployee && r <= RoleBackoffice }

func (r Role) String() string {
	if r.Valid() {
		return roleNames[r]
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// Claims is what a token states.
type Claims struct {
	CaseID   int64
	Question uint32
	Role     Role
}

// macLen is the truncated HMAC length: 80 bits, the minimum RFC 2104
// section 5 recommends, keeps tokens short while a forgery still needs
// about 2^79 guesses against a mail server.
const macLen = 10

// context separates these MACs from any other use of the same key.
const context = "secondopinion reply token v1\x00"

var enc = base32.StdEncoding.WithPadding(base32.NoPadding)

// New returns the token for c under key. The token is lowercase base32.
func New(key []byte, c Claims) string {
	var buf [binary.MaxVarintLen64 + binary.MaxVarintLen32 + 1 + macLen]byte
	n := binary.PutUvarint(buf[:], uint64(c.CaseID))
	n += binary.PutUvarint(buf[n:], uint64(c.Question))
	buf[n] = byte(c.Role)
	n++
	n += copy(buf[n:], mac(key, buf[:n]))
	return strings.ToLower(enc.EncodeToString(buf[:n]))
}

// Verify checks s against key and returns its claims. Upper case is
// accepted (some systems fold local parts to upper case); any other change
// yields ErrBadToken.
func Verify(key []byte, s string) (Claims, error) {
	lower := strings.ToLower(s)
	b, err := enc.DecodeString(strings.ToUpper(s))
	// Base32 without padding leaves spare bits in the last character; a
	// token whose re-encoding differs was altered, even if it decodes.
	if err != nil || strings.ToLower(enc.EncodeToString(b)) != lower {
		return Claims{}, ErrBadToken
	}
	if len(b) < 3+macLen {
		return Claims{}, ErrBadToken
	}
	payload, sum := b[:len(b)-macLen], b[len(b)-macLen:]
	if !hmac.Equal(sum, mac(key, payload)) {
		return Claims{}, ErrBadToken
	}
	caseID, n := binary.Uvarint(payload)
	if n <= 0 {
		return Claims{}, ErrBadToken
	}
	q, m := binary.Uvarint(payload[n:])
	if m <= 0 || q > 1<<32-1 || n+m+1 != len(payload) {
		return Claims{}, ErrBadToken
	}
	c := Claims{CaseID: int64(caseID), Question: uint32(q), Role: Role(payload[n+m])}
	if !c.Role.Valid() {
		return Claims{}, ErrBadToken
	}
	return c, nil
}

func mac(key, payload []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(context))
	h.Write(payload)
	return h.Sum(nil)[:macLen]
}

// Address returns the reply address "local+tok@domain".
func Address(local, domain, tok string) string {
	return local + "+" + tok + "@" + domain
}

// FromAddress extracts the token from addr if addr is local+TOKEN@domain;
// local part and domain compare case-insensitively (RFC 5321 leaves the
// local part's case to the receiving server, and ours ignores it). Angle
// brackets around addr are allowed. The token is returned in lower case.
func FromAddress(addr, local, domain string) (tok string, ok bool) {
	addr = strings.TrimSpace(addr)
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">")
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || !strings.EqualFold(addr[at+1:], domain) {
		return "", false
	}
	lp := addr[:at]
	prefix := local + "+"
	if len(lp) <= len(prefix) || !strings.EqualFold(lp[:len(prefix)], prefix) {
		return "", false
	}
	tok = strings.ToLower(lp[len(prefix):])
	if strings.ContainsAny(tok, "+@ \t\"") {
		return "", false
	}
	return tok, true
}
