//go:build linux

package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to begin writing a range of f that was
// just written to disk, without waiting for it: the fsync at the end of
// the file then has little left to wait for, the disk having written
// while the rest of the file streamed in. It is a hint; a failure shows
// in that fsync.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}
