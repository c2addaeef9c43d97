package cluster

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// shmCounts is one page of memory the primary shares with one worker
// (memfd, passed as the first message on the worker's connection socket):
// the worker counts the connections it closes there, so that a close
// costs no record and no wake-up of the primary, which reads the count
// when it chooses a worker. Under BalanceAuto's direct mode the worker
// also counts there the connections it accepts itself from the shared
// queue, which the primary reads for the worker's open count and for the
// rate of new connections. Only while the primary waits for a close (no
// worker has room, or this one ran out of descriptors) does it set want,
// and the worker then also writes a record.
//
// Methods are safe for concurrent use, in either process; on a nil
// *shmCounts they do nothing and the count is 0.
type shmCounts struct {
	mem    []byte
	closed *atomic.Uint64 // connections the worker closed, ever
	wants  *atomic.Uint32 // non-zero: report each close in a record too
	direct *atomic.Uint64 // connections the worker accepted itself, ever (direct mode)
	fd     int            // the primary's, until send
}

const (
	shmSize = 4096
	recShm  = 'S' // the primary's first message: the shared page, as SCM_RIGHTS
)

func newShmCounts() (*shmCounts, error) {
	fd, err := unix.MemfdCreate("herd-conns", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("cluster: memfd: %w", err)
	}
	s, err := mapShm(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	s.fd = fd
	return s, nil
}

// mapShm maps the page of descriptor fd, which the caller still owns.
func mapShm(fd int) (*shmCounts, error) {
	if err := unix.Ftruncate(fd, shmSize); err != nil {
		return nil, fmt.Errorf("cluster: shared page: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, shmSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("cluster: shared page: %w", err)
	}
	return &shmCounts{
		mem:    mem,
		closed: (*atomic.Uint64)(unsafe.Pointer(&mem[0])),  //nolint:gosec // G103: a page-aligned shared mapping, 8-byte aligned
		wants:  (*atomic.Uint32)(unsafe.Pointer(&mem[8])),  //nolint:gosec // G103: as above
		direct: (*atomic.Uint64)(unsafe.Pointer(&mem[16])), //nolint:gosec // G103: as above
	}, nil
}

// send passes the page to the worker, as the first message on its
// connection socket, and closes the primary's descriptor of it (the
// mapping stays).
func (s *shmCounts) send(rc syscall.RawConn) error {
	defer func() { syscall.Close(s.fd); s.fd = -1 }()
	var serr error
	err := rc.Write(func(fd uintptr) bool {
		serr = syscall.Sendmsg(int(fd), []byte{recShm}, syscall.UnixRights(s.fd), nil, syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL)
		return true
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("cluster: passing the shared page: %w", err)
	}
	return nil
}

func (s *shmCounts) unmap() {
	if s != nil && s.mem != nil {
		_ = unix.Munmap(s.mem)
		s.mem = nil
	}
}

// closes returns how many connections the worker has closed.
func (s *shmCounts) closes() int {
	if s == nil {
		return 0
	}
	return int(s.closed.Load()) //nolint:gosec // G115: a count of connections
}

// accepted returns how many connections the worker accepted itself.
func (s *shmCounts) accepted() int {
	if s == nil {
		return 0
	}
	return int(s.direct.Load()) //nolint:gosec // G115: a count of connections
}

// acceptOne counts one connection the worker accepted itself (in the
// worker, before the connection can close).
func (s *shmCounts) acceptOne() {
	if s != nil {
		s.direct.Add(1)
	}
}

func (s *shmCounts) want(on bool) {
	if s == nil {
		return
	}
	var v uint32
	if on {
		v = 1
	}
	s.wants.Store(v)
}

// closeOne counts one close (in the worker) and reports whether the
// primary wants a record for it.
func (s *shmCounts) closeOne() bool {
	s.closed.Add(1)
	return s.wants.Load() != 0
}
