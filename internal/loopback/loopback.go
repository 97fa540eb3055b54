// Package loopback tells whether a host or address is this machine's
// loopback: the one place where plain-text connections (IMAP, SMTP) and the
// unauthenticated metrics endpoint are allowed without TLS.
package loopback

import (
	"net"
	"strings"
)

// Host reports whether host ("localhost", "127.0.0.1", "::1" or "[::1]")
// names the loopback interface. Other names are not resolved: a name that
// resolves to 127.0.0.1 today may not tomorrow.
func Host(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Addr reports whether the host of addr (host:port) names the loopback
// interface; an address without a port is not one.
func Addr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && Host(host)
}
