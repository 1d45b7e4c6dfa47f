package agentproc

import (
	"context"
	"net"

	"github.com/z8r-project/z8r/internal/testbed/netns"
)

func dialIn(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	return netns.DialIn(ctx, nsPath, "tcp", addr)
}
