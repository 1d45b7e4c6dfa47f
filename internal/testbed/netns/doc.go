// Package netns builds test networks of Linux network namespaces: a hub
// namespace holding a bridge, and one namespace per node joined to it by a
// veth pair, with addresses that exist only inside those namespaces. The
// test process reaches nodes by dialing from the hub namespace
// (Network.DialContext), so no address is ever added to the host's own
// network.
//
// Contract: New needs root and iproute2 and fails the test without them;
// every namespace is deleted in t.Cleanup; namespaces left by a killed test
// binary (their owner process is gone) are deleted by the next New.
package netns
