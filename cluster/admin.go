package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Admin configures the primary's admin HTTP listener: metrics, dashboard
// and actions, served by a handler the caller supplies (package admin
// builds one). It never stops the cluster from serving: an address that
// cannot be listened on is logged and retried every second, which is also
// how the new primary of a binary upgrade takes the address over once the
// old one has exited.
type Admin struct {
	// Addr is the listener's TCP address. Empty: no admin listener.
	// AdminAuto: 127.0.0.1 on the serving port plus AdminPortOffset (3000:
	// 9300), or a free port when the serving port is 0, above
	// 65535-AdminPortOffset, or taken; the address chosen is logged and
	// reported in Status.AdminAddr.
	Addr string

	// Token authorizes actions (POSTs), sent as "Authorization: Bearer
	// TOKEN". Empty on a loopback listener: the primary generates one and
	// writes it, mode 0600, next to the control socket (TokenPath); empty
	// on any other listener: actions are refused, saying why.
	Token string

	// Handler builds the listener's handler once the primary runs. Nil:
	// no admin listener.
	Handler func(AdminContext) (http.Handler, error)
}

// AdminAuto as Admin.Addr picks the address from the serving port.
const AdminAuto = "auto"

// AdminPortOffset is what AdminAuto adds to the serving port.
const AdminPortOffset = 6300

// AdminContext is what an admin handler gets from the primary.
type AdminContext struct {
	Plane     Plane
	Token     string // "" : no actions allowed (see Admin.Token)
	TokenPath string // where a generated token was written, if it was
	Loopback  bool   // the listener accepts loopback connections only
}

// Plane is the running primary as an admin handler sees it. Its methods
// are safe for concurrent use; none waits on a worker.
type Plane interface {
	// Metrics snapshots the cluster's figures.
	Metrics(ctx context.Context) (Metrics, error)
	// Status is what "herd status" shows.
	Status(ctx context.Context) (Status, error)
	// Reload replaces every worker, one at a time, replacement first, and
	// returns once done.
	Reload(ctx context.Context) error
	// Scale runs n workers and returns once they are ready.
	Scale(ctx context.Context, n int) error
	// Restart replaces worker id, replacement first, and returns once the
	// replacement serves.
	Restart(ctx context.Context, id int) error
	// Upgrade starts a new primary from the executable on disk, hands it
	// the sockets, and returns once its workers are ready (this primary
	// then drains), or with why it failed (this primary keeps serving).
	Upgrade(ctx context.Context) error
	// Stop stops the primary gracefully and returns once every worker has
	// stopped and the loop is ending.
	Stop(ctx context.Context) error
	// WaitReady returns once every wanted worker is ready (at once if they
	// are), or an error when the primary is shutting down.
	WaitReady(ctx context.Context) error
	// Done is closed when the primary's loop has ended.
	Done() <-chan struct{}
}

// ErrExiting means the primary is exiting and cannot answer.
var ErrExiting = errors.New("cluster: the primary is exiting")

// adminState is the admin listener's address, once it listens.
type adminState struct {
	addr atomic.Value // string
}

func (p *primary) adminAddr() string {
	s, _ := p.admin.addr.Load().(string)
	return s
}

// adminListenAddr resolves Admin.Addr, and says whether a taken address
// may fall back to a free port.
func (p *primary) adminListenAddr() (addr string, fallback bool) {
	a := p.opts.Admin.Addr
	if a != AdminAuto {
		return a, false
	}
	port := 0
	if p.ln != nil {
		port = p.ln.Addr().(*net.TCPAddr).Port
	}
	if port == 0 || port+AdminPortOffset > 65535 {
		return "127.0.0.1:0", false
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port+AdminPortOffset)), true
}

// TokenPath is where a primary whose control socket is at socketPath
// writes a generated admin token.
func TokenPath(socketPath string) string {
	return strings.TrimSuffix(socketPath, ".sock") + ".admin-token"
}

// startAdmin starts the admin listener in the background and returns a
// function that stops it. Failures are logged, never fatal. A primary
// started for an upgrade waits for the old one to release the address
// rather than move to another port.
func (p *primary) startAdmin(ctx context.Context, ctlPath string, upgrade bool) (stop func()) {
	a := p.opts.Admin
	if a.Addr == "" || a.Handler == nil {
		return func() {}
	}
	addr, fallback := p.adminListenAddr()
	fallback = fallback && !upgrade
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var srv *http.Server
	var srvMu sync.Mutex
	var tokenFile string
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ln net.Listener
		for warned := false; ; {
			var err error
			ln, err = net.Listen("tcp", addr)
			if err == nil {
				break
			}
			if fallback {
				p.log.Warn("admin address taken; using a free port", "addr", addr, "err", err)
				addr, fallback = "127.0.0.1:0", false
				continue
			}
			if !warned {
				if upgrade {
					p.log.Info("admin address still held by the old primary; retrying every second", "addr", addr)
				} else {
					p.log.Error("cannot listen on the admin address; retrying every second (the cluster serves on)", "addr", addr, "err", err)
				}
				warned = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		loopback := isLoopback(ln.Addr())
		ac := AdminContext{Plane: plane{p}, Token: a.Token, Loopback: loopback}
		if ac.Token == "" && loopback && ctlPath != "" {
			tok, path, err := writeToken(TokenPath(ctlPath))
			if err != nil {
				p.log.Warn("cannot write the admin token; admin actions are off", "err", err)
			} else {
				ac.Token, ac.TokenPath, tokenFile = tok, path, path
			}
		}
		h, err := a.Handler(ac)
		if err != nil {
			ln.Close()
			p.log.Error("admin handler failed; no admin listener", "err", err)
			return
		}
		s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
		srvMu.Lock()
		if ctx.Err() != nil {
			srvMu.Unlock()
			ln.Close()
			return
		}
		srv = s
		srvMu.Unlock()
		p.admin.addr.Store(ln.Addr().String())
		attrs := []any{"addr", ln.Addr().String(), "url", "http://" + ln.Addr().String() + "/"}
		switch {
		case ac.TokenPath != "":
			attrs = append(attrs, "token_file", ac.TokenPath)
		case ac.Token == "":
			attrs = append(attrs, "actions", "off: no token configured")
		}
		p.log.Info("admin listening", attrs...)
		_ = s.Serve(ln)
	}()
	return func() {
		cancel()
		srvMu.Lock()
		s := srv
		srvMu.Unlock()
		if s != nil {
			sctx, c := context.WithTimeout(context.Background(), time.Second)
			_ = s.Shutdown(sctx) // event streams end with the primary
			c()
			s.Close()
		}
		wg.Wait()
		if tokenFile != "" && !p.handedOver {
			os.Remove(tokenFile)
		}
	}
}

// controlPath is the control socket's path if the primary has one.
func controlPath(path string, l *net.UnixListener) string {
	if l == nil {
		return ""
	}
	return path
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// writeToken writes a new random token to path, mode 0600.
func writeToken(path string) (token, p string, err error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("cluster: admin token: %w", err)
	}
	token = hex.EncodeToString(b)
	// A stale one from a dead primary: never write through someone else's file.
	os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // G304: the token file herd names after the operator's control socket
	if err != nil {
		return "", "", fmt.Errorf("cluster: admin token: %w", err)
	}
	_, err = f.WriteString(token + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", "", fmt.Errorf("cluster: admin token: %w", err)
	}
	return token, path, nil
}

// plane is the primary as a Plane.
type plane struct{ p *primary }

func (pl plane) Done() <-chan struct{} { return pl.p.doneC }

func (pl plane) Metrics(ctx context.Context) (Metrics, error) {
	var m Metrics
	if !pl.p.do(func() { m = pl.p.metrics() }) {
		return m, ErrExiting
	}
	m.Calls = pl.p.mx.callMetrics()
	m.Backlog = backlog(pl.p.lnF)
	return m, nil
}

func (pl plane) Status(ctx context.Context) (Status, error) {
	var s Status
	if !pl.p.do(func() { s = pl.p.status() }) {
		return s, ErrExiting
	}
	return s, nil
}

func (pl plane) Reload(ctx context.Context) error {
	return pl.wait(ctx, func(done chan error) { pl.p.reload(done) })
}

func (pl plane) Scale(ctx context.Context, n int) error {
	if n < 1 || n > 1024 {
		return fmt.Errorf("cluster: cannot scale to %d: the worker count must be from 1 to 1024", n)
	}
	return pl.wait(ctx, func(done chan error) {
		if pl.p.shutting {
			done <- errors.New("cluster: the primary is shutting down")
			return
		}
		pl.p.scale(n)
		pl.p.await(func() (bool, error) { return pl.p.scaled(n) }, done)
	})
}

func (pl plane) Upgrade(ctx context.Context) error {
	return pl.wait(ctx, func(done chan error) { pl.p.upgrade(done) })
}

func (pl plane) Stop(ctx context.Context) error {
	return pl.wait(ctx, func(done chan error) {
		pl.p.stopWaiters = append(pl.p.stopWaiters, done)
		pl.p.shutdown("herd stop")
	})
}

func (pl plane) WaitReady(ctx context.Context) error {
	return pl.wait(ctx, func(done chan error) {
		pl.p.await(func() (bool, error) {
			if pl.p.shutting {
				return false, errors.New("cluster: the primary is shutting down")
			}
			return pl.p.readyCount() >= pl.p.want, nil
		}, done)
	})
}

func (pl plane) Restart(ctx context.Context, id int) error {
	return pl.wait(ctx, func(done chan error) { pl.p.restartWorker(id, done) })
}

// wait runs start in the loop and waits for the outcome it sends to done.
func (pl plane) wait(ctx context.Context, start func(done chan error)) error {
	done := make(chan error, 1)
	if !pl.p.do(func() { start(done) }) {
		return ErrExiting
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-pl.p.doneC:
		select {
		case err := <-done:
			return err
		default:
			return ErrExiting
		}
	}
}

// restartWorker replaces worker id, replacement first, and answers done
// once the replacement is ready or has failed. Call it in the loop.
func (p *primary) restartWorker(id int, done chan error) {
	old := p.live(id)
	switch {
	case p.shutting:
		done <- errors.New("cluster: the primary is shutting down")
		return
	case old == nil:
		done <- fmt.Errorf("cluster: worker %d is not running", id)
		return
	case old.state != StateReady:
		done <- fmt.Errorf("cluster: worker %d is %s; only a ready worker can be restarted", id, old.state)
		return
	case old.replacedBy != 0:
		done <- fmt.Errorf("cluster: worker %d is already being replaced", id)
		return
	}
	np := p.replace(old, "restart")
	if np == nil {
		done <- fmt.Errorf("cluster: cannot start a replacement for worker %d", id)
		return
	}
	pid := np.pid
	p.await(func() (bool, error) {
		pr := p.procs[pid]
		if pr == nil {
			return false, fmt.Errorf("cluster: worker %d's replacement (pid %d) exited before it was ready; the old worker keeps serving", id, pid)
		}
		return pr.state == StateReady, nil
	}, done)
}
