package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/z8r-project/z8r/internal/pvresolve"
)

// pvNodeIDs is what pvresolve.Resolve needs to resolve a zfs-localpv PV
// pinned with openebs.io/nodeid: the Nodes' labels of that key. If the
// Nodes cannot be listed, such a PV stays unresolved (ErrIncomplete, with
// a message naming the label) and every other PV resolves as before.
func pvNodeIDs(ctx context.Context, c client.Reader) pvresolve.Options {
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return pvresolve.Options{}
	}
	return pvresolve.Options{NodeByID: pvresolve.NodeIDs(nodes.Items)}
}
