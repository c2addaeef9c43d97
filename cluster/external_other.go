//go:build !linux

package cluster

import "fmt"

// external is not available off Linux: it needs the parent-death signal.
type external struct{}

func startExternal(*primary) (*external, error) {
	return nil, fmt.Errorf("%w: running an external program needs Linux", ErrBadExec)
}

func (e *external) spawn(*primary, int) (int, handle, error) {
	return 0, nil, fmt.Errorf("%w: running an external program needs Linux", ErrBadExec)
}

func (e *external) close() {}

// ExecHelper fails off Linux.
func ExecHelper() error { return fmt.Errorf("%w: needs Linux", ErrBadExec) }
