//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package mailout

import "net"

// peerClosed cannot peek at a socket on this system; the server's having
// hung up is only found out when reading its reply.
func peerClosed(net.Conn) bool { return false }

// peerQuiet cannot tell on this system; a kept session the server has
// ended is found out at MAIL, and the mail goes over a new connection.
func peerQuiet(net.Conn) bool { return true }
