package message

import (
	"fmt"
	"net/mail"
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// HeaderValues is what AuthResult needs of a header: all values of a field,
// topmost first (go-message's Header and textproto.Header have it).
type HeaderValues interface {
	Values(key string) []string
}

// AuthResult applies the strict-mode rule to the Authentication-Results
// fields of a message (RFC 8601): only the topmost field whose authserv-id
// is trustedAuthservID counts — our server prepends its field, so anything
// below it, or from another authserv-id, may have been written by the
// sender (RFC 8601 section 5) — and that field must show dmarc=pass, or
// dkim=pass for a signing domain aligned with the From domain (relaxed
// alignment, RFC 7489 section 3.1.1: the same domain or a parent of it).
// A DKIM pass for any other domain proves only that someone else signed.
// reason says what was found, for the quarantine notice.
func AuthResult(h HeaderValues, trustedAuthservID string) (pass bool, reason string) {
	fromDomain := ""
	if froms := h.Values("From"); len(froms) > 0 {
		fromDomain = addressDomain(froms[0])
	}
	for _, v := range h.Values("Authentication-Results") {
		id, results, err := authres.Parse(stripComments(v))
		if !strings.EqualFold(id, trustedAuthservID) {
			continue
		}
		if err != nil && len(results) == 0 {
			return false, fmt.Sprintf("Authentication-Results from %s unreadable: %v", trustedAuthservID, err)
		}
		var seen []string
		for _, r := range results {
			switch r := r.(type) {
			case *authres.DKIMResult:
				if r.Value == authres.ResultPass && aligned(fromDomain, r.Domain) {
					return true, "dkim=pass" + param("header.d", r.Domain)
				}
				if r.Value == authres.ResultPass {
					seen = append(seen, fmt.Sprintf("dkim=pass for %q, not aligned with the From domain %q", r.Domain, fromDomain))
					continue
				}
				seen = append(seen, "dkim="+string(r.Value))
			case *authres.DMARCResult:
				if r.Value == authres.ResultPass {
					return true, "dmarc=pass" + param("header.from", r.From)
				}
				seen = append(seen, "dmarc="+string(r.Value))
			}
		}
		if len(seen) == 0 {
			return false, fmt.Sprintf("Authentication-Results from %s has no dkim or dmarc result", trustedAuthservID)
		}
		return false, fmt.Sprintf("Authentication-Results from %s: %s", trustedAuthservID, strings.Join(seen, ", "))
	}
	return false, fmt.Sprintf("no Authentication-Results from %s", trustedAuthservID)
}

// addressDomain returns the lower-case domain of the (first) address in a
// From field value, or "".
func addressDomain(v string) string {
	if a, err := mail.ParseAddress(v); err == nil {
		v = a.Address
	} else if i, j := strings.LastIndex(v, "<"), strings.LastIndex(v, ">"); i >= 0 && j > i {
		v = v[i+1 : j]
	}
	at := strings.LastIndex(v, "@")
	if at < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(v[at+1:]))
}

// aligned reports relaxed alignment: the From domain is the signing domain
// or one of its subdomains.
func aligned(fromDomain, signing string) bool {
	signing = strings.ToLower(strings.TrimSuffix(signing, "."))
	if fromDomain == "" || signing == "" {
		return false
	}
	return fromDomain == signing || strings.HasSuffix(fromDomain, "."+signing)
}

func param(k, v string) string {
	if v == "" {
		return ""
	}
	return " " + k + "=" + v
}

// stripComments removes RFC 5322 comments ("(…)", nested, with quoted
// pairs), which may hold ';' and would split a result in two.
func stripComments(s string) string {
	var b strings.Builder
	depth := 0
	inQuote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && (depth > 0 || inQuote):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
		case c == '"' && depth == 0:
			inQuote = !inQuote
			b.WriteByte(c)
		case c == '(' && !inQuote:
			depth++
		case c == ')' && !inQuote && depth > 0:
			depth--
			if depth == 0 {
				b.WriteByte(' ')
			}
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}
