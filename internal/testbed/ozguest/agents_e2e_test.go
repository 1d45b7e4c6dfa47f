//go:build e2e

package ozguest

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/agentproc"
	"github.com/z8r-project/z8r/zfsexec"
)

// e2eRun runs argv in a guest and returns its stdout.
func e2eRun(t testing.TB, r zfsexec.Runner, argv ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := r.Run(context.Background(), zfsexec.Command{Argv: argv, Stdout: &out}); err != nil {
		t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	return out.String()
}

func e2eProp(t testing.TB, r zfsexec.Runner, name, property string) string {
	t.Helper()
	return strings.TrimSpace(e2eRun(t, r, "zfs", "get", "-Hp", "-o", "value", property, name))
}

// twoGuestsWithData boots two OpenZFS guests with a pool tank on a disk of
// diskSize bytes each, writes mib MiB of random data into the first's
// tank/data/blob, and returns the guests and the data's SHA-256.
func twoGuestsWithData(t *testing.T, diskSize int64, mib int) (src, dst *Guest, sum string) {
	t.Helper()
	start := time.Now()
	gs := BootN(t, 2, Options{Disks: 1, DiskSize: diskSize, MemoryMiB: 1024})
	for _, g := range gs {
		e2eRun(t, g.Runner(), "zpool", "create", "-f", "tank", g.Disk(0))
	}
	srcR := gs[0].Runner()
	e2eRun(t, srcR, "zfs", "create", "tank/data")
	e2eRun(t, srcR, "dd", "if=/dev/urandom", "of=/tank/data/blob", "bs=1M", "count="+strconv.Itoa(mib), "status=none")
	sum = strings.Fields(e2eRun(t, srcR, "sha256sum", "/tank/data/blob"))[0]
	t.Logf("guests ready, %d MiB written: %v", mib, time.Since(start).Round(time.Second))
	return gs[0], gs[1], sum
}

// checkReplicaBlob fails the test unless tank/replica/blob on the target
// (mounted for the read, unmounted after) has the SHA-256 want.
func checkReplicaBlob(t *testing.T, dstR zfsexec.Runner, want string) {
	t.Helper()
	e2eRun(t, dstR, "zfs", "mount", "tank/replica")
	defer e2eRun(t, dstR, "zfs", "umount", "tank/replica")
	if got := strings.Fields(e2eRun(t, dstR, "sha256sum", "/tank/replica/blob"))[0]; got != want {
		t.Fatalf("replica data sha256 %s, source %s", got, want)
	}
}

// TestAgents_ResumeBetweenOpenZFSGuests is issue 15's "end-to-end resume
// through agents between two OpenZFS guests": a 256 MiB replication with
// replicate.SyncTarget through two real agents (each on the host, running
// zfs in its own guest) is interrupted mid-stream by SIGKILLing the source
// agent; after a restart the next SyncTarget resumes from the target's
// token (a Resumed step), sends well under a full stream, and the replica
// holds the source's data.
func TestAgents_ResumeBetweenOpenZFSGuests(t *testing.T) {
	start := time.Now()
	srcG, dstG, want := twoGuestsWithData(t, 2<<30, 256)
	srcR, dstR := srcG.Runner(), dstG.Runner()

	keys := agentproc.NewKeys(t)
	srcA := StartAgent(t, srcG, StartRelay(t, srcG), keys, "tank")
	dstA := StartAgent(t, dstG, StartRelay(t, dstG), keys, "tank")
	dial := func(a *HostAgent) *agent.Client {
		c, err := agent.Dial(context.Background(), a.Addr, agent.ClientConfig{Signer: keys.Controller, HostKey: a.HostKey, GrantAuthority: keys.Controller})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	srcC, dstC := dial(srcA), dial(dstA)
	ctx := context.Background()
	snap, err := replicate.TakeSnapshot(ctx, srcC.ZFS(), "tank/data", "z8r", "p1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	full, err := strconv.ParseInt(strings.Fields(lastLine(e2eRun(t, srcR, "zfs", "send", "-nP", "tank/data@"+snap)))[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	target := replicate.Target{ID: "oz", PolicyID: "p1", Endpoint: dstC, Addr: dstA.Addr,
		HostKey: dstA.PublicHostKey(), Dataset: "tank/replica"}

	// First sync: kill the source agent once half the stream is through.
	var killed sync.Once
	var seen atomic.Int64
	first := time.Now()
	_, err = replicate.SyncTarget(ctx, srcC, "tank/data", target, replicate.Options{
		Progress: func(_ int, p agent.Progress) {
			seen.Store(p.Bytes)
			if p.Bytes >= full/2 {
				killed.Do(srcA.Kill)
			}
		},
	})
	if err == nil {
		t.Fatalf("the first sync survived the source agent's death (saw %d of %d bytes)", seen.Load(), full)
	}
	t.Logf("first sync interrupted after %d of %d bytes in %v: %v", seen.Load(), full, time.Since(first).Round(time.Millisecond), err)
	// The target keeps the partial state; the receive may take a moment
	// to notice its stream is gone.
	var token string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		token = e2eProp(t, dstR, "tank/replica", "receive_resume_token")
		if token != "-" && token != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no resume token on the target (%q)", token)
		}
	}
	tok, err := zfsexec.DecodeResumeToken(token)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ToName != "tank/data@"+snap || tok.IsIncremental() || tok.Bytes == 0 {
		t.Fatalf("token %+v", tok)
	}
	// The interrupted step's to stays protected on the source.
	if holds := e2eRun(t, srcR, "zfs", "holds", "-H", "tank/data@"+snap); !strings.Contains(holds, snapname.StepHoldTag("oz")) {
		t.Errorf("interrupted step's snapshot not step-held on the source: %q", holds)
	}

	// Second sync, with the source agent back: it resumes.
	if err := srcA.Start(); err != nil {
		t.Fatal(err)
	}
	srcC = dial(srcA)
	second := time.Now()
	res, err := replicate.SyncTarget(ctx, srcC, "tank/data", target, replicate.Options{})
	if err != nil {
		t.Fatalf("resuming sync: %v", err)
	}
	took := time.Since(second)
	if len(res.Steps) == 0 || !res.Steps[0].Resumed || res.Steps[0].To != snap {
		t.Fatalf("result %+v, want a first step resumed to @%s", res, snap)
	}
	t.Logf("resumed sync: %d bytes (full stream %d, token at %d) in %v; result %+v", res.Bytes(), full, tok.Bytes, took.Round(time.Millisecond), res)
	// No full resend: the resumed stream is what the token had not yet
	// received (plus its headers), well under a full stream.
	if res.Bytes() >= full*3/4 || res.Bytes() > full-int64(tok.Bytes)+4<<20 {
		t.Errorf("resumed sync sent %d bytes; full stream %d, already received %d", res.Bytes(), full, tok.Bytes)
	}
	if got := e2eProp(t, dstR, "tank/replica", "receive_resume_token"); got != "-" {
		t.Errorf("token left after the resume: %q", got)
	}
	if s, d := e2eProp(t, srcR, "tank/data@"+snap, "guid"), e2eProp(t, dstR, "tank/replica@"+snap, "guid"); s != d {
		t.Fatalf("replica guid %s, source %s", d, s)
	}
	if got := e2eProp(t, dstR, "tank/replica", "readonly"); got != "on" {
		t.Errorf("resumed replica readonly=%s", got)
	}
	if got := e2eRun(t, dstR, "zfs", "get", "-H", "-o", "value,source", snapname.OwnerProp, "tank/replica@"+snap); !strings.HasPrefix(got, snapname.OwnerValue+"\tlocal") {
		t.Errorf("resumed snapshot ownership %q", got)
	}
	holds := e2eRun(t, srcR, "zfs", "holds", "-H", "tank/data@"+snap)
	if strings.Contains(holds, snapname.StepHoldTag("oz")) || !strings.Contains(holds, snapname.HoldTag("oz")) {
		t.Errorf("source holds after the resume: %q, want the base hold and no step hold", holds)
	}
	checkReplicaBlob(t, dstR, want)
	t.Logf("resume phase done: %v", time.Since(start).Round(time.Second))

	// An incremental interrupted by the controller (its context
	// cancelled mid-stream) leaves a token whose snapshot an operator then
	// destroys on the source: the next sync reports the mismatch and
	// aborts the partial state; the one after sends afresh.
	e2eRun(t, srcR, "dd", "if=/dev/urandom", "of=/tank/data/more", "bs=1M", "count=64", "status=none")
	s2, err := replicate.TakeSnapshot(ctx, srcC.ZFS(), "tank/data", "z8r", "p1", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	_, err = replicate.SyncTarget(cctx, srcC, "tank/data", target, replicate.Options{
		Progress: func(_ int, p agent.Progress) {
			if p.Bytes >= 16<<20 {
				cancel()
			}
		},
	})
	cancel()
	if err == nil {
		t.Fatal("the cancelled incremental sync succeeded")
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		if tk := e2eProp(t, dstR, "tank/replica", "receive_resume_token"); tk != "-" && tk != "" {
			tok, err := zfsexec.DecodeResumeToken(tk)
			if err != nil || tok.ToName != "tank/data@"+s2 || !tok.IsIncremental() {
				t.Fatalf("incremental token %+v, %v", tok, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no resume token after the cancelled incremental")
		}
	}
	e2eRun(t, srcR, "zfs", "release", snapname.StepHoldTag("oz"), "tank/data@"+s2)
	e2eRun(t, srcR, "zfs", "destroy", "tank/data@"+s2)
	s3, err := replicate.TakeSnapshot(ctx, srcC.ZFS(), "tank/data", "z8r", "p1", time.Now().Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	_, err = replicate.SyncTarget(ctx, srcC, "tank/data", target, replicate.Options{})
	var me *replicate.ResumeMismatchError
	if !errors.As(err, &me) || !me.Aborted || !strings.Contains(me.Reason, "no snapshot with guid") {
		t.Fatalf("sync over a token whose snapshot is gone: %v, want an aborted *ResumeMismatchError", err)
	}
	t.Logf("reported: %v", me)
	if got := e2eProp(t, dstR, "tank/replica", "receive_resume_token"); got != "-" {
		t.Fatalf("token still there after the abort: %q", got)
	}
	res, err = replicate.SyncTarget(ctx, srcC, "tank/data", target, replicate.Options{})
	if err != nil {
		t.Fatalf("sync after the abort: %v", err)
	}
	if len(res.Steps) != 1 || res.Steps[0].Resumed || res.Steps[0].From != snap || res.Steps[0].To != s3 {
		t.Fatalf("sync after the abort %+v, want one incremental @%s -> @%s", res, snap, s3)
	}
	if s, d := e2eProp(t, srcR, "tank/data@"+s3, "guid"), e2eProp(t, dstR, "tank/replica@"+s3, "guid"); s != d {
		t.Fatalf("replica guid %s, source %s", d, s)
	}
	t.Logf("abandon phase done: %v", time.Since(start).Round(time.Second))

	// A full receive forced into an existing pristine replica (a replica
	// whose snapshots all rotated away: SyncSnapshot with
	// AllowFullIntoEmpty, the VolumeSnapshot path), interrupted, resumes
	// with -F.
	e2eRun(t, srcR, "zfs", "create", "tank/small")
	e2eRun(t, srcR, "dd", "if=/dev/urandom", "of=/tank/small/blob", "bs=1M", "count=48", "status=none")
	wantSmall := strings.Fields(e2eRun(t, srcR, "sha256sum", "/tank/small/blob"))[0]
	small, err := replicate.TakeSnapshot(ctx, srcC.ZFS(), "tank/small", "z8r", "p2", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e2eRun(t, dstR, "zfs", "create", "-u", "-o", "readonly=on", "-o", replicate.ReplicaOfProp+"=tank/small", "tank/smallrep")
	target2 := replicate.Target{ID: "oz2", PolicyID: "p2", Endpoint: dstC, Addr: dstA.Addr,
		HostKey: dstA.PublicHostKey(), Dataset: "tank/smallrep"}
	cctx, cancel = context.WithCancel(ctx)
	_, err = replicate.SyncSnapshot(cctx, srcC, "tank/small", small, target2, replicate.SnapshotOptions{
		AllowFullIntoEmpty: true,
		Progress: func(_ int, p agent.Progress) {
			if p.Bytes >= 24<<20 {
				cancel()
			}
		},
	})
	cancel()
	if err == nil {
		t.Fatal("the cancelled forced full sync succeeded")
	}
	t.Logf("forced full receive interrupted: %v", err)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		if tk := e2eProp(t, dstR, "tank/smallrep", "receive_resume_token"); tk != "-" && tk != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no resume token after the cancelled forced full receive")
		}
	}
	res, err = replicate.SyncSnapshot(ctx, srcC, "tank/small", small, target2, replicate.SnapshotOptions{AllowFullIntoEmpty: true})
	if err != nil {
		t.Fatalf("resuming the forced full receive: %v", err)
	}
	t.Logf("forced full receive resumed: %d bytes, result %+v", res.Bytes(), res)
	if len(res.Steps) == 0 || !res.Steps[0].Resumed || res.Steps[0].To != small || res.Bytes() >= 40<<20 {
		t.Fatalf("result %+v, want a resumed step to @%s well under 48 MiB", res, small)
	}
	if s, d := e2eProp(t, srcR, "tank/small@"+small, "guid"), e2eProp(t, dstR, "tank/smallrep@"+small, "guid"); s != d {
		t.Fatalf("replica guid %s, source %s", d, s)
	}
	e2eRun(t, dstR, "zfs", "mount", "tank/smallrep")
	if got := strings.Fields(e2eRun(t, dstR, "sha256sum", "/tank/smallrep/blob"))[0]; got != wantSmall {
		t.Fatalf("replica data sha256 %s, source %s", got, wantSmall)
	}
	t.Logf("total %v", time.Since(start).Round(time.Second))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
