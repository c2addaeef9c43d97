// Package launch starts the herd binary for herd's own tools (the
// end-to-end tests' internal/herdtest, herd verify, make bench) and learns
// where it listens and when it is ready from its control socket, as an
// operator's herd status does, not from its log lines.
//
// Start gives herd an explicit control socket in a private directory of
// its own (CONTROL_SOCKET in its environment, unless the arguments name
// one with --control-socket), and Server.Ready waits for that socket to
// answer, asks the primary to wait until every wanted worker is ready, and
// returns its status document, whose Addr is the listening address.
//
// Fallback, for a server without a control socket of the launcher's: the
// single process of --cluster off has none, and a caller that asks for
// herd's default socket (Options.DefaultControlSocket, for tests of where
// that socket goes) does not know its path. Then, and only then, Ready
// takes the address from the "listening" line of herd's JSON log and waits
// for GET /healthz to answer 200.
package launch

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herd-go/herd/admin"
	"github.com/herd-go/herd/cluster"
)

// Options configure Start.
type Options struct {
	// Binary is the herd executable. Required.
	Binary string
	// Args are its arguments ("serve", "--workers", "2", ...).
	Args []string
	// Dir is its working directory ("" : this process's).
	Dir string
	// Env is its whole environment (nil: an empty one); Start adds
	// CONTROL_SOCKET.
	Env []string
	// SysProcAttr, if set, is the process's (a process group, a
	// parent-death signal).
	SysProcAttr *syscall.SysProcAttr
	// Line, if set, is called with every line herd prints (stdout and
	// stderr together, workers' lines included), in order, from one
	// goroutine; line is only valid during the call. Output is read to its
	// end whether or not Line is set.
	Line func(line []byte)
	// ControlSocket, if set, is the control socket's path, for a caller
	// that must pass it on itself (a wrapper that does not hand herd its
	// environment); Start still sets CONTROL_SOCKET to it. Default: a new
	// private directory's, or what --control-socket in Args says.
	ControlSocket string
	// DefaultControlSocket leaves the control socket where herd puts it by
	// default (herd-PORT.sock in its private directory): Ready then uses
	// the log-and-/healthz fallback (see the package doc).
	DefaultControlSocket bool
}

// Server is a running herd that Start started. Its methods are safe for
// concurrent use.
type Server struct {
	// Cmd is the started process (the primary, or the single process).
	Cmd *exec.Cmd
	// ControlSocket is the primary's control socket ("" with
	// DefaultControlSocket).
	ControlSocket string
	// Client talks to the primary over ControlSocket.
	Client *admin.Client

	dir   string // the private directory of the socket, if Start made it
	doneC chan struct{}

	mu      sync.Mutex
	waitErr error
	logAddr string // fallback: the "listening" line's address
	single  bool   // the "listening" line says single process
}

// Ready is a server ready to serve.
type Ready struct {
	// Addr is the listening address, host:port.
	Addr string
	// Status is the primary's status document once every wanted worker
	// was ready; zero with Fallback.
	Status cluster.Status
	// Fallback is set when readiness came from the log and /healthz: the
	// single process of --cluster off, or DefaultControlSocket.
	Fallback bool
}

// EnvControlSocket is the setting Start gives herd.
const EnvControlSocket = "CONTROL_SOCKET"

// Start starts opts.Binary and returns at once; call Ready to wait until
// it serves, and Close once it has exited. On error nothing is left
// running.
func Start(opts Options) (*Server, error) {
	if opts.Binary == "" {
		return nil, errors.New("launch: no herd binary given")
	}
	s := &Server{doneC: make(chan struct{})}
	env := append([]string(nil), opts.Env...)
	if p, ok := socketArg(opts.Args); ok {
		s.ControlSocket = p
	} else if opts.ControlSocket != "" {
		s.ControlSocket = opts.ControlSocket
		env = append(env, EnvControlSocket+"="+s.ControlSocket)
	} else if !opts.DefaultControlSocket {
		dir, err := os.MkdirTemp("", "herd-launch-") // 0700
		if err != nil {
			return nil, fmt.Errorf("launch: %w", err)
		}
		s.dir = dir
		s.ControlSocket = filepath.Join(dir, "herd.sock")
		env = append(env, EnvControlSocket+"="+s.ControlSocket)
	}
	if s.ControlSocket != "" {
		s.Client = admin.NewClient(s.ControlSocket)
	}
	cmd := exec.Command(opts.Binary, opts.Args...) //nolint:gosec // G204: the herd binary the caller chose
	cmd.Dir = opts.Dir
	cmd.Env = env
	cmd.SysProcAttr = opts.SysProcAttr
	// An *os.File pipe, so that Wait returns when herd exits even if a
	// process it started (a worker, an upgraded primary) still holds it.
	r, w, err := os.Pipe()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("launch: %w", err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		s.Close()
		return nil, fmt.Errorf("launch: starting %s: %w", opts.Binary, err)
	}
	w.Close()
	s.Cmd = cmd
	go s.read(r, opts.Line)
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(s.doneC)
	}()
	return s, nil
}

// socketArg finds --control-socket in herd's arguments (before a "--").
func socketArg(args []string) (string, bool) {
	for i, a := range args {
		switch {
		case a == "--":
			return "", false
		case a == "--control-socket" || a == "-control-socket":
			if i+1 < len(args) {
				return args[i+1], true
			}
		case strings.HasPrefix(a, "--control-socket="), strings.HasPrefix(a, "-control-socket="):
			return a[strings.IndexByte(a, '=')+1:], true
		}
	}
	return "", false
}

// read follows the output to its end, noting the fallback's address.
func (s *Server) read(r io.ReadCloser, line func([]byte)) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		b := sc.Bytes()
		if line != nil {
			line(b)
		}
		// Only the fallback reads the log: see the package doc.
		var rec struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
			Mode string `json:"mode"`
		}
		if json.Unmarshal(b, &rec) == nil && rec.Msg == "listening" {
			s.mu.Lock()
			if s.logAddr == "" {
				s.logAddr, s.single = rec.Addr, rec.Mode == "single process"
			}
			s.mu.Unlock()
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// Done is closed once the process has exited and been waited for.
func (s *Server) Done() <-chan struct{} { return s.doneC }

// ExitErr is what waiting for the process returned (nil before Done, or
// for exit code 0).
func (s *Server) ExitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitErr
}

var healthClient = &http.Client{Timeout: 5 * time.Second}

// Ready waits until the server is ready (see the package doc), the
// process exits, or ctx ends.
func (s *Server) Ready(ctx context.Context) (Ready, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.Client != nil {
			st, err := s.Client.Status(ctx)
			switch {
			case err == nil:
				if st, err = s.Client.WaitReady(ctx); err != nil {
					return Ready{}, s.failed(fmt.Errorf("launch: waiting for the workers: %w", err))
				}
				if st.Addr == "" {
					return Ready{}, errors.New("launch: the primary's status has no address")
				}
				return Ready{Addr: st.Addr, Status: st}, nil
			case !errors.Is(err, admin.ErrNoPrimary):
				return Ready{}, s.failed(fmt.Errorf("launch: asking the primary: %w", err))
			}
		}
		s.mu.Lock()
		addr, single := s.logAddr, s.single
		s.mu.Unlock()
		if addr != "" && (single || s.Client == nil) && healthy(ctx, addr) {
			return Ready{Addr: addr, Fallback: true}, nil
		}
		select {
		case <-s.doneC:
			return Ready{}, fmt.Errorf("launch: herd exited (%v) before it was ready", s.ExitErr()) //nolint:errorlint // may be nil: printed, not wrapped
		case <-ctx.Done():
			return Ready{}, fmt.Errorf("launch: waiting for herd to be ready: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// failed prefers "herd exited" to whatever the control socket said while
// the process was going away.
func (s *Server) failed(err error) error {
	select {
	case <-s.doneC:
		return fmt.Errorf("launch: herd exited (%v) before it was ready", s.ExitErr()) //nolint:errorlint // may be nil: printed, not wrapped
	case <-time.After(100 * time.Millisecond):
		return err
	}
}

func healthy(ctx context.Context, addr string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := healthClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Close removes the control socket's private directory, if Start made
// one. Call it once the process has exited (a primary removes its socket
// itself; a killed one leaves it). Safe to call more than once.
func (s *Server) Close() {
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
