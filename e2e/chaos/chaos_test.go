//go:build e2e

package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/invariants"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
)

var (
	seedFlag   = flag.Int64("chaos.seed", 0, "seed of the fault schedule and data (0: $Z8R_CHAOS_SEED, else a fixed default)")
	itersFlag  = flag.Int("chaos.iterations", 0, "number of iterations (0: $Z8R_CHAOS_ITERATIONS, else a short run)")
	reportFlag = flag.String("chaos.report", "", "write a markdown summary of the run to this file ($Z8R_CHAOS_REPORT)")
)

const (
	// defaultSeed and defaultIterations are the short run `make test` does.
	defaultSeed       = 15
	defaultIterations = 5

	replication = "chaos" // the DatasetReplication, and so the policy id on z8r's snapshots
	srcDataset  = "tank/data"
	nearDataset = "tank/data"
	farDataset  = "backup/chaos/data"
	interval    = time.Hour

	// Bounds of every wait.
	transferWait  = 60 * time.Second
	convergeWait  = 150 * time.Second
	failpointWait = 120 * time.Second
	pokeEvery     = 3 * time.Second

	// maxLive bounds the source's live data; older files are deleted.
	maxLive = 64 << 20
)

// Fault kinds: the failpoints the controller's code declares, and kills
// that need none.
const (
	fpAfterSnapshot = "controller.after-snapshot"
	fpAfterStepHold = "replicate.after-step-hold"
	fpAfterRecv     = "replicate.after-recv"
	fpAfterBaseHold = "replicate.after-base-hold"
	fpMidPrune      = "replicate.mid-prune"
	killController  = "kill-controller"
	killSourceAgent = "kill-source-agent"
	killTargetAgent = "kill-target-agent"
	// targetOutage keeps a target's agent down for a whole schedule
	// round: the other target syncs and source retention (last=1) runs
	// while the down target's base must stay.
	targetOutage = "target-outage"
	// cancelTransfer suspends the replication a few ms into a transfer
	// (a declarative cancel: the controller stops the transfer and
	// settles the target) and resumes it once no transfer runs.
	cancelTransfer = "cancel-transfer"
)

var faultKinds = []string{fpAfterSnapshot, fpAfterStepHold, fpAfterRecv, fpAfterBaseHold, fpMidPrune, killController, killSourceAgent, killTargetAgent, targetOutage, cancelTransfer}

// maxHit is how many times a failpoint is reached in one iteration's
// reconcile (per target, or source + targets for prunes): the N-th hit
// fires, N drawn from 1..maxHit.
var maxHit = map[string]int{fpAfterSnapshot: 1, fpAfterStepHold: 2, fpAfterRecv: 2, fpAfterBaseHold: 2, fpMidPrune: 3}

func isFailpoint(kind string) bool { _, ok := maxHit[kind]; return ok }

type fault struct {
	Kind  string
	Hit   int           // failpoints: the hit that fires
	Node  string        // agent kills: whose agent
	Delay time.Duration // kills: how long after the transfer started
	Down  time.Duration // agent kills: how long the agent stays down
}

func (f fault) String() string {
	switch {
	case isFailpoint(f.Kind):
		return fmt.Sprintf("%s=%d", f.Kind, f.Hit)
	case f.Kind == killController, f.Kind == cancelTransfer:
		return fmt.Sprintf("%s +%v into a transfer", f.Kind, f.Delay)
	case f.Kind == targetOutage:
		return fmt.Sprintf("%s(%s)", f.Kind, f.Node)
	default:
		return fmt.Sprintf("%s(%s) +%v into a transfer, down %v", f.Kind, f.Node, f.Delay, f.Down)
	}
}

// TestChaos_KillAnywhereKeepsInvariants is the crash-anywhere suite (see
// the package comment and docs/chaos.md).
func TestChaos_KillAnywhereKeepsInvariants(t *testing.T) {
	seed, iterations := settings()
	t.Logf("chaos: seed %d, %d iterations; replay with: go test -tags e2e -run TestChaos ./e2e/chaos/ -chaos.seed=%d -chaos.iterations=%d",
		seed, iterations, seed, iterations)
	began := time.Now()
	r := newRun(t, seed)
	r.setup()
	for i := 1; i <= iterations && !r.stuck; i++ {
		r.iteration(i)
	}
	r.stats.wall = time.Since(began)
	r.stats.iterations = r.done
	summary := r.stats.markdown(seed, iterations)
	t.Logf("chaos summary:\n%s", summary)
	if path := reportPath(); path != "" {
		if err := os.WriteFile(path, []byte(summary), 0o644); err != nil {
			t.Errorf("write report: %v", err)
		}
	}
	for _, v := range r.stats.violations {
		t.Errorf("seed %d: %s", seed, v)
	}
	if len(r.stats.violations) > 0 {
		t.Errorf("chaos: %d violation(s); replay with -chaos.seed=%d -chaos.iterations=%d", len(r.stats.violations), seed, iterations)
	}
}

func settings() (int64, int) {
	seed, iterations := *seedFlag, *itersFlag
	if seed == 0 {
		if v, err := strconv.ParseInt(os.Getenv("Z8R_CHAOS_SEED"), 10, 64); err == nil && v != 0 {
			seed = v
		} else {
			seed = defaultSeed
		}
	}
	if iterations == 0 {
		if v, err := strconv.Atoi(os.Getenv("Z8R_CHAOS_ITERATIONS")); err == nil && v > 0 {
			iterations = v
		} else {
			iterations = defaultIterations
		}
	}
	return seed, iterations
}

func reportPath() string {
	if *reportFlag != "" {
		return *reportFlag
	}
	return os.Getenv("Z8R_CHAOS_REPORT")
}

// run is one chaos run.
type run struct {
	t       *testing.T
	ctx     context.Context
	seed    int64
	rng     *rand.Rand
	c       *cluster.Cluster
	src     *zfsnodes.Node
	targets []target
	// ledger of snapshots this replication does not own (I3).
	ledger invariants.Ledger
	// ownHolds are the holds the test placed itself, by snapshot.
	ownHolds map[string]uint64
	files    []liveFile
	deck     []string
	manual   int
	// previous is the GUID of the newest snapshot before this iteration.
	previous uint64
	stuck    bool
	done     int
	stats    stats
}

type target struct {
	node    string
	dataset string
}

type liveFile struct {
	name string
	size int
}

func newRun(t *testing.T, seed int64) *run {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	t.Cleanup(cancel)
	r := &run{t: t, ctx: ctx, seed: seed, rng: rand.New(rand.NewPCG(uint64(seed), 0x15c4a05)),
		ownHolds: map[string]uint64{},
		targets:  []target{{"near", nearDataset}, {"far", farDataset}},
		stats:    newStats()}
	r.c = cluster.Start(t, cluster.Options{Nodes: []cluster.NodeSpec{
		{Name: "src", PoolSize: "1G"},
		{Name: "near", PoolSize: "1G"},
		{Name: "far", Pools: []string{"backup"}, PoolSize: "1G"},
	}})
	r.src = r.c.Nodes["src"]
	return r
}

// setup creates the source dataset, the snapshots z8r must never destroy
// (no owner, an owner inherited from the pool, another replication's; one
// held by the test) and the DatasetReplication.
func (r *run) setup() {
	t, ctx := r.t, r.ctx
	z := r.src.ZFS()
	if _, err := r.src.Exec(ctx, "zfs", "create", srcDataset); err != nil {
		t.Fatal(err)
	}
	r.write(0, 1<<20)
	// Every snapshot below inherits z8r.dev:owner=z8r: only a locally set
	// owner may count (issue 15, case 9).
	if err := z.Set(ctx, "tank", map[string]string{snapname.OwnerProp: snapname.OwnerValue}); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{
		{"zfs", "snapshot", srcDataset + "@manual-setup"},
		{"zfs", "snapshot", srcDataset + "@z8r-20010101T000000Z"},
		{"zfs", "snapshot", "-o", snapname.OwnerProp + "=" + snapname.OwnerValue, "-o", snapname.PolicyProp + "=another-replication", srcDataset + "@z8r-20010101T000001Z"},
		{"zfs", "hold", "chaos-keep", srcDataset + "@manual-setup"},
	} {
		if _, err := r.src.Exec(ctx, argv...); err != nil {
			t.Fatal(err)
		}
	}
	r.ownHolds["manual-setup"] = 1
	l := r.read(r.src, srcDataset)
	if n := r.ledger.Record(l, replication); n != 3 {
		t.Fatalf("ledger: %d foreign snapshots at setup, want 3:\n%s", n, l)
	}
	dr := &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: replication}, Spec: z8rv1.DatasetReplicationSpec{
		Source:    z8rv1.DatasetRef{Node: "src", Dataset: srcDataset},
		Targets:   []z8rv1.ReplicationTarget{{Node: "near"}, {Node: "far", Dataset: farDataset}},
		Schedule:  interval.String(),
		Retention: "last=1",
	}}
	if err := r.c.Kube.Client.Create(ctx, dr); err != nil {
		t.Fatal(err)
	}
}

// pick draws the iteration's fault: kinds come from a shuffled deck, so
// every kind comes up once per len(faultKinds) iterations.
func (r *run) pick() fault {
	if len(r.deck) == 0 {
		r.deck = append([]string(nil), faultKinds...)
		r.rng.Shuffle(len(r.deck), func(i, j int) { r.deck[i], r.deck[j] = r.deck[j], r.deck[i] })
	}
	f := fault{Kind: r.deck[0]}
	r.deck = r.deck[1:]
	switch {
	case isFailpoint(f.Kind):
		f.Hit = 1 + r.rng.IntN(maxHit[f.Kind])
	case f.Kind == killController, f.Kind == cancelTransfer:
		f.Delay = time.Duration(r.rng.IntN(200)) * time.Millisecond
	case f.Kind == targetOutage:
		f.Node = r.targets[r.rng.IntN(len(r.targets))].node
	default:
		f.Node = "src"
		if f.Kind == killTargetAgent {
			f.Node = r.targets[r.rng.IntN(len(r.targets))].node
		}
		f.Delay = time.Duration(r.rng.IntN(60)) * time.Millisecond
		f.Down = time.Duration(r.rng.IntN(1000)) * time.Millisecond
	}
	return f
}

// iteration runs one round: new data, the schedule comes round, one fault,
// recovery, checks.
func (r *run) iteration(i int) {
	t := r.t
	f := r.pick()
	size := 8<<20 + r.rng.IntN(24<<20)
	r.write(i, size)
	if r.manual < 2 && r.rng.IntN(6) == 0 {
		// A snapshot someone else takes between two of z8r's.
		r.manual++
		if _, err := r.src.Exec(r.ctx, "zfs", "snapshot", fmt.Sprintf("%s@manual-%d", srcDataset, i)); err != nil {
			t.Fatal(err)
		}
	}
	start := r.read(r.src, srcDataset)
	r.ledger.Record(start, replication)
	// This iteration's schedule takes a new snapshot: until it exists and
	// reached every target, nothing has converged.
	r.previous = 0
	if n := start.NewestOwnedBy(replication); n != nil {
		r.previous = n.GUID
	}
	rec := iterationRecord{N: i, Fault: f.String(), Kind: f.Kind, Bytes: size}
	r.stats.armed[f.Kind]++
	offset := time.Duration(i) * (interval + time.Minute)
	began := time.Now()
	t.Logf("chaos: iteration %d (seed %d): %d MiB new data, fault %s", i, r.seed, size>>20, f)

	// Every other iteration leaves each transfer in the background at
	// once (controllers' transfer runner), so faults meet that path too.
	var extra []string
	if i%2 == 0 {
		extra = []string{"--detach-after=0s"}
	}
	opts := cluster.ProcessOptions{ClockOffset: offset, ExtraArgs: extra}
	if isFailpoint(f.Kind) {
		opts.Failpoints = f.String()
	}
	if f.Kind == targetOutage {
		r.killAgent(f.Node)
	}
	cp := r.startController(opts)
	crashed, restart := false, false
	switch {
	case f.Kind == targetOutage:
		// The other target syncs and the source prunes; the down target's
		// base must survive (I1, checked now).
		if err := r.waitConvergedExcept(cp, f.Node, convergeWait); err != nil {
			rec.Notes = append(rec.Notes, "the other target did not sync during the outage: "+err.Error())
		} else {
			rec.Fired = true
		}
		r.crashCheck(i, f)
		if err := r.c.Agents[f.Node].Start(); err != nil {
			t.Fatalf("restart agent %s: %v", f.Node, err)
		}
	case isFailpoint(f.Kind):
		exited, err := r.waitExitOrConverged(cp, failpointWait)
		if !exited {
			// Converged (or timed out) without the point firing: an armed
			// controller must not go on into the recovery phase.
			cp.Stop(20 * time.Second)
		}
		switch {
		case cp.FiredFailpoint() == f.Kind:
			rec.Fired, crashed = true, true
		case exited:
			r.violation(i, f, "C", fmt.Sprintf("the controller exited (exit %d, signal %v) without the armed failpoint firing:\n%s", cp.ExitCode(), cp.Signaled(), cp.LogTail(30)))
			crashed = true
		case err != nil:
			rec.Notes = append(rec.Notes, err.Error())
		default:
			rec.Notes = append(rec.Notes, "failpoint not reached")
		}
		restart = true
	case f.Kind == cancelTransfer:
		pid, seen := r.waitTransfer(cp, "src", "send")
		time.Sleep(f.Delay)
		rec.Fired = seen && processAlive(pid)
		r.setSuspend(true)
		if !seen {
			rec.Notes = append(rec.Notes, "no transfer seen")
		}
		// The cancel takes hold within seconds: no transfer is left on
		// any node, and what the target had is intact (I1, I3).
		if err := r.waitNoTransfer(30 * time.Second); err != nil {
			r.violation(i, f, "L", fmt.Sprintf("a suspended replication still transfers: %v\n%s", err, cp.LogTail(30)))
		}
		r.crashCheck(i, f)
		r.setSuspend(false)
	case f.Kind == killController:
		pid, seen := r.waitTransfer(cp, "src", "send")
		time.Sleep(f.Delay)
		rec.Fired = seen && processAlive(pid)
		cp.Kill()
		crashed, restart = true, true
		if !seen {
			rec.Notes = append(rec.Notes, "no transfer seen")
		}
	default:
		verb := "send"
		if f.Kind == killTargetAgent {
			verb = "recv"
		}
		pid, seen := r.waitTransfer(cp, f.Node, verb)
		time.Sleep(f.Delay)
		rec.Fired = seen && processAlive(pid)
		r.killAgent(f.Node)
		if !seen {
			rec.Notes = append(rec.Notes, "no transfer seen")
		}
		r.crashCheck(i, f)
		time.Sleep(f.Down)
		if err := r.c.Agents[f.Node].Start(); err != nil {
			t.Fatalf("restart agent %s: %v", f.Node, err)
		}
	}
	if rec.Fired {
		r.stats.fired[f.Kind]++
	}
	if crashed {
		r.crashCheck(i, f)
	}
	if restart {
		cp = r.startController(cluster.ProcessOptions{ClockOffset: offset, ExtraArgs: extra})
	}
	if err := r.waitConverged(cp, convergeWait); err != nil {
		r.violation(i, f, "L", fmt.Sprintf("replication did not recover within %v: %v\n%s\ncontroller log:\n%s", convergeWait, err, r.state(), cp.LogTail(40)))
		r.stuck = true
	}
	if !cp.Stop(20 * time.Second) {
		rec.Notes = append(rec.Notes, "controller did not stop on SIGTERM within 20s")
	}
	r.fullCheck(i, f, &rec)
	rec.Took = time.Since(began).Round(100 * time.Millisecond)
	r.stats.records = append(r.stats.records, rec)
	r.done = i
	t.Logf("chaos: iteration %d done in %v: fault %s fired=%v %s", i, rec.Took, f, rec.Fired, strings.Join(rec.Notes, "; "))
	if testing.Verbose() {
		t.Logf("chaos: state after iteration %d:\n%s", i, r.state())
	}
}

func (r *run) startController(opts cluster.ProcessOptions) *cluster.ControllerProcess {
	cp, err := r.c.StartControllerProcess(opts)
	if err != nil {
		r.t.Fatal(err)
	}
	return cp
}

// write adds a file of size pseudo-random bytes (from the seed) to the
// source and deletes the oldest files beyond maxLive.
func (r *run) write(i, size int) {
	t := r.t
	mp, err := r.src.ZFS().Get(r.ctx, srcDataset, "mountpoint", "mounted")
	if err != nil {
		t.Fatal(err)
	}
	// A write into the mountpoint of an unmounted filesystem would land on
	// the node's root, not in the dataset.
	if mp["mounted"].Value != "yes" {
		t.Fatalf("iteration %d: the source %s is not mounted", i, srcDataset)
	}
	dir := r.src.Path(mp["mountpoint"].Value)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], uint64(r.seed))
	binary.LittleEndian.PutUint64(key[8:], uint64(i))
	key = sha256.Sum256(key[:])
	data := make([]byte, size)
	_, _ = rand.NewChaCha8(key).Read(data)
	name := fmt.Sprintf("f-%03d", i)
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	r.files = append(r.files, liveFile{name, size})
	live := 0
	for _, f := range r.files {
		live += f.size
	}
	for live > maxLive && len(r.files) > 1 {
		if err := os.Remove(filepath.Join(dir, r.files[0].name)); err != nil {
			t.Fatal(err)
		}
		live -= r.files[0].size
		r.files = r.files[1:]
	}
}

func (r *run) read(n *zfsnodes.Node, ds string) invariants.Listing {
	l, err := invariants.Read(r.ctx, n, ds)
	if err != nil {
		r.t.Fatal(err)
	}
	return l
}

func (r *run) listings() (invariants.Listing, []invariants.Listing) {
	var tl []invariants.Listing
	for _, tg := range r.targets {
		tl = append(tl, r.read(r.c.Nodes[tg.node], tg.dataset))
	}
	return r.read(r.src, srcDataset), tl
}

// state describes the nodes and the replication's status, for reports.
func (r *run) state() string {
	src, tl := r.listings()
	var b strings.Builder
	b.WriteString(src.String())
	for _, l := range tl {
		b.WriteString("\n" + l.String())
	}
	for _, name := range []string{"src", "near", "far"} {
		n := r.c.Nodes[name]
		out, err := n.Exec(r.ctx, "zfs", "list", "-H", "-t", "filesystem", "-o", "name,origin,readonly")
		if err != nil {
			out = err.Error()
		}
		fmt.Fprintf(&b, "\n  filesystems on %s: %s", name, strings.Join(strings.Fields(strings.ReplaceAll(out, "\t", " ")), " "))
	}
	if dr, err := r.c.Replication(r.ctx, replication); err == nil {
		for _, ts := range dr.Status.Targets {
			fmt.Fprintf(&b, "\n  status %s:%s %s last=@%s base=@%s err=%q", ts.Node, ts.Dataset, ts.State, ts.LastSnapshot, ts.ProtectedBase, ts.LastError)
		}
	}
	return b.String()
}

func (r *run) violation(i int, f fault, inv, detail string) {
	msg := fmt.Sprintf("iteration %d, fault %s: %s: %s", i, f, inv, detail)
	r.stats.violations = append(r.stats.violations, msg)
	r.stats.failed[inv]++
	r.t.Logf("chaos: VIOLATION (seed %d) %s", r.seed, msg)
}

func (r *run) report(i int, f fault, inv string, vs []invariants.Violation) {
	if len(vs) == 0 {
		r.stats.passed[inv]++
		return
	}
	var d []string
	for _, v := range vs {
		d = append(d, v.String())
	}
	r.violation(i, f, inv, strings.Join(d, "; ")+"\nstate:\n"+r.state())
}

// crashCheck checks what must hold at every instant, right after a crash:
// I1 (guarded against a sync finishing between the two listings: a
// violation counts only if the target did not change meanwhile) and I3.
func (r *run) crashCheck(i int, f fault) {
	var vs []invariants.Violation
	for attempt := 0; attempt < 5; attempt++ {
		_, before := r.listings()
		src := r.read(r.src, srcDataset)
		_, after := r.listings()
		if !sameNewest(before, after) {
			continue
		}
		vs = invariants.CheckI1(src, after)
		break
	}
	r.report(i, f, invariants.I1, vs)
	src := r.read(r.src, srcDataset)
	r.report(i, f, invariants.I3, r.ledger.CheckI3(src))
	r.ledger.Record(src, replication)
}

func sameNewest(a, b []invariants.Listing) bool {
	for k := range a {
		na, nb := a[k].Newest(), b[k].Newest()
		if (na == nil) != (nb == nil) || (na != nil && na.GUID != nb.GUID) {
			return false
		}
	}
	return true
}

// fullCheck checks every invariant with the controller stopped.
func (r *run) fullCheck(i int, f fault, rec *iterationRecord) {
	src, tl := r.listings()
	r.report(i, f, invariants.I1, invariants.CheckI1(src, tl))
	r.report(i, f, invariants.I2, r.probeI2(invariants.CheckI2(src, tl, r.ownHolds), tl, rec))
	r.report(i, f, invariants.I3, r.ledger.CheckI3(src))
	r.ledger.Record(src, replication)
	var i4, hyg []invariants.Violation
	for k, l := range tl {
		n := r.c.Nodes[r.targets[k].node]
		vs, compared, err := invariants.CheckI4(r.ctx, r.src, src, n, l)
		if err != nil {
			r.t.Fatalf("I4 on %s: %v", l.Node, err)
		}
		r.stats.compared += compared
		i4 = append(i4, vs...)
		ro := ""
		if l.Exists {
			p, err := n.ZFS().Get(r.ctx, l.Dataset, "readonly")
			if err != nil {
				r.t.Fatal(err)
			}
			ro = p["readonly"].Value
		}
		hyg = append(hyg, invariants.CheckHygiene(src, l, ro, replication)...)
	}
	r.report(i, f, invariants.I4, i4)
	var t1, t2 []invariants.Violation
	for _, v := range hyg {
		if v.Invariant == invariants.T1 {
			t1 = append(t1, v)
		} else {
			t2 = append(t2, v)
		}
	}
	r.report(i, f, invariants.T1, t1)
	r.report(i, f, invariants.T2, t2)
	if !r.stuck {
		var r1 []invariants.Violation
		for _, l := range append([]invariants.Listing{src}, tl...) {
			r1 = append(r1, invariants.CheckRetention(l, replication, 1)...)
		}
		r.report(i, f, invariants.R1, r1)
	}
}

// probeI2 decides each I2 candidate (a snapshot with more holds than
// allowed) by the tags actually on it, probed with the controller stopped:
// a z8r tag that does not belong there (a step tag with nothing in flight,
// a base tag of a target whose newest snapshot this is not, a replica tag
// on an older replica) is a violation; extra holds none of whose tags are
// z8r's (zfs-fuse's own .send-<pid> holds of a killed send) are only noted.
func (r *run) probeI2(vs []invariants.Violation, tl []invariants.Listing, rec *iterationRecord) []invariants.Violation {
	var out []invariants.Violation
	for _, v := range vs {
		var tags []string
		allowed := map[string]bool{}
		for k, tg := range r.targets {
			id := policy.ID(tg.node, tg.dataset)
			newest := tl[k].Newest()
			isNewest := newest != nil && newest.ShortName() == v.Snapshot
			if v.Node == r.src.Name {
				tags = append(tags, snapname.HoldTag(id), snapname.StepHoldTag(id), snapname.ReplicaHoldTag(id))
				if isNewest {
					allowed[snapname.HoldTag(id)] = true
				}
			} else if tg.node == v.Node {
				tags = append(tags, snapname.HoldTag(id), snapname.StepHoldTag(id), snapname.ReplicaHoldTag(id))
				if isNewest {
					allowed[snapname.ReplicaHoldTag(id)] = true
				}
			}
		}
		held, err := invariants.ProbeTags(r.ctx, r.c.Nodes[v.Node], v.Dataset+"@"+v.Snapshot, tags)
		if err != nil {
			v.Detail += fmt.Sprintf(" (probing its tags failed: %v)", err)
			out = append(out, v)
			continue
		}
		var bad []string
		for _, h := range held {
			if !allowed[h] {
				bad = append(bad, h)
			}
		}
		if len(bad) == 0 {
			note := fmt.Sprintf("extra hold on %s:%s@%s is not z8r's (z8r tags there: %v)", v.Node, v.Dataset, v.Snapshot, held)
			rec.Notes = append(rec.Notes, note)
			r.stats.foreignHolds++
			r.t.Logf("chaos: %s", note)
			continue
		}
		v.Detail += fmt.Sprintf(" (z8r tags that do not belong there: %s; all z8r tags found: %s)", strings.Join(bad, ", "), strings.Join(held, ", "))
		out = append(out, v)
	}
	return out
}

// converged reports whether every target has the source's newest snapshot
// of this replication (in ZFS) and the status says so.
func (r *run) converged() (bool, error) { return r.convergedExcept("") }

// convergedExcept is converged, ignoring the target on node skip.
func (r *run) convergedExcept(skip string) (bool, error) {
	src, tl := r.listings()
	want := src.NewestOwnedBy(replication)
	if want == nil || want.GUID == r.previous {
		return false, nil
	}
	for _, l := range tl {
		if n := l.Newest(); l.Node != skip && (n == nil || n.GUID != want.GUID) {
			return false, nil
		}
	}
	dr, err := r.c.Replication(r.ctx, replication)
	if err != nil {
		return false, err
	}
	// A status written before the controller acted on the current spec
	// (a sync that ended while the replication was suspended records its
	// outcome; the source's pruning waits for the resume) is not yet
	// converged.
	if len(dr.Status.Targets) != len(r.targets) || dr.Status.ObservedGeneration != dr.Generation {
		return false, nil
	}
	for _, ts := range dr.Status.Targets {
		if ts.Node != skip && (ts.State != z8rv1.TargetSynced || ts.LastSnapshotGUID != strconv.FormatUint(want.GUID, 10)) {
			return false, nil
		}
	}
	return true, nil
}

// waitConverged waits for convergence, asking for a sync now and then so
// that a failure's backoff does not stretch the run.
func (r *run) waitConverged(cp *cluster.ControllerProcess, timeout time.Duration) error {
	return r.waitConvergedExcept(cp, "", timeout)
}

// waitConvergedExcept is waitConverged, ignoring the target on node skip.
func (r *run) waitConvergedExcept(cp *cluster.ControllerProcess, skip string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	poke := time.Now().Add(pokeEvery)
	for time.Now().Before(deadline) {
		if cp.Exited() {
			return fmt.Errorf("the controller exited (exit %d, signal %v)", cp.ExitCode(), cp.Signaled())
		}
		ok, err := r.convergedExcept(skip)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(poke) {
			r.requestSync()
			poke = time.Now().Add(pokeEvery)
		}
		time.Sleep(300 * time.Millisecond)
	}
	return errors.New("timed out")
}

// waitExitOrConverged waits until the controller exits (a failpoint fired)
// or the replication converged (it was not reached).
func (r *run) waitExitOrConverged(cp *cluster.ControllerProcess, timeout time.Duration) (exited bool, err error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-cp.Done():
			return true, nil
		case <-time.After(300 * time.Millisecond):
		}
		ok, err := r.converged()
		if err != nil {
			return false, err
		}
		if ok {
			// Give a failpoint armed for a later hit (mid-prune) the
			// reconcile's end.
			select {
			case <-cp.Done():
				return true, nil
			case <-time.After(time.Second):
				return false, nil
			}
		}
	}
	return false, fmt.Errorf("neither crashed nor converged within %v", timeout)
}

// waitTransfer waits until the agent on node runs `zfs <verb>` (a transfer
// in flight) and returns its pid; false if none was seen before the
// replication converged, the controller exited or transferWait passed.
func (r *run) waitTransfer(cp *cluster.ControllerProcess, node, verb string) (int, bool) {
	a := r.c.Agents[node]
	var conv atomic.Bool
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			if ok, _ := r.converged(); ok {
				conv.Store(true)
				return
			}
		}
	}()
	deadline := time.Now().Add(transferWait)
	for time.Now().Before(deadline) && !cp.Exited() && !conv.Load() {
		if pid := zfsChild(a.PID(), verb); pid != 0 {
			return pid, true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, false
}

// killAgent kills a node's agent and the zfs processes it runs, as the
// death of its pod would.
func (r *run) killAgent(node string) {
	a := r.c.Agents[node]
	children := zfsChildren(a.PID())
	a.Kill()
	for _, pid := range children {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// setSuspend sets the replication's spec.suspend.
func (r *run) setSuspend(v bool) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		dr, err := r.c.Replication(r.ctx, replication)
		if err != nil {
			return err
		}
		patch := client.MergeFromWithOptions(dr.DeepCopy(), client.MergeFromWithOptimisticLock{})
		dr.Spec.Suspend = v
		return r.c.Kube.Client.Patch(r.ctx, dr, patch)
	})
	if err != nil {
		r.t.Fatalf("set spec.suspend=%v: %v", v, err)
	}
}

// waitNoTransfer waits until no agent runs a `zfs send` or `zfs recv`.
func (r *run) waitNoTransfer(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var busy []string
		for name, a := range r.c.Agents {
			for _, verb := range []string{"send", "recv"} {
				if zfsChild(a.PID(), verb) != 0 {
					busy = append(busy, name+" "+verb)
				}
			}
		}
		if len(busy) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v still running: %v", timeout, busy)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *run) requestSync() {
	dr, err := r.c.Replication(r.ctx, replication)
	if err != nil {
		return
	}
	patch := client.MergeFrom(dr.DeepCopy())
	if dr.Annotations == nil {
		dr.Annotations = map[string]string{}
	}
	dr.Annotations[z8rv1.AnnotationSyncRequested] = strconv.FormatInt(time.Now().UnixNano(), 10)
	_ = r.c.Kube.Client.Patch(r.ctx, dr, patch)
}

// zfsChild returns the pid of a `zfs <verb>` process below root, or 0.
func zfsChild(root int, verb string) int {
	for _, p := range zfsChildren(root) {
		args := cmdline(p)
		// A dry run (send -n, the size estimate) moves nothing.
		if len(args) > 1 && (args[1] == verb || (verb == "recv" && args[1] == "receive")) && !slices.Contains(args, "-n") {
			return p
		}
	}
	return 0
}

// zfsChildren lists the zfs processes below root (the agent process runs
// under the nsenter that agentproc started: root is that nsenter).
func zfsChildren(root int) []int {
	if root == 0 {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		j := strings.LastIndexByte(s, ')')
		if j < 0 {
			continue
		}
		f := strings.Fields(s[j+1:])
		if len(f) < 2 {
			continue
		}
		if pp, err := strconv.Atoi(f[1]); err == nil {
			parent[pid] = pp
		}
	}
	var out []int
	for pid := range parent {
		below := false
		for p, n := parent[pid], 0; p > 1 && n < 8; p, n = parent[p], n+1 {
			if p == root {
				below = true
				break
			}
		}
		if !below {
			continue
		}
		if args := cmdline(pid); len(args) > 0 && filepath.Base(args[0]) == "zfs" {
			out = append(out, pid)
		}
	}
	return out
}

func cmdline(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func processAlive(pid int) bool {
	if pid == 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z"
}

// stats of a run, for the summary.
type stats struct {
	armed, fired, passed, failed map[string]int
	compared                     int
	foreignHolds                 int
	violations                   []string
	records                      []iterationRecord
	iterations                   int
	wall                         time.Duration
}

type iterationRecord struct {
	N     int
	Fault string
	Kind  string
	Bytes int
	Fired bool
	Notes []string
	Took  time.Duration
}

func newStats() stats {
	return stats{armed: map[string]int{}, fired: map[string]int{}, passed: map[string]int{}, failed: map[string]int{}}
}

// markdown renders the run's result for docs/chaos.md.
func (s stats) markdown(seed int64, planned int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "- seed: %d\n- iterations: %d of %d planned\n- wall time: %v\n", seed, s.iterations, planned, s.wall.Round(time.Second))
	fmt.Fprintf(&b, "- replica snapshots compared file by file (I4): %d\n", s.compared)
	fmt.Fprintf(&b, "- extra holds found that were not z8r's (not counted against I2): %d\n\n", s.foreignHolds)
	b.WriteString("| fault | injected | fired / landed mid-transfer |\n| --- | --- | --- |\n")
	for _, k := range faultKinds {
		fmt.Fprintf(&b, "| %s | %d | %d |\n", k, s.armed[k], s.fired[k])
	}
	b.WriteString("\n| check | passed | failed |\n| --- | --- | --- |\n")
	var inv []string
	seen := map[string]bool{}
	for _, m := range []map[string]int{s.passed, s.failed} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				inv = append(inv, k)
			}
		}
	}
	sort.Strings(inv)
	for _, k := range inv {
		fmt.Fprintf(&b, "| %s | %d | %d |\n", k, s.passed[k], s.failed[k])
	}
	b.WriteString("\n| # | fault | fired | time | notes |\n| --- | --- | --- | --- | --- |\n")
	for _, r := range s.records {
		fmt.Fprintf(&b, "| %d | %s | %v | %v | %s |\n", r.N, r.Fault, r.Fired, r.Took, strings.Join(r.Notes, "; "))
	}
	if len(s.violations) > 0 {
		b.WriteString("\nViolations:\n\n")
		for _, v := range s.violations {
			first, _, _ := strings.Cut(v, "\n")
			fmt.Fprintf(&b, "- %s\n", first)
		}
	}
	return b.String()
}
