// Package agentproc runs real z8r-agent processes for tests: each agent is
// the built cmd/z8r-agent binary, started inside its zfsnodes.Node's mount
// namespace (and network namespace, when the node has one), listening on
// the node's own address, with keys generated for the test.
//
// Contract: the binary is built once per test process; every agent is
// stopped in t.Cleanup and dies with the test process (Pdeathsig); Stop
// and Start let a test take an agent down and bring it back with the same
// host key.
package agentproc
