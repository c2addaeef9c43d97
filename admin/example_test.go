package admin_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/herd-go/herd/admin"
	"github.com/herd-go/herd/cluster"
)

// A deploy script reloads the herd serving port 3000 and says why when a
// new worker would not start.
func ExampleClient() {
	c := admin.NewClient(cluster.ControlSocketPath(3000))
	ctx := context.Background()
	st, err := c.Reload(ctx)
	var failed *admin.CommandError
	switch {
	case errors.Is(err, admin.ErrNoPrimary):
		fmt.Println("herd is not running")
	case errors.As(err, &failed):
		fmt.Println("reload failed, the old workers keep serving:", failed.Reason)
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Printf("%d workers on %s\n", len(st.Workers), st.Addr)
	}
}
