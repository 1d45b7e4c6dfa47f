// Package nodepublish keeps a node's Z8RNode object current: the agent
// publishes its address, host key, pools, ZFS implementation, version and
// capabilities, and readiness, so the controller and `kubectl get z8rnodes`
// see them.
//
// Contract: Publish writes only the object's status (and creates the
// object, with an empty spec, when it does not exist); it never touches
// spec.pinnedHostKey, which is the controller's and the administrator's.
package nodepublish
