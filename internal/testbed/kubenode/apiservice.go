package kubenode

import (
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/netns"
)

// apiService stands in, on one node, for what kube-proxy does for the
// default/kubernetes Service: the node's network namespace gets the
// Service's address (kubeenv.KubernetesServiceIP) on its loopback and a
// TCP forward from KubernetesServicePort there to the API server. A
// hostNetwork pod reaches it locally; a pod on the pod network reaches it
// through its default route, the node's bridge, since the address is the
// node's own. The API server's certificate names that address when the
// control plane was started with kubeenv.Options.InClusterAPI, so
// client-go's in-cluster configuration verifies it unchanged.
type apiService struct {
	l      net.Listener
	target string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// startAPIService adds the Service address to the loopback of the network
// namespace ns and forwards its port to target (host:port, dialled from
// the test process's namespace).
func startAPIService(ns, target string) (*apiService, error) {
	out, err := exec.Command("ip", "-n", ns, "addr", "add", kubeenv.KubernetesServiceIP+"/32", "dev", "lo").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "File exists") {
		return nil, fmt.Errorf("ip -n %s addr add %s: %w: %s", ns, kubeenv.KubernetesServiceIP, err, out)
	}
	addr := net.JoinHostPort(kubeenv.KubernetesServiceIP, strconv.Itoa(kubeenv.KubernetesServicePort))
	l, err := netns.ListenIn(filepath.Join("/run/netns", ns), addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s in %s: %w", addr, ns, err)
	}
	s := &apiService{l: l, target: target, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *apiService) serve() {
	defer s.wg.Done()
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			_ = c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			u, err := net.Dial("tcp", s.target)
			if err != nil {
				return
			}
			if !s.track(u) {
				_ = u.Close()
				return
			}
			defer s.untrack(u)
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
			<-done
		}()
	}
}

func (s *apiService) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *apiService) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	_ = c.Close()
}

// close stops the forward and closes every connection through it.
func (s *apiService) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	_ = s.l.Close()
	s.wg.Wait()
}

// RoutePodNetworks lets pods on the pod network of each node reach the
// other nodes and their pods: each node gets a route to every other
// node's pod subnet through that node's address. Without it a reply to a
// pod address leaves a node by no route (the CNI configuration does not
// masquerade). Routes go with the network namespaces.
func RoutePodNetworks(nodes ...*Node) error {
	for _, n := range nodes {
		for _, o := range nodes {
			if o == n {
				continue
			}
			out, err := exec.Command("ip", "-n", n.netns, "route", "replace", o.PodSubnet, "via", o.IP).CombinedOutput()
			if err != nil {
				return fmt.Errorf("kubenode: route %s to %s's pods: %w: %s", n.Name, o.Name, err, out)
			}
		}
	}
	return nil
}
