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
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == nil:
			closed = n == 0 // end of stream
		case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK || rerr == syscall.EINTR:
		default:
			closed = true // reset, or another error a read would see too
		}
		return true // never wait
	})
	return err == nil && closed
}
