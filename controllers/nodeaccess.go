package controllers

import (
	"context"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/replicate"
)

// NodeAccess is all the reconcilers need of the nodes: a node's agent
// (its ZFS commands and, on a source, transfers to another agent), and a
// way to drop a connection an error showed failed. *AgentPool implements
// it over SSH; tests may implement it over in-memory nodes.
type NodeAccess interface {
	// Get returns node reached through its agent. Its errors match
	// ErrNodeUnknown (no Z8RNode), ErrHostKeyUnknown (key not pinned yet),
	// ErrNodeNotReady, *hostkeys.ChangedError (the agent presents another
	// key than the pinned one), or are the connection's own.
	Get(ctx context.Context, node string) (*Node, error)
	// DropFailed drops those of nodes' connections that err shows failed
	// (see AgentPool.DropFailed); an error an agent reported over a
	// working connection drops nothing.
	DropFailed(err error, nodes ...*Node)
}

var _ NodeAccess = (*AgentPool)(nil)

// Node is a node reached through its agent, with what was read about it
// from its Z8RNode.
type Node struct {
	// Endpoint runs the node's ZFS commands (ZFS) and, on a source, its
	// transfers to another agent (Transfer).
	replicate.Endpoint
	Name string
	// Address and HostKey are the agent's address and pinned host key,
	// which a transfer's grant names for a target.
	Address string
	HostKey string

	// conn is the pooled connection behind Endpoint (nil when the Node
	// does not come from an AgentPool).
	conn *agent.Client
}
