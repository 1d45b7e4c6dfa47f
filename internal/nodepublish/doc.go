// Package nodepublish keeps a node's Z8RNode object current: the agent
// publishes its address, host key, pools, ZFS implementation, version and
// capabilities, and readiness, so the controller and `kubectl get z8rnodes`
// see them.
//
// It also brings the pools in force to the agent: the Z8RNode's
// spec.pools, set by an administrator for this node, else the agent's own
// --pools (the DaemonSet's default). Publisher.Apply reads them and hands a
// change to OnPools (agent.Server.SetPools); the agent calls it once before
// it serves and then at every refresh. status.pools and status.poolsFrom
// show what is in force.
//
// Contract: Publish writes only the object's status (and creates the
// object, with an empty spec, when it does not exist); it never touches
// the spec (pinnedHostKey, pools), which is the controller's and the
// administrator's.
package nodepublish
