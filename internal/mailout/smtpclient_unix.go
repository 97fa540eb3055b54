//go:build linux || darwin || freebsd || netbsd || openbsd

package mailout

import (
	"net"
	"syscall"
)

// peerClosed reports whether the server has already closed conn (an
// orderly close or a reset), without blocking and without consuming
// anything: it peeks at the socket. A connection it cannot look into
// (not a socket) counts as open.
func peerClosed(conn net.Conn) bool {
	closed, _ := peek(conn)
	return closed
}

// peerQuiet reports whether conn is open with nothing from the server
// waiting to be read: an idle session a server has not ended (a 421 or a
// close) since.
func peerQuiet(conn net.Conn) bool {
	closed, waiting := peek(conn)
	return !closed && !waiting
}

// peek looks at conn without blocking and without consuming anything.
func peek(conn net.Conn) (closed, waiting bool) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == nil:
			closed, waiting = n == 0, n > 0 // n == 0: end of stream
		case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK || rerr == syscall.EINTR:
		default:
			closed = true // reset, or another error a read would see too
		}
		return true // never wait
	})
	if err != nil {
		return false, false
	}
	return closed, waiting
}
