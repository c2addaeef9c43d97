// Package listen opens herd's listening sockets once, in the primary, and
// hands them to worker processes as inherited file descriptors named the
// systemd way (LISTEN_FDS, LISTEN_FDNAMES), so that every worker accepts
// from the same kernel queue and connections waiting in it outlive any one
// worker.
package listen

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Environment variables naming inherited descriptors. Descriptors start at
// 3 (the first of exec.Cmd.ExtraFiles), in the order of LISTEN_FDNAMES.
const (
	EnvFDs     = "LISTEN_FDS"
	EnvFDNames = "LISTEN_FDNAMES"
	firstFD    = 3
)

// ErrInUse means the address is already taken by another socket.
var ErrInUse = errors.New("listen: address already in use")

// TCP opens a TCP listener on addr ("host:port"; port 0 picks a free one).
// It returns ErrInUse, wrapped, when the port is taken.
func TCP(addr string) (*net.TCPListener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%w: %s", ErrInUse, addr)
		}
		return nil, fmt.Errorf("listen: %w", err)
	}
	return l.(*net.TCPListener), nil
}

// Named is a file to pass to a child under a name.
type Named struct {
	Name string
	File *os.File
}

// Env returns the environment entries describing files passed, in this
// order, as a child's ExtraFiles.
func Env(files []Named) []string {
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	return []string{
		EnvFDs + "=" + strconv.Itoa(len(files)),
		EnvFDNames + "=" + strings.Join(names, ":"),
	}
}

// Inherited returns the files this process was given by its parent, by
// name, and removes the variables from the environment so that the process's
// own children do not mistake them for theirs. It returns an empty map when
// nothing was passed, and an error when the variables are malformed.
func Inherited() (map[string]*os.File, error) {
	nstr, ok := os.LookupEnv(EnvFDs)
	namesStr := os.Getenv(EnvFDNames)
	os.Unsetenv(EnvFDs)
	os.Unsetenv(EnvFDNames)
	os.Unsetenv("LISTEN_PID")
	names, err := ParseEnv(nstr, namesStr, ok)
	if err != nil {
		return nil, err
	}
	files := make(map[string]*os.File, len(names))
	for i, name := range names {
		fd := firstFD + i
		// Mark close-on-exec: these are ours, not our children's.
		syscall.CloseOnExec(fd)
		files[name] = os.NewFile(uintptr(fd), name)
	}
	return files, nil
}

// maxInherited bounds the descriptors LISTEN_FDS may announce.
const maxInherited = 64

// ParseEnv reads the values of LISTEN_FDS (fds, set says whether it is set
// at all) and LISTEN_FDNAMES and returns the names of the inherited
// descriptors in order, the first being descriptor 3. Nothing set means
// none; a count that is not 0 to 64, a name list of another length, or a
// name given twice is an error. It is pure: Inherited does the rest.
func ParseEnv(fds, fdNames string, set bool) ([]string, error) {
	if !set {
		return nil, nil
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 || n > maxInherited {
		return nil, fmt.Errorf("listen: %s=%q is not a descriptor count from 0 to %d", EnvFDs, clip(fds), maxInherited)
	}
	if n == 0 && fdNames == "" {
		return nil, nil
	}
	names := strings.Split(fdNames, ":")
	if len(names) != n {
		return nil, fmt.Errorf("listen: %s names %d descriptors, %s says %d", EnvFDNames, len(names), EnvFDs, n)
	}
	seen := make(map[string]bool, n)
	for _, name := range names {
		if seen[name] {
			return nil, fmt.Errorf("listen: %s names %q twice", EnvFDNames, clip(name))
		}
		seen[name] = true
	}
	return names, nil
}

// clip shortens what the environment held for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// FileListener turns an inherited socket into a net.Listener and closes f.
func FileListener(f *os.File) (net.Listener, error) {
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listen: inherited %s is not a listening socket: %w", f.Name(), err)
	}
	return l, nil
}

// filer is what TCP and Unix listeners have in common here.
type filer interface {
	File() (*os.File, error)
}

// Passable returns a duplicate of l's socket to pass to children
// (exec.Cmd.ExtraFiles) that never changes the socket's blocking mode.
//
// This matters because the mode lives in the open file description that
// every worker's copy shares. A file from l.File() is marked non-blocking,
// and its Fd() (os/exec calls it for each ExtraFiles entry) switches the
// description to blocking mode. Then a worker that loses a race for a
// connection blocks in accept4 instead of getting EAGAIN, and cannot close
// its listener to drain until another connection comes. So the file
// returned here is created while the socket is blocking, which os records
// as a plain file whose Fd() leaves the mode alone, and the socket is set
// back to non-blocking.
func Passable(l filer) (*os.File, error) {
	f, err := l.File()
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	defer f.Close()
	fd := int(f.Fd()) // blocking mode now; harmless before any child runs
	dup, err := syscall.Dup(fd)
	if err != nil {
		return nil, fmt.Errorf("listen: dup: %w", err)
	}
	syscall.CloseOnExec(dup)
	pf := os.NewFile(uintptr(dup), f.Name())
	if err := syscall.SetNonblock(dup, true); err != nil {
		pf.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	return pf, nil
}
