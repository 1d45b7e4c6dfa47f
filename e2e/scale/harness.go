//go:build scale

package scale

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/z8r-project/z8r/controllers"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
)

// countedController runs z8r's reconcilers in this process, as
// cluster.StartController does, with every API request counted. QPS is
// unlimited, as in cmd/z8r-controller (controller-runtime's GetConfig).
type countedController struct {
	Counter *Counter
	stop    context.CancelFunc
	done    chan struct{}
}

func startCountedController(t *testing.T, c *cluster.Cluster) *countedController {
	t.Helper()
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	cfg := rest.CopyConfig(c.Kube.Config)
	cfg.QPS, cfg.Burst = -1, 0
	cc := &countedController{Counter: NewCounter(), done: make(chan struct{})}
	cfg.Wrap(cc.Counter.Wrap)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 c.Kube.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controllers.Setup(mgr, controllers.Config{Agents: c.Pool, Metrics: c.Metrics, SkipNameValidation: true}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cc.stop = cancel
	go func() {
		defer close(cc.done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("controller: %v", err)
		}
	}()
	t.Cleanup(cc.Stop)
	return cc
}

// Stop stops the controller and waits for it.
func (cc *countedController) Stop() {
	cc.stop()
	<-cc.done
}

// reconciles returns controller-runtime's reconcile_total for one
// controller, summed over results (the in-process controllers only).
func reconciles(t *testing.T, controller string) int {
	t.Helper()
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "controller") == controller {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int(n)
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// waitQuiet waits until the controller's reconcile count has grown by at
// least want and then stayed still for quiet, or timeout.
func waitQuiet(t *testing.T, controller string, base, want int, quiet, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last, since := -1, time.Now()
	for time.Now().Before(deadline) {
		n := reconciles(t, controller)
		if n != last {
			last, since = n, time.Now()
		}
		if n-base >= want && time.Since(since) >= quiet {
			return n - base
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: %d reconciles after %s, want at least %d then %s quiet", controller, last-base, timeout, want, quiet)
	return 0
}

// waitExec waits until pid (nsenter, started by StartControllerProcess)
// has exec'd the controller binary, so that its memory is the
// controller's.
func waitExec(t *testing.T, pid int) {
	t.Helper()
	var comm []byte
	for range 100 {
		comm, _ = os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.HasPrefix(string(comm), "z8r-controller") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("pid %d is %q after 10s, not the controller binary", pid, strings.TrimSpace(string(comm)))
}

// memory is a process's resident set now and its peak (kB, from
// /proc/<pid>/status).
type memory struct{ RSS, HWM int }

func readMemory(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, fmt.Errorf("read status of %d: %w", pid, err)
	}
	var m memory
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			m.RSS = v
		case "VmHWM:":
			m.HWM = v
		}
	}
	return m, nil
}

// rssSampler samples pid's memory every 500 ms until ctx ends, then sends
// the largest VmRSS seen and the last VmHWM. (StartControllerProcess runs
// nsenter, which execs the controller binary: its pid is the controller's.)
func rssSampler(ctx context.Context, pid int) <-chan memory {
	out := make(chan memory, 1)
	go func() {
		defer close(out)
		var peak memory
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			if m, err := readMemory(pid); err == nil {
				if m.RSS > peak.RSS {
					peak.RSS = m.RSS
				}
				peak.HWM = m.HWM
			}
			select {
			case <-ctx.Done():
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// cmdLog reads an agent's --command-log: one JSON line per command.
type cmdLog struct{ path string }

// Commands returns the commands logged so far, as "zfs list", "zfs send",
// ... (the argv's first two words).
func (l cmdLog) Commands(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(l.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Argv []string `json:"argv"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			continue
		}
		k := strings.Join(line.Argv[:min(2, len(line.Argv))], " ")
		out = append(out, k)
	}
	return out
}

// commandCounts counts the commands of every node's log from index
// from[node], in all ("zfs get") and by node ("node: zfs get"); it returns
// the counts and the logs' lengths.
func commandCounts(t *testing.T, logs map[string]cmdLog, from map[string]int) (map[string]int, map[string]int) {
	t.Helper()
	counts, next := map[string]int{}, map[string]int{}
	for node, l := range logs {
		cmds := l.Commands(t)
		next[node] = len(cmds)
		for _, c := range cmds[min(from[node], len(cmds)):] {
			counts[c]++
			counts[node+": "+c]++
		}
	}
	return counts, next
}

func formatCommands(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// percentile returns the p-th percentile (0..100) of sorted durations
// (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}
