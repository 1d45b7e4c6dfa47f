// Command z8r-controller runs z8r's reconcilers (leader-elected): node
// annotations to DatasetReplications, scheduled snapshots, replication,
// retention, and agent host-key pinning. Its Prometheus metrics are served
// over HTTPS only to callers the API server authenticates and authorizes
// (get on /metrics, ClusterRole z8r-metrics-reader).
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/controllers"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/schedule"
)

func main() {
	var (
		metricsAddr = flag.String("metrics-bind-address", ":8443", "address of the Prometheus metrics endpoint, served over HTTPS to callers the API server authenticates and authorizes (get on nonResourceURL /metrics); 0 disables")
		metricsCert = flag.String("metrics-cert-dir", "", "folder with the metrics endpoint's tls.crt and tls.key, reloaded when they change (empty: a self-signed certificate made at start)")
		probeAddr   = flag.String("health-probe-bind-address", ":8081", "health and readiness probe address")
		leaderElect = flag.Bool("leader-elect", true, "elect a leader so only one controller acts at a time")
		leaderNS    = flag.String("leader-election-namespace", "", "namespace of the leader lease (default: the pod's)")
		sshKey      = flag.String("ssh-key", "/etc/z8r/controller-key/id_ed25519", "private key the controller presents to node agents")
		prefix      = flag.String("snapshot-prefix", "z8r", "name prefix of the snapshots z8r takes")
		drivers     = flag.String("snapshot-drivers", "", "comma-separated CSI drivers, besides zfs.z8r.dev, whose VolumeSnapshots z8r takes (their volumes must resolve to ZFS datasets)")
		progress    = flag.Duration("progress-interval", controllers.DefaultProgressInterval, "how often a running sync's bytes, rate and estimated completion are written to the replication's status (at most 10s)")
		perNode     = flag.Int("max-transfers-per-node", controllers.DefaultTransferLimits.PerNode, "at most this many transfers send from or receive on one node at a time; more wait their turn, first come first served (0: no limit)")
		maxTotal    = flag.Int("max-transfers", controllers.DefaultTransferLimits.Total, "at most this many transfers in the cluster at a time (0: no limit)")
		detach      = flag.Duration("detach-after", controllers.DefaultDetachAfter, "how long a reconcile waits for a sync that is transferring before it leaves it running in the background and takes the next replication (0: at once)")
		workers     = flag.Int("replication-workers", 4, "DatasetReplication reconciles at once; a transfer that runs longer than a second continues in the background and frees its worker")
		clockOffset = flag.Duration("clock-offset", 0, "testing only: run the controller's clock this far ahead of the wall clock (the chaos suite brings schedules round with it); never set it in production")
	)
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")
	if *progress <= 0 || *progress > 10*time.Second {
		log.Error(nil, "--progress-interval must be above 0 and at most 10s", "progressInterval", progress.String())
		os.Exit(2)
	}
	if *perNode < 0 || *maxTotal < 0 {
		log.Error(nil, "--max-transfers-per-node and --max-transfers must be 0 (no limit) or more", "perNode", *perNode, "total", *maxTotal)
		os.Exit(2)
	}

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = z8rv1.AddToScheme(scheme)
	_ = corev1.AddToScheme(scheme)
	_ = snapshotv1.AddToScheme(scheme)

	if err := checkCertDir(*metricsCert); err != nil {
		log.Error(err, "bad flags")
		os.Exit(1)
	}
	signer, err := agent.LoadKey(*sshKey)
	if err != nil {
		log.Error(err, "load controller key")
		os.Exit(1)
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOptions(*metricsAddr, *metricsCert),
		HealthProbeBindAddress:  *probeAddr,
		LeaderElection:          *leaderElect,
		LeaderElectionID:        "z8r-controller.z8r.dev",
		LeaderElectionNamespace: *leaderNS,
		// The process ends as soon as the manager stops (main returns),
		// so stepping down is safe, and a replacement pod leads at once
		// instead of after the lease runs out.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		log.Error(err, "create manager")
		os.Exit(1)
	}
	if err := controllers.Setup(mgr, controllers.Config{
		Agents:             &controllers.AgentPool{Client: mgr.GetClient(), Signer: signer},
		Clock:              clock(*clockOffset),
		SnapshotPrefix:     *prefix,
		SnapshotDrivers:    strings.Split(*drivers, ","),
		ProgressInterval:   *progress,
		TransferLimits:     &controllers.TransferLimits{PerNode: *perNode, Total: *maxTotal},
		ReplicationWorkers: *workers,
		DetachAfter:        detachAfter(*detach),
	}); err != nil {
		log.Error(err, "set up controllers")
		os.Exit(1)
	}
	_ = mgr.AddHealthzCheck("healthz", healthz.Ping)
	_ = mgr.AddReadyzCheck("readyz", healthz.Ping)
	log.Info("starting controller")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}

// metricsOptions serves /metrics over HTTPS on addr, only to callers the
// API server authenticates (TokenReview) and authorizes (SubjectAccessReview
// for get on the nonResourceURL /metrics, which the ClusterRole
// z8r-metrics-reader grants). The certificate comes from certDir (tls.crt,
// tls.key, watched for changes) or, when certDir is empty, is self-signed at
// start. HTTP/2 is off (the endpoint needs none of it, and it keeps the server out
// of HTTP/2's stream-reset floods).
func metricsOptions(addr, certDir string) metricsserver.Options {
	return metricsserver.Options{
		BindAddress:    addr,
		SecureServing:  true,
		FilterProvider: filters.WithAuthenticationAndAuthorization,
		CertDir:        certDir,
		TLSOpts:        []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
}

// checkCertDir fails when certDir is set but lacks tls.crt or tls.key:
// controller-runtime would otherwise fall back to a self-signed certificate
// without a word.
func checkCertDir(certDir string) error {
	if certDir == "" {
		return nil
	}
	for _, name := range []string{"tls.crt", "tls.key"} {
		if _, err := os.Stat(filepath.Join(certDir, name)); err != nil {
			return fmt.Errorf("metrics certificate: %w", err)
		}
	}
	return nil
}

// offsetClock is the wall clock moved by a fixed offset (--clock-offset).
type offsetClock struct{ offset time.Duration }

func (c offsetClock) Now() time.Time { return time.Now().Add(c.offset) }

// clock is the controller's clock: the wall clock, or the wall clock moved
// by offset for tests that bring schedules round without waiting.
func clock(offset time.Duration) schedule.Clock {
	if offset == 0 {
		return schedule.RealClock{}
	}
	return offsetClock{offset: offset}
}

// detachAfter is --detach-after as controllers.Config.DetachAfter, where
// 0 is the default and a negative value means at once.
func detachAfter(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
