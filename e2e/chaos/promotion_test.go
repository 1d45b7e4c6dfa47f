//go:build e2e

package chaos

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/controllers"
	"github.com/z8r-project/z8r/internal/cli"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/invariants"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/zfsexec"
)

// promotionWait bounds the wait for a promotion (or a rejoin) to end
// after the controller was restarted.
const promotionWait = 90 * time.Second

// promotionStep is one planned switchover of
// TestChaos_PromotionCrashKeepsData, crashed at failpoint.
type promotionStep struct {
	failpoint string
	to        string // the node promoted
}

// promotionSteps alternate direction, so that every switchover after the
// first is a failback of the one before: each planned failpoint once.
var promotionSteps = []promotionStep{
	{controllers.FailPromoteAfterFreeze, "near"},
	{controllers.FailPromoteAfterFinalSnapshot, "src"},
	{controllers.FailPromoteAfterWritable, "near"},
	{controllers.FailPromoteAfterRelease, "src"},
}

// TestChaos_PromotionCrashKeepsData kills the controller at every failpoint
// of a promotion (controllers/promotion.go) and checks that the promotion
// still completes with nothing lost: four planned switchovers back and
// forth between src and near (far stays a target throughout), then an
// unplanned failover to near with src's agent dead, crashed after the
// target was made writable, and src's rejoin, crashed after its tail was
// moved aside. See docs/chaos.md.
func TestChaos_PromotionCrashKeepsData(t *testing.T) {
	seed, _ := settings()
	began := time.Now()
	p := &promo{run: newRun(t, seed), sums: map[string][32]byte{}}
	p.setup()
	t.Logf("promotion chaos: setup done in %v", time.Since(began).Round(100*time.Millisecond))
	for k, st := range promotionSteps {
		p.planned(k+1, st)
	}
	p.unplanned(len(promotionSteps) + 1)
	t.Logf("promotion chaos: done in %v", time.Since(began).Round(time.Second))
}

// TestChaos_PromotionCancelAfterCrash: a planned switchover whose
// controller was killed before the target was made writable is cancelled
// by changing spec.source back; the old source must be writable again
// and stay the source, with nothing lost. Once killed during the final
// sync (status says FinalSync), once right after the freeze and once
// right after the final snapshot (status says Freezing: recorded before
// the freeze, which is what lets the cancel find it).
func TestChaos_PromotionCancelAfterCrash(t *testing.T) {
	seed, _ := settings()
	began := time.Now()
	p := &promo{run: newRun(t, seed), sums: map[string][32]byte{}}
	p.setup()
	for k, fp := range []string{replicate.FailAfterRecv, controllers.FailPromoteAfterFreeze, controllers.FailPromoteAfterFinalSnapshot} {
		p.cancelled(k+1, fp)
	}
	t.Logf("promotion chaos: done in %v", time.Since(began).Round(time.Second))
}

// promo is the state of TestChaos_PromotionCrashKeepsData on top of a
// chaos run: run.src is the source in force and run.targets its targets.
type promo struct {
	*run
	// offset is the controller's clock offset; a schedule round moves it
	// one interval on.
	offset time.Duration
	// sums are the files written on a source that every later source must
	// have, by name.
	sums map[string][32]byte
	// tailAside is the old source's tail dataset once the rejoin made it.
	tailAside string
}

// setup creates src:tank/data with a file and a snapshot z8r does not own,
// the replication (targets near and far, last=1) and its first sync.
func (p *promo) setup() {
	t, ctx := p.t, p.ctx
	if _, err := p.src.Exec(ctx, "zfs", "create", srcDataset); err != nil {
		t.Fatal(err)
	}
	p.writeFile(0, 1<<20)
	if _, err := p.src.Exec(ctx, "zfs", "snapshot", srcDataset+"@manual-setup"); err != nil {
		t.Fatal(err)
	}
	if n := p.ledger.Record(p.read(p.src, srcDataset), replication); n != 1 { // before any sync: every snapshot is the source's
		t.Fatalf("ledger: %d foreign snapshots at setup, want 1", n)
	}
	dr := &z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: replication}, Spec: z8rv1.DatasetReplicationSpec{
		Source:    z8rv1.DatasetRef{Node: "src", Dataset: srcDataset},
		Targets:   []z8rv1.ReplicationTarget{{Node: "near"}, {Node: "far", Dataset: farDataset}},
		Schedule:  interval.String(),
		Retention: "last=1",
	}}
	if err := p.c.Kube.Client.Create(ctx, dr); err != nil {
		t.Fatal(err)
	}
	cp := p.startController(cluster.ProcessOptions{})
	if err := p.waitConverged(cp, convergeWait); err != nil {
		t.Fatalf("first sync: %v\n%s\ncontroller log:\n%s", err, p.state(), cp.LogTail(40))
	}
	cp.Stop(20 * time.Second)
}

// planned runs one planned switchover from the source in force to st.to
// with the controller killed at st.failpoint, then a schedule round in the
// new direction, checking the data and the invariants.
func (p *promo) planned(k int, st promotionStep) {
	t := p.t
	began := time.Now()
	from, to := p.src.Name, st.to
	label := fmt.Sprintf("step %d (%s -> %s, crash at %s)", k, from, to, st.failpoint)
	t.Logf("promotion chaos: %s", label)
	oldNode, newNode := p.c.Nodes[from], p.c.Nodes[to]
	p.writeFile(k, 2<<20+p.rng.IntN(2<<20)) // after the source's last snapshot: only the final snapshot carries it
	p.recordLedger()

	p.promote(to, false)
	cp := p.startController(cluster.ProcessOptions{ClockOffset: p.offset, Failpoints: st.failpoint})
	p.waitCrash(cp, st.failpoint, label, completed(to))

	// At the crash: the old source is frozen (every crash point is after
	// the freeze), at most one of the two is writable, the old direction's
	// I1 and I3 hold.
	oldRO, newRO := p.readonly(oldNode, srcDataset), p.readonly(newNode, srcDataset)
	if oldRO != "on" {
		t.Errorf("%s: at the crash the old source %s:%s has readonly=%s, want on (frozen before any crash point)", label, from, srcDataset, oldRO)
	}
	if oldRO == "off" && newRO == "off" {
		t.Errorf("%s: at the crash both %s and %s are writable", label, from, to)
	}
	wantNewRO := "on"
	if st.failpoint == controllers.FailPromoteAfterWritable || st.failpoint == controllers.FailPromoteAfterRelease {
		wantNewRO = "off"
	}
	if newRO != wantNewRO {
		t.Errorf("%s: at the crash %s:%s has readonly=%s, want %s", label, to, srcDataset, newRO, wantNewRO)
	}
	oldL := p.read(oldNode, srcDataset)
	p.check(label+" at the crash", invariants.CheckI1(oldL, []invariants.Listing{p.read(newNode, srcDataset), p.read(p.c.Nodes["far"], farDataset)}))
	p.check(label+" at the crash", p.checkI3())

	cp = p.startController(cluster.ProcessOptions{ClockOffset: p.offset})
	dr := p.waitPromoted(cp, to, label)
	cp.Stop(20 * time.Second)
	pr := dr.Status.Promotion
	if pr.Kind != z8rv1.PromotionPlanned {
		t.Errorf("%s: promotion kind %s, want %s", label, pr.Kind, z8rv1.PromotionPlanned)
	}
	// Nothing after the recovery point on the old source, and the new
	// source's newest snapshot is it.
	if n := p.read(oldNode, srcDataset).Newest(); n == nil || strconv.FormatUint(n.GUID, 10) != pr.RecoveryPointGUID {
		t.Errorf("%s: old source's newest snapshot %s is not the recovery point %s (guid %s)", label, snapString(n), pr.RecoveryPoint, pr.RecoveryPointGUID)
	}
	if n := p.read(newNode, srcDataset).Newest(); n == nil || strconv.FormatUint(n.GUID, 10) != pr.RecoveryPointGUID {
		t.Errorf("%s: new source's newest snapshot %s is not the recovery point %s (guid %s)", label, snapString(n), pr.RecoveryPoint, pr.RecoveryPointGUID)
	}
	if pr.FinalSnapshot == "" || !strings.HasSuffix(pr.FinalSnapshot, pr.RecoveryPoint) {
		t.Errorf("%s: final snapshot %q, recovery point %q: want the final snapshot", label, pr.FinalSnapshot, pr.RecoveryPoint)
	}
	p.checkWritable(label, to, from)
	p.checkFiles(label, newNode)
	p.check(label+" once completed", p.oldDirectionHolds(from, to, true))

	p.switchTo(to, from)
	p.scheduleRound(label)
	p.fullCheck(label, "")
	t.Logf("promotion chaos: %s done in %v", label, time.Since(began).Round(100*time.Millisecond))
}

// cancelled starts a planned switchover from src to near, kills the
// controller at fp, changes spec.source back and checks that src is the
// writable source again after a schedule round.
func (p *promo) cancelled(k int, fp string) {
	t := p.t
	began := time.Now()
	label := fmt.Sprintf("step %d (src -> near cancelled after a crash at %s)", k, fp)
	t.Logf("promotion chaos: %s", label)
	p.writeFile(k, 2<<20)
	p.recordLedger()
	dr, err := p.c.Replication(p.ctx, replication)
	if err != nil {
		t.Fatal(err)
	}
	original := *dr.Spec.DeepCopy()
	p.promote("near", false)
	cp := p.startController(cluster.ProcessOptions{ClockOffset: p.offset, Failpoints: fp})
	p.waitCrash(cp, fp, label, completed("near"))
	if ro := p.readonly(p.src, srcDataset); ro != "on" {
		t.Errorf("%s: at the crash src has readonly=%s, want on (frozen)", label, ro)
	}
	p.check(label+" at the crash", p.checkI3())
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		dr, err := p.c.Replication(p.ctx, replication)
		if err != nil {
			return err
		}
		dr.Spec = original
		return p.c.Kube.Client.Update(p.ctx, dr)
	})
	if err != nil {
		t.Fatalf("%s: change spec.source back: %v", label, err)
	}
	p.scheduleRound(label)
	dr, err = p.c.Replication(p.ctx, replication)
	if err != nil {
		t.Fatal(err)
	}
	if dr.Status.Source == nil || dr.Status.Source.Node != "src" {
		t.Errorf("%s: source in force %+v, want src", label, dr.Status.Source)
	}
	if pr := dr.Status.Promotion; pr != nil && pr.Phase != z8rv1.PromotionCancelled && pr.Phase != z8rv1.PromotionCompleted {
		t.Errorf("%s: promotion %+v still running after the cancel", label, *pr)
	}
	if ro := p.readonly(p.src, srcDataset); ro != "off" {
		props, err := p.src.ZFS().Get(p.ctx, srcDataset, "readonly", "mounted", replicate.ReplicaOfProp)
		pr := "none"
		if dr.Status.Promotion != nil {
			pr = fmt.Sprintf("%+v", *dr.Status.Promotion)
		}
		t.Errorf("%s: src, the source again, is still frozen after the cancel and a schedule round: %v (err %v); status.promotion %s", label, props, err, pr)
		// Unfrozen by hand, as an operator would, so that the next case
		// starts from a writable source.
		for _, argv := range [][]string{
			{"zfs", "set", "readonly=off", srcDataset},
			{"zfs", "inherit", replicate.ReplicaOfProp, srcDataset},
			{"zfs", "mount", srcDataset},
		} {
			if _, err := p.src.Exec(p.ctx, argv...); err != nil {
				t.Fatalf("%s: unfreeze src by hand: %v", label, err)
			}
		}
	}
	p.checkWritable(label, "src", "near")
	p.checkFiles(label, p.src)
	p.fullCheck(label, "")
	t.Logf("promotion chaos: %s done in %v", label, time.Since(began).Round(100*time.Millisecond))
}

// snapString names a snapshot and its GUID, for messages.
func snapString(d *zfsexec.Dataset) string {
	if d == nil {
		return "(none)"
	}
	return fmt.Sprintf("@%s (guid %d)", d.ShortName(), d.GUID)
}

// unplanned fails over from src (its agent killed) to near with the
// controller killed after near was made writable, then brings src's agent
// back with the controller killed after src's tail was moved aside, and
// checks that src rejoins as near's replica with its tail kept.
func (p *promo) unplanned(k int) {
	t, ctx := p.t, p.ctx
	began := time.Now()
	from, to := p.src.Name, "near"
	if from != "src" {
		t.Fatalf("unplanned step: source in force is %s, want src", from)
	}
	label := fmt.Sprintf("step %d (unplanned %s -> %s, crash at %s, rejoin crash at %s)", k, from, to, controllers.FailPromoteAfterWritable, controllers.FailRejoinAfterTail)
	t.Logf("promotion chaos: %s", label)
	oldNode, newNode := p.c.Nodes[from], p.c.Nodes[to]
	recovery := p.read(newNode, srcDataset).Newest()
	if recovery == nil {
		t.Fatalf("%s: %s has no snapshot", label, to)
	}
	// src's unreplicated tail: a file, a snapshot of its own, a file after it.
	tail := map[string][32]byte{}
	for i, name := range []string{"tail-a", "tail-b"} {
		if i == 1 {
			if _, err := oldNode.Exec(ctx, "zfs", "snapshot", srcDataset+"@mine"); err != nil {
				t.Fatal(err)
			}
		}
		tail[name] = p.writeNamed(oldNode, name, 100*k+i, 512<<10)
	}
	p.recordLedger()
	p.killAgent(from)

	p.promote(to, true)
	cp := p.startController(cluster.ProcessOptions{ClockOffset: p.offset, Failpoints: controllers.FailPromoteAfterWritable})
	p.waitCrash(cp, controllers.FailPromoteAfterWritable, label, completed(to))
	if ro := p.readonly(newNode, srcDataset); ro != "off" {
		t.Errorf("%s: at the crash %s:%s has readonly=%s, want off", label, to, srcDataset, ro)
	}
	p.check(label+" at the crash", p.checkI3())

	// Restarted armed for the rejoin: the failover completes with src
	// still away.
	cp = p.startController(cluster.ProcessOptions{ClockOffset: p.offset, Failpoints: controllers.FailRejoinAfterTail})
	dr := p.waitPromoted(cp, to, label)
	pr := dr.Status.Promotion
	if pr.Kind != z8rv1.PromotionUnplanned || pr.Rejoin != z8rv1.RejoinPending {
		t.Errorf("%s: promotion kind %s rejoin %s, want %s and %s", label, pr.Kind, pr.Rejoin, z8rv1.PromotionUnplanned, z8rv1.RejoinPending)
	}
	if pr.RecoveryPointGUID != strconv.FormatUint(recovery.GUID, 10) {
		t.Errorf("%s: recovery point %s (guid %s), want %s's newest @%s (guid %d)", label, pr.RecoveryPoint, pr.RecoveryPointGUID, to, recovery.ShortName(), recovery.GUID)
	}
	if ro := p.readonly(newNode, srcDataset); ro != "off" {
		t.Errorf("%s: promoted %s:%s has readonly=%s", label, to, srcDataset, ro)
	}
	p.checkFiles(label, newNode)
	// The promoted target's replica hold is gone (the old source's holds
	// wait for its rejoin).
	p.check(label+" once completed", p.oldDirectionHolds(from, to, false))

	// The new source is written to; src comes back.
	p.switchTo(to, from)
	p.writeFile(k, 1<<20)
	if err := p.c.Agents[from].Start(); err != nil {
		t.Fatalf("restart agent %s: %v", from, err)
	}
	p.waitCrash(cp, controllers.FailRejoinAfterTail, label+" rejoin", rejoined)
	if ro := p.readonly(oldNode, srcDataset); ro != "on" {
		t.Errorf("%s: at the rejoin crash the old source %s:%s has readonly=%s, want on", label, from, srcDataset, ro)
	}
	p.tailAside = p.findTail(label, oldNode)
	if dr, err := p.c.Replication(ctx, replication); err != nil {
		t.Fatal(err)
	} else if dr.Status.Promotion.TailAside != p.tailAside {
		t.Errorf("%s: status names the tail %q, ZFS has %q", label, dr.Status.Promotion.TailAside, p.tailAside)
	}
	p.checkTail(label+" at the rejoin crash", oldNode, tail)
	p.check(label+" at the rejoin crash", p.checkI3())

	// Restarted unarmed one interval on: src receives near's new snapshot
	// incrementally; the tail stays.
	p.scheduleRound(label)
	dr, err := p.c.Replication(ctx, replication)
	if err != nil {
		t.Fatal(err)
	}
	if pr := dr.Status.Promotion; pr.Rejoin != z8rv1.RejoinDone || pr.TailAside != p.tailAside {
		t.Errorf("%s: rejoin %s, tail %q; want %s, %q", label, pr.Rejoin, pr.TailAside, z8rv1.RejoinDone, p.tailAside)
	}
	for _, ts := range dr.Status.Targets {
		if ts.Node == from && ts.LastSyncKind != "incremental" {
			t.Errorf("%s: the rejoined %s received %s (%d bytes), want incremental", label, from, ts.LastSyncKind, ts.LastSyncBytes)
		}
	}
	p.checkWritable(label, to, from)
	p.checkFiles(label, newNode)
	p.checkTail(label+" after the rejoin", oldNode, tail)
	// src's base snapshot is the tail's clone origin: retention keeps it.
	p.fullCheck(label, from)
	t.Logf("promotion chaos: %s done in %v", label, time.Since(began).Round(100*time.Millisecond))
}

// writeFile writes file i on the source in force (run.write) and records
// its checksum. The source must be mounted: a write into the mountpoint
// of an unmounted filesystem would land on the node's root.
func (p *promo) writeFile(i, size int) {
	if m, err := p.src.ZFS().Get(p.ctx, srcDataset, "mounted"); err != nil || m["mounted"].Value != "yes" {
		p.t.Fatalf("write on the source in force %s:%s: not mounted (%v, %v)", p.src.Name, srcDataset, m, err)
	}
	p.write(i, size)
	name := p.files[len(p.files)-1].name
	p.sums[name] = p.sum(p.src, srcDataset, name)
}

// writeNamed writes a file of size seeded bytes on n's srcDataset, outside
// the files every source must have, and returns its checksum.
func (p *promo) writeNamed(n *zfsnodes.Node, name string, i, size int) [32]byte {
	mp, err := n.ZFS().Get(p.ctx, srcDataset, "mountpoint")
	if err != nil {
		p.t.Fatal(err)
	}
	key := sha256.Sum256([]byte(fmt.Sprintf("%d/%d/%s", p.seed, i, name)))
	data := make([]byte, size)
	_, _ = rand.NewChaCha8(key).Read(data)
	if err := os.WriteFile(filepath.Join(n.Path(mp["mountpoint"].Value), name), data, 0o644); err != nil {
		p.t.Fatal(err)
	}
	return sha256.Sum256(data)
}

// sum is the checksum of file name on the mounted filesystem ds of n.
func (p *promo) sum(n *zfsnodes.Node, ds, name string) [32]byte {
	mp, err := n.ZFS().Get(p.ctx, ds, "mountpoint")
	if err != nil {
		p.t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(n.Path(mp["mountpoint"].Value), name))
	if err != nil {
		p.t.Fatalf("read %s on %s:%s: %v", name, n.Name, ds, err)
	}
	return sha256.Sum256(data)
}

// checkFiles checks that every file written on a source so far is on n's
// (mounted, writable) srcDataset with the same checksum.
func (p *promo) checkFiles(label string, n *zfsnodes.Node) {
	mp, err := n.ZFS().Get(p.ctx, srcDataset, "mountpoint", "mounted")
	if err != nil {
		p.t.Fatal(err)
	}
	if mp["mounted"].Value != "yes" {
		p.t.Errorf("%s: the source in force %s:%s is not mounted", label, n.Name, srcDataset)
		return
	}
	dir := n.Path(mp["mountpoint"].Value)
	for name, want := range p.sums {
		data, err := os.ReadFile(filepath.Join(dir, name))
		switch {
		case err != nil:
			p.t.Errorf("%s: file %s written before the switchover is not on %s: %v", label, name, n.Name, err)
		case sha256.Sum256(data) != want:
			p.t.Errorf("%s: file %s on %s differs from what was written", label, name, n.Name)
		}
	}
}

func (p *promo) readonly(n *zfsnodes.Node, ds string) string {
	v, err := n.ZFS().Get(p.ctx, ds, "readonly")
	if err != nil {
		p.t.Fatalf("readonly of %s:%s: %v", n.Name, ds, err)
	}
	return v["readonly"].Value
}

// checkWritable checks that src is the writable one of the pair and old
// is read-only.
func (p *promo) checkWritable(label, src, old string) {
	if ro := p.readonly(p.c.Nodes[src], srcDataset); ro != "off" {
		p.t.Errorf("%s: the source in force %s:%s has readonly=%s, want off", label, src, srcDataset, ro)
	}
	if ro := p.readonly(p.c.Nodes[old], srcDataset); ro != "on" {
		p.t.Errorf("%s: its target %s:%s has readonly=%s, want on", label, old, srcDataset, ro)
	}
}

// promote changes spec.source to node's target as `kubectl z8r promote`
// does (cli.PromoteSpec).
func (p *promo) promote(node string, unplanned bool) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		dr, err := p.c.Replication(p.ctx, replication)
		if err != nil {
			return err
		}
		spec, err := cli.PromoteSpec(dr, node, "", unplanned)
		if err != nil {
			return err
		}
		dr.Spec = spec
		return p.c.Kube.Client.Update(p.ctx, dr)
	})
	if err != nil {
		p.t.Fatalf("promote %s: %v", node, err)
	}
}

// waitCrash waits for the controller armed at fp to die there, asking for
// a sync now and then (a retry's backoff, a rejoin waiting for the next
// reconcile). past reports a status the controller can reach only after
// fp: seeing it (and the controller alive a second later) fails at once.
func (p *promo) waitCrash(cp *cluster.ControllerProcess, fp, label string, past func(*z8rv1.DatasetReplication) bool) {
	deadline := time.Now().Add(failpointWait)
	poke := time.Now().Add(pokeEvery)
	passed := false
	for !cp.Exited() && time.Now().Before(deadline) {
		if time.Now().After(poke) {
			p.requestSync()
			poke = time.Now().Add(pokeEvery)
		}
		if dr, err := p.c.Replication(p.ctx, replication); err == nil && past(dr) {
			select {
			case <-cp.Done():
			case <-time.After(time.Second):
				passed = true
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !cp.Exited() {
		cp.Stop(20 * time.Second)
		why := fmt.Sprintf("not reached within %v", failpointWait)
		if passed {
			why = "never reached: the controller went past it"
		}
		p.t.Fatalf("%s: failpoint %s %s\n%s\ncontroller log:\n%s", label, fp, why, p.state(), cp.LogTail(40))
	}
	if got := cp.FiredFailpoint(); got != fp {
		p.t.Fatalf("%s: the controller exited (exit %d, signal %v) at failpoint %q, want %s\n%s", label, cp.ExitCode(), cp.Signaled(), got, fp, cp.LogTail(40))
	}
}

// completed is a waitCrash past: the promotion to node completed.
func completed(node string) func(*z8rv1.DatasetReplication) bool {
	return func(dr *z8rv1.DatasetReplication) bool {
		pr := dr.Status.Promotion
		return pr != nil && pr.To.Node == node && pr.Phase == z8rv1.PromotionCompleted
	}
}

// rejoined is a waitCrash past: the old source rejoined.
func rejoined(dr *z8rv1.DatasetReplication) bool {
	pr := dr.Status.Promotion
	return pr != nil && pr.Rejoin == z8rv1.RejoinDone
}

// waitPromoted waits until the promotion to node is Completed and node is
// the source in force.
func (p *promo) waitPromoted(cp *cluster.ControllerProcess, node, label string) *z8rv1.DatasetReplication {
	deadline := time.Now().Add(promotionWait)
	poke := time.Now().Add(pokeEvery)
	var dr *z8rv1.DatasetReplication
	var err error
	for time.Now().Before(deadline) && !cp.Exited() {
		dr, err = p.c.Replication(p.ctx, replication)
		if err == nil {
			if pr := dr.Status.Promotion; pr != nil && pr.To.Node == node && pr.Phase == z8rv1.PromotionCompleted &&
				dr.Status.Source != nil && dr.Status.Source.Node == node {
				return dr
			}
		}
		if time.Now().After(poke) {
			p.requestSync()
			poke = time.Now().Add(pokeEvery)
		}
		time.Sleep(300 * time.Millisecond)
	}
	var pr any = "none"
	if dr != nil && dr.Status.Promotion != nil {
		pr = *dr.Status.Promotion
	}
	exited := cp.Exited()
	cp.Stop(20 * time.Second)
	p.t.Fatalf("%s: the promotion to %s did not complete within %v (controller exited: %v, last error %v); promotion status %+v\n%s\ncontroller log:\n%s",
		label, node, promotionWait, exited, err, pr, p.state(), cp.LogTail(40))
	return nil
}

// switchTo makes node the source in force of the run's listings, old and
// far its targets.
func (p *promo) switchTo(node, old string) {
	p.src = p.c.Nodes[node]
	p.targets = []target{{old, srcDataset}, {"far", farDataset}}
}

// scheduleRound starts an unarmed controller one interval on and waits
// until every target has the new snapshot it takes.
func (p *promo) scheduleRound(label string) {
	p.offset += interval + time.Minute
	p.previous = 0
	if n := p.read(p.src, srcDataset).NewestOwnedBy(replication); n != nil {
		p.previous = n.GUID
	}
	cp := p.startController(cluster.ProcessOptions{ClockOffset: p.offset})
	if err := p.waitConverged(cp, convergeWait); err != nil {
		cp.Stop(20 * time.Second)
		p.t.Fatalf("%s: the schedule round after the promotion did not converge within %v: %v\n%s\ncontroller log:\n%s", label, convergeWait, err, p.state(), cp.LogTail(40))
	}
	if !cp.Stop(20 * time.Second) {
		p.t.Logf("promotion chaos: %s: controller did not stop on SIGTERM within 20s", label)
	}
}

// recordLedger adds every snapshot z8r does not own on the three nodes
// (and in the tail) to the I3 ledger.
func (p *promo) recordLedger() {
	p.record(p.allListings())
}

// record adds to the I3 ledger every snapshot of ls that is not this
// replication's: not owned by it and no replica of one it owns (a crash
// between a receive and its marking leaves z8r's own replica unmarked on
// a target, as the chaos suite's ledger knows by recording only sources).
func (p *promo) record(ls []invariants.Listing) {
	owned := map[uint64]bool{}
	for _, l := range ls {
		for _, d := range l.Items {
			if d.IsSnapshot() && snapname.IsOwnedBy(d.LocalProps, replication) {
				owned[d.GUID] = true
			}
		}
	}
	for _, l := range ls {
		f := l
		f.Items = nil
		for _, d := range l.Items {
			if !owned[d.GUID] {
				f.Items = append(f.Items, d)
			}
		}
		p.ledger.Record(f, replication)
	}
}

// allListings are srcDataset on src and near, farDataset on far and the
// tail dataset if there is one.
func (p *promo) allListings() []invariants.Listing {
	ls := []invariants.Listing{
		p.read(p.c.Nodes["src"], srcDataset),
		p.read(p.c.Nodes["near"], nearDataset),
		p.read(p.c.Nodes["far"], farDataset),
	}
	if p.tailAside != "" {
		ls = append(ls, p.read(p.c.Nodes["src"], p.tailAside))
	}
	return ls
}

func (p *promo) checkI3() []invariants.Violation {
	ls := p.allListings()
	vs := p.ledger.CheckI3(ls...)
	p.record(ls)
	return vs
}

func (p *promo) check(label string, vs []invariants.Violation) {
	for _, v := range vs {
		p.t.Errorf("%s: %s", label, v)
	}
	if len(vs) > 0 {
		p.t.Logf("state:\n%s", p.state())
	}
}

// ids are the target ids of the three datasets, by node.
func ids() map[string]string {
	return map[string]string{
		"src":  policy.ID("src", srcDataset),
		"near": policy.ID("near", nearDataset),
		"far":  policy.ID("far", farDataset),
	}
}

// allTags is every z8r hold tag the replication can place, in any
// direction.
func allTags() []string {
	var tags []string
	for _, id := range ids() {
		tags = append(tags, snapname.HoldTag(id), snapname.StepHoldTag(id), snapname.ReplicaHoldTag(id))
	}
	return tags
}

// probe returns the z8r tags held on every held snapshot of l, by short
// name. Controller stopped.
func (p *promo) probe(l invariants.Listing) map[string][]string {
	out := map[string][]string{}
	for _, d := range l.Items {
		if !d.IsSnapshot() || d.UserRefs == 0 {
			continue
		}
		held, err := invariants.ProbeTags(p.ctx, p.c.Nodes[l.Node], d.Name, allTags())
		if err != nil {
			p.t.Fatalf("probe holds of %s:%s: %v", l.Node, d.Name, err)
		}
		if uint64(len(held)) < d.UserRefs {
			p.t.Logf("promotion chaos: %s:%s carries %d hold(s), %d of them z8r's (%v)", l.Node, d.Name, d.UserRefs, len(held), held)
		}
		out[d.ShortName()] = held
	}
	return out
}

// oldDirectionHolds checks, right after a promotion from old to node
// completed (controller stopped), that the old direction's holds are
// gone: on node the replica hold of its target id; with oldToo, on old
// every base or step hold of the old direction's targets and every
// replica hold but its own new one on its newest snapshot.
func (p *promo) oldDirectionHolds(old, node string, oldToo bool) []invariants.Violation {
	id := ids()
	var out []invariants.Violation
	nl := p.read(p.c.Nodes[node], srcDataset)
	for snap, held := range p.probe(nl) {
		for _, tag := range held {
			if tag == snapname.ReplicaHoldTag(id[node]) || tag == snapname.HoldTag(id[node]) || tag == snapname.StepHoldTag(id[node]) {
				out = append(out, invariants.Violation{Invariant: invariants.I2, Node: node, Dataset: srcDataset, Snapshot: snap,
					Detail: fmt.Sprintf("@%s still carries %s of the old direction (it was the target %s)", snap, tag, id[node])})
			}
		}
	}
	if !oldToo {
		return out
	}
	ol := p.read(p.c.Nodes[old], srcDataset)
	newest := ol.Newest()
	for snap, held := range p.probe(ol) {
		for _, tag := range held {
			if tag == snapname.ReplicaHoldTag(id[old]) && newest != nil && newest.ShortName() == snap {
				continue // its new direction's replica hold
			}
			out = append(out, invariants.Violation{Invariant: invariants.I2, Node: old, Dataset: srcDataset, Snapshot: snap,
				Detail: fmt.Sprintf("the old source's @%s still carries %s", snap, tag)})
		}
	}
	return out
}

// strictI2 checks every z8r hold by its tag (controller stopped, nothing
// in flight): on the source only the base tag of a target whose newest
// snapshot it is, on a target only its replica tag on its newest, in the
// tail none.
func (p *promo) strictI2(src invariants.Listing, tl []invariants.Listing) []invariants.Violation {
	id := ids()
	var out []invariants.Violation
	bad := func(l invariants.Listing, allowed func(snap, tag string) bool) {
		for snap, held := range p.probe(l) {
			for _, tag := range held {
				if !allowed(snap, tag) {
					out = append(out, invariants.Violation{Invariant: invariants.I2, Node: l.Node, Dataset: l.Dataset, Snapshot: snap,
						Detail: fmt.Sprintf("@%s carries %s, which does not belong there (z8r tags there: %v)", snap, tag, held)})
				}
			}
		}
	}
	bad(src, func(snap, tag string) bool {
		for _, l := range tl {
			if n := l.Newest(); n != nil && tag == snapname.HoldTag(id[l.Node]) {
				if s := src.ByGUID(n.GUID); s != nil && s.ShortName() == snap {
					return true
				}
			}
		}
		return false
	})
	for _, l := range tl {
		newest := l.Newest()
		bad(l, func(snap, tag string) bool {
			return newest != nil && newest.ShortName() == snap && tag == snapname.ReplicaHoldTag(id[l.Node])
		})
	}
	if p.tailAside != "" {
		bad(p.read(p.c.Nodes["src"], p.tailAside), func(string, string) bool { return false })
	}
	return out
}

// fullCheck checks, with the controller stopped and every target current,
// I1, I2 (by tag), I3, I4, T1, T2 and R1 (not on the node skipR1, whose
// tail's clone origin retention must keep).
func (p *promo) fullCheck(label, skipR1 string) {
	src, tl := p.listings()
	p.check(label, invariants.CheckI1(src, tl))
	p.check(label, p.strictI2(src, tl))
	p.check(label, p.checkI3())
	for k, l := range tl {
		n := p.c.Nodes[p.targets[k].node]
		vs, _, err := invariants.CheckI4(p.ctx, p.src, src, n, l)
		if err != nil {
			p.t.Fatalf("%s: I4 on %s: %v", label, l.Node, err)
		}
		p.check(label, vs)
		p.check(label, invariants.CheckHygiene(src, l, p.readonly(n, l.Dataset), replication))
	}
	for _, l := range append([]invariants.Listing{src}, tl...) {
		if l.Node != skipR1 {
			p.check(label, invariants.CheckRetention(l, replication, 1))
		}
	}
}

// findTail returns the one dataset beside srcDataset on n named as a
// tail (snapname.TailName).
func (p *promo) findTail(label string, n *zfsnodes.Node) string {
	out, err := n.Exec(p.ctx, "zfs", "list", "-H", "-o", "name", "-t", "filesystem", "-r", "tank")
	if err != nil {
		p.t.Fatal(err)
	}
	var tails []string
	for _, name := range strings.Fields(out) {
		if snapname.IsTailName(srcDataset, name) {
			tails = append(tails, name)
		}
	}
	if len(tails) != 1 {
		p.t.Fatalf("%s: tail datasets beside %s on %s: %v, want one\n%s", label, srcDataset, n.Name, tails, p.state())
	}
	return tails[0]
}

// checkTail checks that the tail dataset has the old source's own
// snapshot @mine and that its newest snapshot (the tail snapshot taken
// before the move) has the tail's files intact.
func (p *promo) checkTail(label string, n *zfsnodes.Node, files map[string][32]byte) {
	l := p.read(n, p.tailAside)
	found := false
	for _, d := range l.Items {
		found = found || d.ShortName() == "mine"
	}
	if !found {
		p.t.Errorf("%s: the old source's snapshot @mine is not in the tail %s:\n%s", label, p.tailAside, l)
	}
	newest := l.Newest()
	if newest == nil {
		p.t.Errorf("%s: the tail %s has no snapshot", label, p.tailAside)
		return
	}
	if _, ok := snapname.ParseTailSnapshotName(newest.ShortName()); !ok {
		p.t.Errorf("%s: the tail's newest snapshot @%s is not a tail snapshot (z8r-tail-<time>)", label, newest.ShortName())
	}
	sums, err := invariants.Contents(p.ctx, n, newest.Name)
	if err != nil {
		p.t.Fatalf("%s: read %s: %v", label, newest.Name, err)
	}
	for name, want := range files {
		if got, ok := sums[name]; !ok || got != hex.EncodeToString(want[:]) {
			p.t.Errorf("%s: the tail's file %s in %s is missing or differs (present: %v)", label, name, newest.Name, ok)
		}
	}
}
