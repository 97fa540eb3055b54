package config

import (
	"errors"
	"fmt"
	"os"
)

// ErrNoSecret is returned by LoadSecret when neither a file nor an
// environment variable is given.
var ErrNoSecret = errors.New("no secret configured")

// ErrSecretReadable is wrapped when a secret file can be read by every user.
var ErrSecretReadable = errors.New("secret file is readable by others")

// LoadSecret reads a secret from file (if set) or else from the environment
// variable env. A trailing newline (as editors and echo leave it) is
// removed. A file that is world-readable, or not a regular file, is refused;
// an unset or empty variable is an error. The secret is never part of the
// error text.
func LoadSecret(file, env string) ([]byte, error) {
	switch {
	case file != "":
		b, err := readSecretFile(file)
		if err != nil {
			return nil, err
		}
		b = trimNewline(b)
		if len(b) == 0 {
			return nil, fmt.Errorf("secret file %s is empty", file)
		}
		return b, nil
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return nil, fmt.Errorf("environment variable %s is not set", env)
		}
		b := trimNewline([]byte(v))
		if len(b) == 0 {
			return nil, fmt.Errorf("environment variable %s is empty", env)
		}
		return b, nil
	}
	return nil, ErrNoSecret
}

// readSecretFile reads file after checking that it is a regular file that
// not every user can read.
func readSecretFile(file string) ([]byte, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("secret file %s: not a regular file", file)
	}
	if st.Mode().Perm()&0o004 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %#o; run chmod o-rwx %s", ErrSecretReadable, file, st.Mode().Perm(), file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	return b, nil
}

func trimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// MinTokenKeyLen is the shortest accepted reply-token HMAC key, in bytes.
const MinTokenKeyLen = 32

// IMAPPassword reads the IMAP password.
func (c *Config) IMAPPassword() (string, error) {
	b, err := LoadSecret(c.IMAP.PasswordFile, c.IMAP.PasswordEnv)
	if err != nil {
		return "", fmt.Errorf("imap password: %w", err)
	}
	return string(b), nil
}

// SMTPPassword reads the SMTP password; "" without error when no username
// (and so no password) is configured.
func (c *Config) SMTPPassword() (string, error) {
	if c.SMTP.Username == "" {
		return "", nil
	}
	b, err := LoadSecret(c.SMTP.PasswordFile, c.SMTP.PasswordEnv)
	if err != nil {
		return "", fmt.Errorf("smtp password: %w", err)
	}
	return string(b), nil
}

// TokenKey reads the HMAC key for reply tokens (at least MinTokenKeyLen
// bytes; generate one with `head -c 32 /dev/urandom > token.key`).
func (c *Config) TokenKey() ([]byte, error) {
	if c.TokenKeyFile == "" {
		return nil, fmt.Errorf("token key: %w", ErrNoSecret)
	}
	b, err := readSecretFile(c.TokenKeyFile)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	// A binary key is used as is; a text key loses its trailing newline.
	if !isText(b) {
		if len(b) < MinTokenKeyLen {
			return nil, fmt.Errorf("token key %s: %d bytes, want at least %d", c.TokenKeyFile, len(b), MinTokenKeyLen)
		}
		return b, nil
	}
	b = trimNewline(b)
	if len(b) < MinTokenKeyLen {
		return nil, fmt.Errorf("token key %s: %d bytes, want at least %d", c.TokenKeyFile, len(b), MinTokenKeyLen)
	}
	return b, nil
}

func isText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\n' && c != '\r' && c != '\t' || c >= 0x7f {
			return false
		}
	}
	return true
}

// ServiceKeyPassphrase reads the passphrase of the service's OpenPGP key;
// nil without error when none is configured (an unprotected key).
func (c *Config) ServiceKeyPassphrase() ([]byte, error) {
	if c.ServiceKeyPassphraseFile == "" && c.ServiceKeyPassphraseEnv == "" {
		return nil, nil
	}
	b, err := LoadSecret(c.ServiceKeyPassphraseFile, c.ServiceKeyPassphraseEnv)
	if err != nil {
		return nil, fmt.Errorf("service key passphrase: %w", err)
	}
	return b, nil
}

// FieldError is err placed at the field path of the configuration file
// (file:line: path: err), for checks made outside this package.
func (c *Config) FieldError(path string, err error) error {
	e := c.doc.Wrap(path, err)
	if e.File == "" {
		e.File = c.File
	}
	return e
}

// CheckSecrets reads every configured secret and returns the problems,
// each with the field it belongs to (and wrapping the cause, e.g.
// ErrSecretReadable). Use it at start-up and in check-config -secrets;
// Validate does not touch the secrets.
func (c *Config) CheckSecrets() []error {
	var errs []error
	add := func(path string, err error) {
		if err != nil {
			errs = append(errs, c.FieldError(path, err))
		}
	}
	ref := func(prefix, file, env string, required bool) {
		if file == "" && env == "" && !required {
			return
		}
		path := prefix + "_env"
		if file != "" || env == "" {
			path = prefix + "_file"
		}
		_, err := LoadSecret(file, env)
		add(path, err)
	}
	ref("imap.password", c.IMAP.PasswordFile, c.IMAP.PasswordEnv, true)
	ref("smtp.password", c.SMTP.PasswordFile, c.SMTP.PasswordEnv, c.SMTP.Username != "")
	ref("service_key_passphrase", c.ServiceKeyPassphraseFile, c.ServiceKeyPassphraseEnv, false)
	_, err := c.TokenKey()
	if errors.Unwrap(err) != nil {
		err = errors.Unwrap(err) // drop the "token key:" prefix; the path says it
	}
	add("token_key_file", err)
	return errs
}
