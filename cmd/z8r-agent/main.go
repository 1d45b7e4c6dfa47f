// Command z8r-agent is the node executor: it runs on every node with a ZFS
// pool and serves the agent protocol over SSH (see internal/agent).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/crypto/ssh"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/health"
	"github.com/z8r-project/z8r/internal/nodepublish"
	"github.com/z8r-project/z8r/zfsexec"
)

func main() {
	var (
		nodeName       = flag.String("node-name", os.Getenv("NODE_NAME"), "name of this node (default $NODE_NAME)")
		listen         = flag.String("listen", ":2022", "SSH listen address")
		pools          = flag.String("pools", "", "comma-separated pools this agent may touch (required): the default, which this node's Z8RNode spec.pools, set by an administrator, replaces")
		hostKeyPath    = flag.String("host-key", "/var/lib/z8r/host_key", "host key file; created on first start, keep it on a host path. It is also this node's identity when it dials another agent for a transfer the controller granted")
		authorizedKeys = flag.String("authorized-keys", "/etc/z8r/authorized-keys", "authorized client keys: a file, or a folder of files (a mounted Secret)")
		zfsPrefix      = flag.String("zfs-prefix", "", "argv prefix for zfs and zpool, split on spaces (e.g. \"nsenter -t 1 -m --\" to use the host's zfs)")
		printHostKey   = flag.Bool("print-host-key", false, "print the public host key (creating it if needed) and exit")
		progressEvery  = flag.Duration("progress-interval", time.Second, "how often transfers report progress")
		commandLog     = flag.String("command-log", "", "append the argv of every command the agent starts to this file (audit)")
		publish        = flag.Bool("publish", true, "publish this node's Z8RNode status through the Kubernetes API")
		kubeconfig     = flag.String("kubeconfig", "", "kubeconfig for publishing (default: in-cluster config)")
		advertise      = flag.String("advertise-address", "", "host:port other nodes and the controller use to reach this agent (default: $POD_IP with the listen port)")
		publishEvery   = flag.Duration("publish-interval", 30*time.Second, "how often to refresh the Z8RNode status")
		healthAddr     = flag.String("health-addr", "", "HTTP address of /healthz, /readyz (zfs answers and every pool exists) and /metrics, served without authentication: keep it on loopback, e.g. 127.0.0.1:2023 (empty: off)")
		auditLog       = flag.String("audit-log", "", "also append every request's audit record (client key fingerprint, remote address, argv, outcome) to this file as JSON lines; the records always go to the agent's log")

		maxUnauth        = flag.Int("max-unauth-conns", agent.DefaultMaxUnauthConns, "cap on connections that have not authenticated yet; more are closed at once")
		maxUnauthPerAddr = flag.Int("max-unauth-conns-per-addr", agent.DefaultMaxUnauthPerAddr, "cap on unauthenticated connections per remote IP address")
		handshakeTimeout = flag.Duration("handshake-timeout", agent.DefaultHandshakeTimeout, "time a connection has to authenticate")
		maxOutput        = flag.Int64("max-output", agent.DefaultMaxOutput, "bound in bytes on the output of a non-stream command (negative: none)")
		requestTimeout   = flag.Duration("request-timeout", agent.DefaultRequestTimeout, "deadline of a non-stream request (negative: none)")
		stallTimeout     = flag.Duration("stall-timeout", agent.DefaultStallTimeout, "abort a transfer or zfs send/recv that moved no byte for this long (negative: never)")
		dataPlaintext    = flag.Bool("data-plaintext", false, "INSECURE, for trusted networks only: allow agent-to-agent streams on a plaintext data connection instead of TLS. Used only when both agents of a transfer have this flag; the connection is still authenticated by a one-time token from the SSH channel, but anyone on the network path can read and alter the replicated data")
		cpuProfile       = flag.String("cpu-profile", "", "write a Go CPU profile (pprof) to this file from start until the agent stops on SIGTERM/SIGINT (empty: off); for diagnosing the data path")
		bandwidthLimit   = flag.String("bandwidth-limit", "", "cap, in bytes per second, on everything this node sends in transfers, all of them together (a quantity: 50Mi is 50 MiB/s; empty: none); a replication's spec.bandwidthLimit applies as well")
	)
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	log := zap.New(zap.UseFlagOptions(&opts)).WithName("agent").WithValues("node", *nodeName)

	hostKey, err := agent.LoadOrCreateKey(*hostKeyPath)
	if err != nil {
		fail(log, err, "load host key")
	}
	if *printHostKey {
		fmt.Println(agent.MarshalPublicKey(hostKey.PublicKey()))
		return
	}
	if *pools == "" {
		fail(log, errors.New("--pools is required"), "bad flags")
	}
	var prefix []string
	if *zfsPrefix != "" {
		prefix = strings.Fields(*zfsPrefix)
	}
	var runner zfsexec.Runner = zfsexec.LocalRunner{Prefix: prefix}
	if *commandLog != "" {
		f, err := os.OpenFile(*commandLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			fail(log, err, "open command log")
		}
		defer f.Close()
		runner = agent.AuditRunner{Next: runner, W: f}
	}
	var auditW io.Writer
	if *auditLog != "" {
		f, err := os.OpenFile(*auditLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			fail(log, err, "open audit log")
		}
		defer f.Close()
		auditW = f
	}
	var rateLimit int64
	if *bandwidthLimit != "" {
		q, err := resource.ParseQuantity(*bandwidthLimit)
		if err != nil || q.Sign() < 0 {
			fail(log, fmt.Errorf("--bandwidth-limit %q: want a non-negative quantity such as 50Mi: %v", *bandwidthLimit, err), "configure server")
		}
		rateLimit = q.Value()
	}
	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fail(log, err, "start cpu profile")
		}
		defer stopProfile()
		log.Info("writing a cpu profile until the agent stops", "file", *cpuProfile)
	}
	srv, err := agent.NewServer(agent.ServerConfig{
		HostKey:          hostKey,
		AuthorizedKeys:   agent.AuthorizedKeysFile(*authorizedKeys),
		Policy:           agent.Policy{Pools: strings.Split(*pools, ",")},
		Runner:           runner,
		ProgressInterval: *progressEvery,
		Log:              log,
		AuditLog:         auditW,
		MaxUnauthConns:   *maxUnauth,
		MaxUnauthPerAddr: *maxUnauthPerAddr,
		HandshakeTimeout: *handshakeTimeout,
		MaxOutput:        *maxOutput,
		RequestTimeout:   *requestTimeout,
		StallTimeout:     *stallTimeout,
		RateLimit:        rateLimit,
		DataPlaintext:    *dataPlaintext,
	})
	if err != nil {
		fail(log, err, "configure server")
	}
	if _, err := agent.AuthorizedKeysFile(*authorizedKeys)(); err != nil {
		log.Error(err, "authorized keys unusable: every login is refused until they are fixed")
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fail(log, err, "listen")
	}
	if *dataPlaintext {
		log.Info("plaintext data connections allowed (--data-plaintext): streams to and from agents that allow them too travel unencrypted; use only on a trusted network")
	}
	log.Info("agent listening", "addr", l.Addr().String(), "hostKey", ssh.FingerprintSHA256(hostKey.PublicKey()), "pools", *pools)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *publish {
		addr := *advertise
		if addr == "" {
			_, port, _ := net.SplitHostPort(l.Addr().String())
			addr = net.JoinHostPort(os.Getenv("POD_IP"), port)
		}
		cfg, err := restConfig(*kubeconfig)
		if err != nil {
			fail(log, err, "kubernetes client config")
		}
		scheme := runtime.NewScheme()
		_ = z8rv1.AddToScheme(scheme)
		c, err := client.New(cfg, client.Options{Scheme: scheme})
		if err != nil {
			fail(log, err, "kubernetes client")
		}
		p := &nodepublish.Publisher{Client: c, Node: *nodeName, Address: addr, HostKey: hostKey.PublicKey(),
			Pools: strings.Split(*pools, ","), OnPools: srv.SetPools, ZFS: zfsexec.New(runner), Interval: *publishEvery, Log: log.WithName("publish")}
		// The pools in force before the first request is served: an
		// administrator's spec.pools may name fewer than --pools.
		for {
			_, _, err := p.Apply(ctx)
			if err == nil {
				break
			}
			log.Error(err, "reading this node's pools failed; not serving until they are known")
			select {
			case <-ctx.Done():
				fail(log, ctx.Err(), "stopped before the pools were known")
			case <-time.After(2 * time.Second):
			}
		}
		go p.Run(ctx)
	}
	if *healthAddr != "" {
		hs, err := startHealth(ctx, *healthAddr, zfsexec.New(runner), srv)
		if err != nil {
			fail(log, err, "health server")
		}
		log.Info("health and metrics listening", "addr", hs)
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(l); err != nil {
		fail(log, err, "serve")
	}
	log.Info("agent stopped")
}

// startHealth serves /healthz, /readyz and /metrics on addr until ctx ends
// and returns the address it listens on. Ready means zfs answers and every
// allowed pool (as in force now) exists.
func startHealth(ctx context.Context, addr string, z *zfsexec.ZFS, srv *agent.Server) (string, error) {
	hs := &health.Server{Check: func(ctx context.Context) error {
		for _, pool := range srv.Pools() {
			ok, err := z.Exists(ctx, pool)
			if err != nil {
				return fmt.Errorf("zfs does not answer: %w", err)
			}
			if !ok {
				return fmt.Errorf("pool %s does not exist", pool)
			}
		}
		return nil
	}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), hs.ReadyCollector(),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "z8r_agent_refused_connections_total",
			Help: "Connections closed at once because they were over a pre-authentication cap."},
			func() float64 { return float64(srv.Stats().RefusedConns) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "z8r_agent_accept_errors_total",
			Help: "Temporary accept errors the agent retried."},
			func() float64 { return float64(srv.Stats().AcceptErrors) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "z8r_agent_unauthenticated_connections",
			Help: "Open connections that have not authenticated yet."},
			func() float64 { return float64(srv.Stats().Unauthenticated) }))
	hs.Gatherer = reg
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	server := &http.Server{Handler: hs.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = server.Serve(l) }()
	go func() {
		<-ctx.Done()
		_ = server.Close()
	}()
	return l.Addr().String(), nil
}

// startCPUProfile writes a CPU profile to path until the returned function
// is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return rest.InClusterConfig()
}

func fail(log logr.Logger, err error, msg string) {
	log.Error(err, msg)
	os.Exit(1)
}
