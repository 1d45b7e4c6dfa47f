//go:build e2e

package replicate_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/retention"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/agentproc"
	"github.com/z8r-project/z8r/internal/testbed/netns"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/zfsexec"
)

// pair is two zfs-fuse nodes with agents, reached from the hub namespace.
type pair struct {
	src, dst       *zfsnodes.Node
	srcA, dstA     *agentproc.Agent
	srcC, dstC     *agent.Client
	target         func(ds string) replicate.Target
	srcPID, dstPID int
}

func newPair(b testing.TB, poolSize string) *pair {
	n := netns.New(b, "src", "dst")
	nodes := zfsnodes.Start(b, zfsnodes.Options{PoolSize: poolSize, NetNS: n.NSMap()}, "src", "dst")
	keys := agentproc.NewKeys(b)
	p := &pair{src: nodes[0], dst: nodes[1]}
	extra := func(name string) []string {
		var out []string
		for _, a := range strings.Fields(os.Getenv("Z8R_BENCH_AGENT_ARGS")) {
			out = append(out, strings.ReplaceAll(a, "{node}", name))
		}
		return out
	}
	p.srcA = agentproc.Start(b, p.src, keys, agentproc.Options{Addr: n.Addr("src") + ":2022", ExtraArgs: extra("src")})
	p.dstA = agentproc.Start(b, p.dst, keys, agentproc.Options{Addr: n.Addr("dst") + ":2022", ExtraArgs: extra("dst")})
	dial := func(a *agentproc.Agent) *agent.Client {
		c, err := agent.Dial(context.Background(), a.Addr, agent.ClientConfig{Signer: keys.Controller, HostKey: a.HostKey, Dial: n.DialContext, GrantAuthority: keys.Controller})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	p.srcC, p.dstC = dial(p.srcA), dial(p.dstA)
	p.target = func(ds string) replicate.Target {
		return replicate.Target{ID: "bench-" + strings.ReplaceAll(ds, "/", "-"), PolicyID: "bench", Endpoint: p.dstC,
			Addr: p.dstA.Addr, HostKey: p.dstA.PublicHostKey(), Dataset: ds}
	}
	return p
}

func fill(b testing.TB, n *zfsnodes.Node, fs, file string, size int64) {
	b.Helper()
	z := n.ZFS()
	if ok, _ := z.Exists(context.Background(), fs); !ok {
		if err := z.CreateFilesystem(context.Background(), fs, zfsexec.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	mp, err := z.Get(context.Background(), fs, "mountpoint")
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(n.Path(filepath.Join(mp["mountpoint"].Value, file)))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// cpuSeconds is the user+system CPU time of a process and its reaped
// children (the zfs commands an agent ran), from /proc.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var ticks float64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseFloat(f[i], 64)
		ticks += v
	}
	return ticks / 100 // USER_HZ
}

func rssKiB(pid int, field string) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return v
		}
	}
	return 0
}

// localPipe is the baseline: `zfs send | zfs recv` between the two nodes'
// daemons, piped in this process with no network.
func localPipe(b testing.TB, p *pair, so zfsexec.SendOptions, ro zfsexec.RecvOptions) (int64, time.Duration) {
	b.Helper()
	start := time.Now()
	n, err := zfsexec.Pipe(context.Background(), p.src.ZFS(), so, p.dst.ZFS(), ro)
	if err != nil {
		b.Fatal(err)
	}
	return n, time.Since(start)
}

// BenchmarkReplication_Full1GiB: a full replication of 1 GiB through the
// agents (agent to agent over SSH) as a ratio of the local pipe between
// the same two nodes, measured in the same iteration.
func BenchmarkReplication_Full1GiB(b *testing.B) {
	p := newPair(b, "4G")
	fill(b, p.src, "tank/big", "blob", 1<<30)
	ctx := context.Background()
	if _, err := replicate.TakeSnapshot(ctx, p.srcC.ZFS(), "tank/big", "z8r", "bench", time.Now()); err != nil {
		b.Fatal(err)
	}
	snaps, _ := p.src.ZFS().Snapshots(ctx, "tank/big")
	snap := snaps[len(snaps)-1].Name
	var ratios, cpuPerGiB, pipeRate, agentRate []float64
	var pipeDaemon, pipeZfs, agentDaemon, srcSelf, dstSelf []float64
	var peakKiB int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d0, c0 := cpuSeconds(p.src.PID)+cpuSeconds(p.dst.PID), childCPU()
		n, pipeDur := localPipe(b, p, zfsexec.SendOptions{Snapshot: snap}, zfsexec.RecvOptions{Target: fmt.Sprintf("tank/pipe%d", i), Unmounted: true})
		d1, c1 := cpuSeconds(p.src.PID)+cpuSeconds(p.dst.PID), childCPU()
		gibPipe := float64(n) / (1 << 30)
		pipeDaemon = append(pipeDaemon, (d1-d0)/gibPipe)
		pipeZfs = append(pipeZfs, (c1-c0)/gibPipe)
		cpu0 := cpuSeconds(p.srcA.PID()) + cpuSeconds(p.dstA.PID())
		s0, t0 := selfCPU(p.srcA.PID()), selfCPU(p.dstA.PID())
		start := time.Now()
		res, err := replicate.SyncTarget(ctx, p.srcC, "tank/big", p.target(fmt.Sprintf("tank/agent%d", i)), replicate.Options{})
		if err != nil {
			b.Fatal(err)
		}
		agentDur := time.Since(start)
		cpu := cpuSeconds(p.srcA.PID()) + cpuSeconds(p.dstA.PID()) - cpu0
		gibA := float64(res.Bytes()) / (1 << 30)
		srcSelf = append(srcSelf, (selfCPU(p.srcA.PID())-s0)/gibA)
		dstSelf = append(dstSelf, (selfCPU(p.dstA.PID())-t0)/gibA)
		agentDaemon = append(agentDaemon, (cpuSeconds(p.src.PID)+cpuSeconds(p.dst.PID)-d1)/gibA)
		if !res.Full() || res.Bytes() < n*9/10 {
			b.Fatalf("agent sync %+v, pipe moved %d bytes", res, n)
		}
		ratios = append(ratios, pipeDur.Seconds()/agentDur.Seconds())
		cpuPerGiB = append(cpuPerGiB, cpu/(float64(res.Bytes())/(1<<30)))
		pipeRate = append(pipeRate, float64(n)/pipeDur.Seconds()/1e6)
		agentRate = append(agentRate, float64(res.Bytes())/agentDur.Seconds()/1e6)
		for _, pid := range []int{p.srcA.PID(), p.dstA.PID()} {
			if hwm := rssKiB(pid, "VmHWM"); hwm > peakKiB {
				peakKiB = hwm
			}
		}
		// The replica hold (step discipline) keeps the received snapshot:
		// release it before destroying the replica.
		agentDS := fmt.Sprintf("tank/agent%d", i)
		if _, err := p.dst.Exec(ctx, "zfs", "release", snapname.ReplicaHoldTag(p.target(agentDS).ID), agentDS+"@"+snap[strings.IndexByte(snap, '@')+1:]); err != nil {
			b.Fatal(err)
		}
		for _, ds := range []string{fmt.Sprintf("tank/pipe%d", i), fmt.Sprintf("tank/agent%d", i)} {
			if _, err := p.dst.Exec(ctx, "zfs", "destroy", "-r", ds); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(median(ratios), "x-local-pipe")
	b.ReportMetric(median(pipeRate), "pipe-MB/s")
	b.ReportMetric(median(agentRate), "agent-MB/s")
	b.ReportMetric(median(cpuPerGiB), "agent-cpu-s/GiB")
	b.ReportMetric(float64(peakKiB)/1024, "agent-peak-RSS-MiB")
	b.ReportMetric(median(pipeDaemon), "pipe-daemons-cpu-s/GiB")
	b.ReportMetric(median(pipeZfs), "pipe-zfs-cmds-cpu-s/GiB")
	b.ReportMetric(median(agentDaemon), "agent-daemons-cpu-s/GiB")
	b.ReportMetric(median(srcSelf), "src-agent-self-cpu-s/GiB")
	b.ReportMetric(median(dstSelf), "dst-agent-self-cpu-s/GiB")
}

// selfCPU is a process's own user+system CPU, without its children.
func selfCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var ticks float64
	for _, i := range []int{11, 12} {
		v, _ := strconv.ParseFloat(f[i], 64)
		ticks += v
	}
	return ticks / 100
}

// childCPU is the CPU of this process's reaped children (the local pipe's zfs commands).
func childCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// BenchmarkReplication_Incremental1MiB: a 1 MiB change replicated as an
// incremental through the agents, against the same incremental piped
// locally; also the time from the snapshot to the target having it, split
// by phase.
func BenchmarkReplication_Incremental1MiB(b *testing.B) {
	p := newPair(b, "1G")
	ctx := context.Background()
	fill(b, p.src, "tank/d", "base", 16<<20)
	if _, err := replicate.TakeSnapshot(ctx, p.srcC.ZFS(), "tank/d", "z8r", "bench", time.Now()); err != nil {
		b.Fatal(err)
	}
	// Two replicas of the same history: one kept by the agents, one by the
	// local pipe.
	if _, err := replicate.SyncTarget(ctx, p.srcC, "tank/d", p.target("tank/viaagent"), replicate.Options{}); err != nil {
		b.Fatal(err)
	}
	first, _ := p.src.ZFS().Snapshots(ctx, "tank/d")
	localPipe(b, p, zfsexec.SendOptions{Snapshot: first[0].Name}, zfsexec.RecvOptions{Target: "tank/viapipe", Unmounted: true})
	phases := map[string][]float64{}
	var ratios, total, overhead []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fill(b, p.src, "tank/d", fmt.Sprintf("change%d", i), 1<<20)
		start := time.Now()
		name, err := replicate.TakeSnapshot(ctx, p.srcC.ZFS(), "tank/d", "z8r", "bench", time.Now().Add(time.Duration(i+1)*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		snapDur := time.Since(start)
		got := map[string]time.Duration{"snapshot": snapDur}
		var mu sync.Mutex
		res, err := replicate.SyncTarget(ctx, p.srcC, "tank/d", p.target("tank/viaagent"), replicate.Options{
			Trace: func(ph string, d time.Duration) { mu.Lock(); got[ph] += d; mu.Unlock() }})
		if err != nil || len(res.Steps) != 1 || res.Full() {
			b.Fatalf("incremental sync: %+v %v", res, err)
		}
		all := time.Since(start)
		snaps, _ := p.src.ZFS().Snapshots(ctx, "tank/d")
		prev := snaps[len(snaps)-2].Name
		_, pipeDur := localPipe(b, p, zfsexec.SendOptions{Snapshot: "tank/d@" + name, From: prev},
			zfsexec.RecvOptions{Target: "tank/viapipe", Unmounted: true, Incremental: true})
		ratios = append(ratios, pipeDur.Seconds()/got["transfer"].Seconds())
		total = append(total, all.Seconds())
		// Beyond the zfs commands' own time: everything but the snapshot and
		// the transfer's equivalent local pipe.
		overhead = append(overhead, all.Seconds()-snapDur.Seconds()-pipeDur.Seconds())
		for ph, d := range got {
			phases[ph] = append(phases[ph], d.Seconds())
		}
	}
	b.ReportMetric(median(ratios), "x-local-pipe")
	b.ReportMetric(median(total)*1000, "snapshot-to-target-ms")
	b.ReportMetric(median(overhead)*1000, "beyond-zfs-ms")
	names := make([]string, 0, len(phases))
	for ph := range phases {
		names = append(names, ph)
	}
	sort.Strings(names)
	for _, ph := range names {
		b.ReportMetric(median(phases[ph])*1000, ph+"-ms")
	}
}

// BenchmarkReplication_NearEmptyStep: the cost of one incremental step that
// carries almost nothing (100 steps per iteration, reported per step).
func BenchmarkReplication_NearEmptyStep(b *testing.B) {
	p := newPair(b, "512M")
	ctx := context.Background()
	fill(b, p.src, "tank/e", "base", 1<<20)
	if _, err := replicate.TakeSnapshot(ctx, p.srcC.ZFS(), "tank/e", "z8r", "bench", time.Now()); err != nil {
		b.Fatal(err)
	}
	if _, err := replicate.SyncTarget(ctx, p.srcC, "tank/e", p.target("tank/e"), replicate.Options{}); err != nil {
		b.Fatal(err)
	}
	// Retention keeps the last 10 on both sides, as a schedule with pruning
	// would; pruning runs between steps and is not timed.
	keep, err := retention.Parse("last=10")
	if err != nil {
		b.Fatal(err)
	}
	const steps = 100
	var perStep, snapMs []float64
	base := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var total time.Duration
		for s := 0; s < steps; s++ {
			base = base.Add(time.Second)
			start := time.Now()
			if _, err := replicate.TakeSnapshot(ctx, p.srcC.ZFS(), "tank/e", "z8r", "bench", base); err != nil {
				b.Fatal(err)
			}
			snapMs = append(snapMs, float64(time.Since(start).Microseconds())/1000)
			res, err := replicate.SyncTarget(ctx, p.srcC, "tank/e", p.target("tank/e"), replicate.Options{})
			if err != nil || len(res.Steps) != 1 {
				b.Fatalf("step %d: %+v %v", s, res, err)
			}
			total += time.Since(start)
			for _, z := range []*zfsexec.ZFS{p.srcC.ZFS(), p.dstC.ZFS()} {
				if _, err := replicate.Prune(ctx, z, "tank/e", "bench", keep, base, nil); err != nil {
					b.Fatal(err)
				}
			}
		}
		perStep = append(perStep, total.Seconds()/steps)
	}
	b.ReportMetric(median(perStep)*1000, "ms/step")
	b.ReportMetric(median(snapMs), "snapshot-ms")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
