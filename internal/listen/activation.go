package listen

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// EnvPID is systemd's LISTEN_PID: the process the passed sockets are for.
// herd's own processes pass descriptors without it (see Env), so a
// LISTEN_FDS with a LISTEN_PID equal to this process's pid comes from a
// service manager's socket activation and nothing else.
const EnvPID = "LISTEN_PID"

// ActivationName is the LISTEN_FDNAMES name (a .socket unit's
// FileDescriptorName=) herd serves on when several sockets are passed.
const ActivationName = "http"

// SocketActivated reports whether a service manager passed this process
// listening sockets (LISTEN_PID is this process, LISTEN_FDS is set). It
// does not consume them.
func SocketActivated() bool {
	pid, err := strconv.Atoi(os.Getenv(EnvPID))
	_, fds := os.LookupEnv(EnvFDs)
	return err == nil && pid == os.Getpid() && fds
}

// Activated returns the TCP listener a service manager passed this process
// by socket activation (sd_listen_fds(3)), and removes the variables from
// the environment. With one socket passed it is that one; with several,
// the one named ActivationName in LISTEN_FDNAMES. It returns nil, "", nil
// when the process was not socket-activated, and an error when the
// variables are malformed or the socket is not a TCP listener. Descriptors
// it does not use are closed.
func Activated() (*net.TCPListener, string, error) {
	if !SocketActivated() {
		return nil, "", nil
	}
	nstr, namestr := os.Getenv(EnvFDs), os.Getenv(EnvFDNames)
	os.Unsetenv(EnvFDs)
	os.Unsetenv(EnvFDNames)
	os.Unsetenv(EnvPID)
	n, err := strconv.Atoi(nstr)
	if err != nil || n < 1 || n > 64 {
		return nil, "", fmt.Errorf("listen: socket activation: %s=%q is not a descriptor count", EnvFDs, nstr)
	}
	var names []string
	if namestr != "" {
		names = strings.Split(namestr, ":")
	}
	pick := -1
	switch n {
	case 1:
		pick = 0
	default:
		for i, name := range names {
			if name == ActivationName && i < n {
				pick = i
				break
			}
		}
	}
	name := ""
	if pick >= 0 && pick < len(names) {
		name = names[pick]
	}
	for i := 0; i < n; i++ {
		syscall.CloseOnExec(firstFD + i)
		if i != pick {
			syscall.Close(firstFD + i)
		}
	}
	if pick < 0 {
		return nil, "", fmt.Errorf("listen: socket activation passed %d sockets (%s=%q): name the one to serve %q (FileDescriptorName=%s in the .socket unit)",
			n, EnvFDNames, namestr, ActivationName, ActivationName)
	}
	f := os.NewFile(uintptr(firstFD+pick), "systemd:"+name)
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, "", fmt.Errorf("listen: socket activation: descriptor %d is not a listening socket: %w", firstFD+pick, err)
	}
	tl, ok := l.(*net.TCPListener)
	if !ok {
		l.Close()
		return nil, "", fmt.Errorf("listen: socket activation: descriptor %d is a %s socket; herd serves TCP (ListenStream=host:port)", firstFD+pick, l.Addr().Network())
	}
	return tl, name, nil
}
