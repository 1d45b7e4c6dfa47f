package kubenode

import (
	"os"
	"path/filepath"
	"time"

	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/tb"
)

// BinScheduler is kube-scheduler's name in kubeenv's tool folder.
const BinScheduler = "kube-scheduler"

// StartScheduler runs kube-scheduler against env, in the host's network
// namespace, as a system:masters user, without leader election or a port
// of its own; it is stopped in t.Cleanup. It returns once the process
// runs: tests poll for their pods to be scheduled.
func StartScheduler(t tb.TB, env *kubeenv.Env) {
	t.Helper()
	bin := filepath.Join(env.BinDir, BinScheduler)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("kubenode: %s missing: run make kube-tools", bin)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "scheduler.kubeconfig")
	u := env.Config.Host
	if err := writeKubeconfig(env.Environment, "z8r-kube-scheduler", trimScheme(u), kubeconfig); err != nil {
		t.Fatalf("kubenode: scheduler: %v", err)
	}
	p, err := startProc(BinScheduler, filepath.Join(dir, "kube-scheduler.log"), []string{
		bin,
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--kube-api-qps=100",
		"--kube-api-burst=200",
		"--v=2",
	})
	if err != nil {
		t.Fatalf("kubenode: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("kubenode: kube-scheduler log:\n%s", tailLines(string(b), 30))
		}
		if err := p.stop(10 * time.Second); err != nil {
			t.Errorf("kubenode: %v", err)
		}
	})
}
