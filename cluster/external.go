package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// Exec makes the cluster run an external program as its workers instead of
// re-executing this binary: what "herd run" does. Each worker is the
// program, started in its own process group, serving the primary's socket,
// which it finds the way it already knows:
//
//   - systemd's socket activation: fd 3, LISTEN_FDS=1, LISTEN_FDNAMES=http
//     and LISTEN_PID equal to the program's own pid;
//   - einhorn's EINHORN_FD_COUNT=1 and EINHORN_FD_0=3;
//   - server-starter's SERVER_STARTER_PORT="host:port=3";
//   - "{fd}" in its arguments, replaced by 3 ("{port}" by the port);
//   - for Node.js, a preload module (in NODE_OPTIONS) that turns
//     listen(PORT) on herd's port into listen({fd: 3}); PORT and HERD_PORT
//     hold the port. On StopSignal (HERD_STOP_SIGNAL), if the program has
//     no handler of its own for it, the preload drains its HTTP servers
//     (stop accepting, Connection: close, idle connections closed after a
//     second) and exits 0 once their connections are gone.
//
// HERD_RUN_WORKER holds the worker's id (1..N). NOTIFY_SOCKET is a private
// sd_notify socket per worker: READY=1 on it marks the worker ready, and
// from its first WATCHDOG=1 on, the program must send one at least every
// Options.WorkerTimeout (WATCHDOG_USEC) or it is killed and replaced.
// Without WATCHDOG=1 no heartbeat timeout applies.
//
// A process that uses Exec must call Run (or IsExecHelper and ExecHelper)
// before anything else: the primary starts this binary again in helper
// roles (the step that sets LISTEN_PID and executes the program, and the
// reaper that ends the programs' process groups, children included, when
// the primary dies). Linux only.
type Exec struct {
	// Path is the program's executable, as exec.LookPath resolved it.
	Path string
	// Args is the program's argv, Args[0] being its name; "{fd}" and
	// "{port}" in Args[1:] are replaced by 3 and the port.
	Args []string
	// StopSignal asks a worker to finish in-flight requests and exit; its
	// process group is killed Options.ShutdownTimeout later. Default SIGTERM.
	StopSignal syscall.Signal
	// ReadyProbe says when a worker is ready, besides READY=1 on its
	// notify socket, which always counts:
	//   ""            alive for ReadyAfter (the weakest sign);
	//   "notify"      only READY=1;
	//   "http:/path"  an answer below 500 to GET /path on a private probe
	//                 socket passed as fd 4 (LISTEN_FDS=2,
	//                 LISTEN_FDNAMES=http:probe), which the program must
	//                 serve as well as fd 3;
	//   "tcp"         the program accepted a connection on that probe
	//                 socket (seen in the socket's accept queue: a connect
	//                 alone succeeds before the program accepts).
	ReadyProbe string
	// ReadyAfter is how long a worker must stay alive to count as ready
	// when ReadyProbe is "". Default DefaultReadyAfter.
	ReadyAfter time.Duration
}

// DefaultReadyAfter is Exec.ReadyAfter's default.
const DefaultReadyAfter = time.Second

// EnvRunWorker holds an external program's worker id (1..N).
const EnvRunWorker = "HERD_RUN_WORKER"

// fdProbe names a worker's private probe socket.
const fdProbe = "probe"

// readyProbeTCP is Exec.ReadyProbe's value for the TCP probe.
const readyProbeTCP = "tcp"

// Helper roles of this binary, chosen by envHelper.
const (
	envHelper    = "HERD_EXEC_HELPER"
	envExecArgv  = "HERD_EXEC_ARGV"
	helperExec   = "exec"
	helperReaper = "reaper"
)

// ErrBadExec is wrapped by the errors for an unusable Options.Exec.
var ErrBadExec = errors.New("cluster: bad Exec")

func (x Exec) withDefaults() Exec {
	if x.StopSignal == 0 {
		x.StopSignal = syscall.SIGTERM
	}
	if x.ReadyAfter <= 0 {
		x.ReadyAfter = DefaultReadyAfter
	}
	return x
}

// check reports an unusable Exec.
func (x Exec) check() error {
	if x.Path == "" || len(x.Args) == 0 {
		return fmt.Errorf("%w: no program to run", ErrBadExec)
	}
	if x.ReadyProbe != "" && x.ReadyProbe != "notify" && x.ReadyProbe != readyProbeTCP && !strings.HasPrefix(x.ReadyProbe, "http:/") {
		return fmt.Errorf("%w: ReadyProbe %q is not \"\", \"notify\", \"tcp\" or \"http:/path\"", ErrBadExec, x.ReadyProbe)
	}
	return nil
}

// args returns Args with the placeholders replaced.
func (x Exec) args(port string) []string {
	out := make([]string, len(x.Args))
	for i, a := range x.Args {
		if i > 0 {
			a = strings.ReplaceAll(strings.ReplaceAll(a, "{fd}", "3"), "{port}", port)
		}
		out[i] = a
	}
	return out
}

// IsExecHelper reports whether this process was started by a primary
// running an Exec program, as one of its helpers. Then call ExecHelper and
// nothing else.
func IsExecHelper() bool { return os.Getenv(envHelper) != "" }

type execArgv struct {
	Path string   `json:"path"`
	Argv []string `json:"argv"`
}

func encodeArgv(path string, argv []string) string {
	b, _ := json.Marshal(execArgv{Path: path, Argv: argv})
	return string(b)
}
