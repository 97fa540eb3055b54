package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

// maxCAFile bounds what LoadCAFile reads: a bundle of a few hundred
// certificates is well under it.
const maxCAFile = 4 << 20

// LoadCAFile returns the system's root certificates plus the certificates
// in the PEM file at path: for a mail server whose certificate an internal
// CA signed (or a self-signed one, by giving the certificate itself).
// A file without certificates, with a block that does not parse, or with
// anything but certificates (a private key put there by mistake) is an
// error that names it.
func LoadCAFile(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCAFile+1))
	if err != nil {
		return nil, fmt.Errorf("CA file %s: %w", path, err)
	}
	if len(data) > maxCAFile {
		return nil, fmt.Errorf("CA file %s: larger than %d bytes", path, maxCAFile)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool() // no system roots here: the file's only
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		n++
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("CA file %s: block %d is a %s; want only CERTIFICATE blocks", path, n, b.Type)
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA file %s: certificate %d: %w", path, n, err)
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// IMAPTLS is the TLS client configuration for the IMAP server: nil (the
// system's roots) without imap.ca_file.
func (c *Config) IMAPTLS() (*tls.Config, error) { return TLSWithCA(c.IMAP.CAFile) }

// SMTPTLS is the TLS client configuration for the SMTP server: nil (the
// system's roots) without smtp.ca_file.
func (c *Config) SMTPTLS() (*tls.Config, error) { return TLSWithCA(c.SMTP.CAFile) }

// TLSWithCA is a TLS client configuration that trusts the system's roots
// and the certificates in the PEM file (LoadCAFile); nil, meaning the
// system's roots alone, when file is "".
func TLSWithCA(file string) (*tls.Config, error) {
	if file == "" {
		return nil, nil
	}
	pool, err := LoadCAFile(file)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
