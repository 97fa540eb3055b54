package token

import (
	"errors"
	"strings"
	"testing"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		c    Claims
	}{
		{"employee", Claims{CaseID: 42, Question: 3, Role: RoleEmployee}},
		{"original physician", Claims{CaseID: 1, Question: 0, Role: RoleOriginalPhysician}},
		{"so physician large ids", Claims{CaseID: 2026_000_123, Question: 100_000, Role: RoleSOPhysician}},
		{"employer", Claims{CaseID: 7, Question: 99, Role: RoleEmployer}},
		{"backoffice", Claims{CaseID: 1 << 40, Question: 5, Role: RoleBackoffice}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := New(testKey, tt.c)
			if tok != strings.ToLower(tok) {
				t.Errorf("token %q is not lower case", tok)
			}
			if len(tok) >= 32 {
				t.Errorf("token %q has %d characters, want < 32", tok, len(tok))
			}
			got, err := Verify(testKey, tok)
			if err != nil {
				t.Fatalf("Verify(%q): %v", tok, err)
			}
			if got != tt.c {
				t.Errorf("Verify = %+v, want %+v", got, tt.c)
			}
			// Some systems shout.
			got, err = Verify(testKey, strings.ToUpper(tok))
			if err != nil || got != tt.c {
				t.Errorf("Verify(upper) = %+v, %v; want %+v", got, err, tt.c)
			}
		})
	}
}

func TestTamperedTokenRefused(t *testing.T) {
	tok := New(testKey, Claims{CaseID: 42, Question: 3, Role: RoleEmployee})
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	for i := range len(tok) {
		for _, c := range alphabet {
			if byte(c) == tok[i] {
				continue
			}
			bad := tok[:i] + string(c) + tok[i+1:]
			if _, err := Verify(testKey, bad); !errors.Is(err, ErrBadToken) {
				t.Fatalf("Verify(%q) (char %d changed) = %v, want ErrBadToken", bad, i, err)
			}
		}
	}
}

func TestBadTokens(t *testing.T) {
	good := New(testKey, Claims{CaseID: 42, Question: 3, Role: RoleEmployee})
	tests := []struct{ name, tok string }{
		{"empty", ""},
		{"truncated", good[:len(good)-1]},
		{"extended", good + "a"},
		{"not base32", "hello-world!"},
		{"short valid base32", "aaaa"},
		{"padding", good + "="},
		{"with digits 0 and 1", strings.Replace(good, good[:1], "0", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := Verify(testKey, tt.tok); !errors.Is(err, ErrBadToken) {
				t.Errorf("Verify(%q) = %+v, %v; want ErrBadToken", tt.tok, c, err)
			}
		})
	}
}

func TestOtherKeyRefused(t *testing.T) {
	tok := New(testKey, Claims{CaseID: 42, Question: 3, Role: RoleEmployee})
	if _, err := Verify([]byte("another key entirely, 32 bytes!!"), tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("Verify with other key = %v, want ErrBadToken", err)
	}
}

func TestTokensDifferPerClaim(t *testing.T) {
	base := Claims{CaseID: 42, Question: 3, Role: RoleEmployee}
	seen := map[string]Claims{New(testKey, base): base}
	for _, c := range []Claims{
		{CaseID: 43, Question: 3, Role: RoleEmployee},
		{CaseID: 42, Question: 4, Role: RoleEmployee},
		{CaseID: 42, Question: 3, Role: RoleEmployer},
	} {
		tok := New(testKey, c)
		if prev, dup := seen[tok]; dup {
			t.Errorf("claims %+v and %+v share token %q", prev, c, tok)
		}
		seen[tok] = c
	}
}

func TestInvalidRoleRefused(t *testing.T) {
	tok := New(testKey, Claims{CaseID: 42, Question: 3, Role: 0})
	if _, err := Verify(testKey, tok); !errors.Is(err, ErrBadToken) {
		t.Errorf("Verify(token with role 0) = %v, want ErrBadToken", err)
	}
}

func TestFromAddress(t *testing.T) {
	tests := []struct {
		name, addr string
		tok        string
		ok         bool
	}{
		{"plain", "so+abc234@example.nl", "abc234", true},
		{"angle brackets", "<so+abc234@example.nl>", "abc234", true},
		{"upper case local and domain", "SO+ABC234@EXAMPLE.NL", "abc234", true},
		{"no token", "so@example.nl", "", false},
		{"empty token", "so+@example.nl", "", false},
		{"other domain", "so+abc234@example.com", "", false},
		{"other local", "info+abc234@example.nl", "", false},
		{"local is only a prefix", "sox+abc234@example.nl", "", false},
		{"no at", "so+abc234", "", false},
		{"two pluses", "so+abc+def@example.nl", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, ok := FromAddress(tt.addr, "so", "example.nl")
			if tok != tt.tok || ok != tt.ok {
				t.Errorf("FromAddress(%q) = %q, %v; want %q, %v", tt.addr, tok, ok, tt.tok, tt.ok)
			}
		})
	}
}

func TestAddressRoundTrip(t *testing.T) {
	c := Claims{CaseID: 42, Question: 3, Role: RoleEmployer}
	addr := Address("so", "example.nl", New(testKey, c))
	tok, ok := FromAddress(strings.ToUpper(addr), "so", "example.nl")
	if !ok {
		t.Fatalf("FromAddress(%q) found no token", addr)
	}
	if got, err := Verify(testKey, tok); err != nil || got != c {
		t.Errorf("Verify = %+v, %v; want %+v", got, err, c)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(New(testKey, Claims{CaseID: 42, Question: 3, Role: RoleEmployee}))
	f.Add("")
	f.Add("aaaaaaaaaaaaaaaaaaaaa")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Verify(testKey, s)
		if err != nil {
			return
		}
		// Anything accepted must be exactly what we would issue.
		if tok := New(testKey, c); tok != strings.ToLower(s) {
			t.Errorf("Verify accepted %q for %+v, but New gives %q", s, c, tok)
		}
	})
}
