package cluster

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/prometheus/client_golang/prometheus"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/controllers"
	"github.com/z8r-project/z8r/internal/schedule"
	"github.com/z8r-project/z8r/internal/testbed/agentproc"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/netns"
	"github.com/z8r-project/z8r/internal/testbed/tb"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
)

// NodeSpec describes one simulated node.
type NodeSpec struct {
	Name  string
	Pools []string // default {"tank"}
	// Labels and Annotations of the Kubernetes Node object.
	Labels      map[string]string
	Annotations map[string]string
	// AgentArgs are extra agent flags (e.g. --command-log).
	AgentArgs []string
	// PoolSize of each pool's backing file (zfsnodes default: 512M).
	PoolSize string
}

// Options describe the cluster.
type Options struct {
	Nodes              []NodeSpec
	SnapshotController bool
	// ControllerManager, when not empty, runs kube-controller-manager with these
	// controllers (kubeenv.Options.ControllerManager; kubeenv.VolumeControllers binds
	// PVCs to PVs).
	ControllerManager []string
	// Clock for the controller (default: real time).
	Clock schedule.Clock
	// Verbose controller logs.
	Verbose bool
	// SnapshotDrivers are served besides zfs.z8r.dev (controllers.Config).
	SnapshotDrivers []string
	// SnapshotHooks inject faults into the snapshotter.
	SnapshotHooks controllers.SnapshotHooks
	// TransferLimits of the controller (nil: its defaults).
	TransferLimits *controllers.TransferLimits
	// ReplicationWorkers of the controller (0: its default).
	ReplicationWorkers int
}

// Cluster is a running test bed.
type Cluster struct {
	Kube    *kubeenv.Env
	Net     *netns.Network
	Nodes   map[string]*zfsnodes.Node
	Agents  map[string]*agentproc.Agent
	Keys    *agentproc.Keys
	Pool    *controllers.AgentPool
	Metrics *controllers.Metrics
	// Registry holds the controller's metrics.
	Registry *prometheus.Registry
	// AgentKubeconfig is the kubeconfig agents use (through the hub).
	AgentKubeconfig string

	t          tb.TB
	stopCtrl   context.CancelFunc
	ctrlDone   chan struct{}
	clock      schedule.Clock
	verbose    bool
	controller bool
	drivers    []string
	hooks      controllers.SnapshotHooks
	limits     *controllers.TransferLimits
	workers    int
	// controller processes (process.go)
	procRuns   int
	procLogDir string
}

// Start brings up the control plane, network, nodes and agents; call
// StartController to run the controller.
func Start(t tb.TB, opts Options) *Cluster {
	t.Helper()
	names := make([]string, 0, len(opts.Nodes))
	for _, n := range opts.Nodes {
		names = append(names, n.Name)
	}
	c := &Cluster{t: t, Nodes: map[string]*zfsnodes.Node{}, Agents: map[string]*agentproc.Agent{}, clock: opts.Clock, verbose: opts.Verbose,
		drivers: opts.SnapshotDrivers, hooks: opts.SnapshotHooks, limits: opts.TransferLimits, workers: opts.ReplicationWorkers}
	if c.clock == nil {
		c.clock = schedule.RealClock{}
	}
	c.Kube = kubeenv.Start(t, kubeenv.Options{SnapshotController: opts.SnapshotController, ControllerManager: opts.ControllerManager})
	c.Net = netns.New(t, names...)
	u, err := url.Parse(c.Kube.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	apiAddr := c.Net.Forward(t, 6443, u.Host)
	c.AgentKubeconfig = writeAgentKubeconfig(t, c.Kube.Kubeconfig, "https://"+apiAddr, u.Hostname())
	c.Keys = agentproc.NewKeys(t)
	for _, spec := range opts.Nodes {
		pools := spec.Pools
		if len(pools) == 0 {
			pools = []string{"tank"}
		}
		n := zfsnodes.Start(t, zfsnodes.Options{Pools: pools, PoolSize: spec.PoolSize, NetNS: map[string]string{spec.Name: c.Net.NS(spec.Name)}}, spec.Name)[0]
		c.Nodes[spec.Name] = n
		c.Kube.CreateNode(t, spec.Name, spec.Labels, spec.Annotations)
		c.Agents[spec.Name] = agentproc.Start(t, n, c.Keys, agentproc.Options{
			Addr: c.Net.Addr(spec.Name) + ":2022", Kubeconfig: c.AgentKubeconfig, ExtraArgs: spec.AgentArgs,
		})
	}
	c.Registry = prometheus.NewRegistry()
	c.Metrics = controllers.NewMetrics(c.Registry)
	c.Pool = &controllers.AgentPool{Client: c.Kube.Client, Signer: c.Keys.Controller, Dial: c.Net.DialContext}
	t.Cleanup(c.Pool.Close)
	return c
}

// writeAgentKubeconfig copies the admin kubeconfig with the server moved to
// the hub address; TLS still verifies the API server's certificate for its
// original host name.
func writeAgentKubeconfig(t tb.TB, adminPath, server, tlsServerName string) string {
	cfg, err := clientcmd.LoadFromFile(adminPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		cl.Server = server
		cl.TLSServerName = tlsServerName
	}
	path := filepath.Join(t.TempDir(), "agent-kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// StartController runs z8r's reconcilers in this process until Cleanup
// (or StopController).
func (c *Cluster) StartController() {
	c.t.Helper()
	if c.stopCtrl != nil {
		return
	}
	ctrl.SetLogger(zap.New(zap.UseDevMode(c.verbose), zap.WriteTo(logWriter{c.t, c.verbose})))
	mgr, err := ctrl.NewManager(c.Kube.Config, ctrl.Options{
		Scheme:                 c.Kube.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		LeaderElection:         false,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := controllers.Setup(mgr, controllers.Config{Agents: c.Pool, Clock: c.clock, Metrics: c.Metrics, SkipNameValidation: true,
		SnapshotDrivers: c.drivers, SnapshotHooks: c.hooks, TransferLimits: c.limits, ReplicationWorkers: c.workers}); err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stopCtrl, c.ctrlDone = cancel, make(chan struct{})
	go func() {
		defer close(c.ctrlDone)
		if err := mgr.Start(ctx); err != nil {
			c.t.Errorf("controller: %v", err)
		}
	}()
	c.t.Cleanup(c.StopController)
}

// StopController stops the in-process controller.
func (c *Cluster) StopController() {
	if c.stopCtrl == nil {
		return
	}
	c.stopCtrl()
	<-c.ctrlDone
	c.stopCtrl = nil
}

type logWriter struct {
	t       tb.TB
	verbose bool
}

func (w logWriter) Write(p []byte) (int, error) {
	if w.verbose {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}

// Annotate sets (or, with value "", removes) annotations on a Node.
func (c *Cluster) Annotate(ctx context.Context, node string, ann map[string]string) error {
	var n corev1.Node
	if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: node}, &n); err != nil {
		return err
	}
	patch := client.MergeFrom(n.DeepCopy())
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	for k, v := range ann {
		if v == "" {
			delete(n.Annotations, k)
		} else {
			n.Annotations[k] = v
		}
	}
	return c.Kube.Client.Patch(ctx, &n, patch)
}

// WaitZ8RNodesReady waits until every node's agent published a ready
// Z8RNode whose host key the controller pinned.
func (c *Cluster) WaitZ8RNodesReady(ctx context.Context, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for name := range c.Nodes {
			var zn z8rv1.Z8RNode
			if err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: name}, &zn); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			if !zn.Status.Ready || zn.Spec.PinnedHostKey == "" {
				return false, nil
			}
		}
		return true, nil
	})
}

// Replication returns a DatasetReplication by name.
func (c *Cluster) Replication(ctx context.Context, name string) (*z8rv1.DatasetReplication, error) {
	var dr z8rv1.DatasetReplication
	err := c.Kube.Client.Get(ctx, client.ObjectKey{Name: name}, &dr)
	return &dr, err
}

// Events returns the events about an object, oldest first, as
// "Type Reason: note" lines.
func (c *Cluster) Events(ctx context.Context, name string) ([]string, error) {
	var list corev1.EventList
	if err := c.Kube.Client.List(ctx, &list); err != nil {
		return nil, err
	}
	sort.Slice(list.Items, func(i, j int) bool { return eventTime(list.Items[i]).Before(eventTime(list.Items[j])) })
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name || (e.Related != nil && e.Related.Name == name) {
			out = append(out, fmt.Sprintf("%s %s: %s", e.Type, e.Reason, e.Message))
		}
	}
	return out, nil
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}
