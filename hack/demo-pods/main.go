// Command demo-pods is `make demo-pods`: `make demo`'s story through real
// pods.
//
// It builds the z8r-agent and z8r-controller images (no Docker, no
// registry: hack/images' builder), starts a real control plane and three
// real kubelet nodes (containerd, runc, CNI; each node in its own network,
// PID and mount namespaces with its own zfs-fuse pools, see
// internal/testbed/kubenode): node01 and node02 with a pool tank, node03
// with tank and backup. It applies deploy/ through the test bed's kustomize
// overlay (deploy/ plus imagePullPolicy Never) as a user runs `kubectl
// apply -k`, with the keys `kubectl z8r init-keys` makes. The agent
// DaemonSet's pods and the controller Deployment's pod then do the work.
// The demo, as the admin, sets node03's Z8RNode spec.pools to [backup], so
// one agent DaemonSet (--pools tank) serves nodes whose pools differ; the
// nodes are labelled and annotated exactly as the original z8r's README
// says, node03 with z8r's extension (receive into backup/dataset1); the
// first (full) replication runs, the source agent's audit lines of the
// transfers are read with `kubectl logs`, and then an incremental one runs
// after new data (z8r's schedule annotation set to one minute instead of
// waiting for the seed's six hours). The replicas' file checksums are read
// on each target through its own zfs-fuse.
// Everything is torn down at the end (or on Ctrl-C), and the demo fails if
// a process, mount or cgroup of a node is left.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/hack/images/imagebuild"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/kubenode"
	"github.com/z8r-project/z8r/internal/testbed/tb"
)

const (
	seed       = "zfs.replication.takutakahashi.dev"
	syncWithin = 3 * time.Minute
	// poolsWithin bounds an agent taking up its Z8RNode's spec.pools: it
	// reads them at each status refresh (every 30 s).
	poolsWithin  = 90 * time.Second
	srcNode      = "node01"
	replicaNode  = "node02"
	backupNode   = "node03"
	dataset1     = "tank/dataset1"
	dataset2     = "tank/dataset2"
	backup1      = "backup/dataset1"
	cloneDataset = "verify"
	// transferRequest is the agent's request type of a transfer, as its
	// audit lines name it; auditShown is how many of them the demo prints.
	transferRequest = "z8r.dev/transfer/v1"
	auditShown      = 4
)

func main() {
	keep := flag.Bool("keep", false, "keep everything running until Ctrl-C after the demo")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo-pods: run as root (kubelet nodes need namespaces, cgroups and mounts)")
		os.Exit(1)
	}
	p := &tb.Program{}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Println("\ninterrupted: tearing down")
		p.Close()
		os.Exit(130)
	}()
	nodes := run(p, *keep)
	step("tearing down: pods, kubelets, containerd, zfs-fuse pools, network namespaces, control plane")
	began := time.Now()
	p.Close()
	for _, n := range nodes {
		if left := n.Leftovers(); len(left) > 0 {
			p.Errorf("%s left: %s", n.Name, strings.Join(left, "; "))
		}
	}
	if p.Failed() {
		os.Exit(1)
	}
	fmt.Printf("torn down in %s: no process, mount or cgroup of a node left\n", time.Since(began).Round(time.Millisecond))
	fmt.Println("\ndemo finished")
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

func run(p *tb.Program, keep bool) []*kubenode.Node {
	ctx := context.Background()
	root, err := kubeenv.ModuleRoot()
	if err != nil {
		p.Fatal(err)
	}
	step("building the images: pause (the nodes' sandbox), z8r-agent, z8r-controller (static binaries on an empty base)")
	began := time.Now()
	imgs, err := kubenode.BuildImages(ctx, root, p.TempDir(), logr.Discard(), imagebuild.Agent, imagebuild.Controller)
	if err != nil {
		p.Fatal(err)
	}
	fmt.Printf("built in %s\n", time.Since(began).Round(time.Millisecond))

	step("starting a control plane and three kubelet nodes (%s and %s with a pool tank, %s with tank and backup), then applying deploy/ as a user does",
		srcNode, replicaNode, backupNode)
	began = time.Now()
	d := kubenode.StartDeployed(p, kubenode.DeployedOptions{
		Nodes:     []string{srcNode, replicaNode, backupNode},
		NodePools: map[string][]string{backupNode: {"tank", "backup"}},
		Images:    imgs,
		Log:       func(msg string) { fmt.Println("  " + msg) },
	})
	fmt.Printf("z8r running in pods after %s\n", time.Since(began).Round(time.Millisecond))
	src, dst, bak := d.Nodes[srcNode], d.Nodes[replicaNode], d.Nodes[backupNode]
	nodes := []*kubenode.Node{src, dst, bak}
	kc := newKubectl(p, d.Env)
	kubectl := kc.run
	kubectl("get", "nodes", "-o", "wide")
	kubectl("get", "pods", "-n", kubenode.Z8RNamespace, "-o", "wide")
	kubectl("get", "z8rnodes", "-o", "wide")

	step("as the admin: %s keeps replicas on its HDD pool backup, so its Z8RNode's spec.pools is [backup] (the one agent DaemonSet's --pools stays tank)", backupNode)
	kubectl("patch", "z8rnode", backupNode, "--type=merge", "-p", `{"spec":{"pools":["backup"]}}`)
	began = time.Now()
	waitPools(p, d, backupNode, "backup")
	fmt.Printf("%s's agent took it up %s later, without a restart\n", backupNode, time.Since(began).Round(time.Millisecond))
	kubectl("get", "z8rnodes", "-o", "custom-columns=NAME:.metadata.name,POOLS:.status.pools,FROM:.status.poolsFrom,ADDRESS:.status.address")

	step("writing data on %s, through its own zfs-fuse: %s (32 MiB) and %s (8 MiB)", srcNode, dataset1, dataset2)
	sum1 := mkdata(p, src, dataset1, "photos.bin", 32)
	sum2 := mkdata(p, src, dataset2, "notes.bin", 8)

	step("labelling and annotating the nodes exactly as the original z8r's README")
	for _, args := range [][]string{
		{"label", "node", srcNode, seed + "=true"},
		{"label", "node", replicaNode, seed + "=true"},
		{"annotate", "node", srcNode, seed + "/master=" + dataset1 + "," + dataset2},
		{"annotate", "node", replicaNode, seed + "/replica=" + dataset1 + "," + dataset2},
	} {
		kubectl(args...)
	}
	step("and %s with z8r's extension: receive %s into its pool backup (%s)", backupNode, dataset1, backup1)
	kubectl("label", "node", backupNode, "z8r.dev/replication=true")
	kubectl("annotate", "node", backupNode, "z8r.dev/replica="+dataset1+":"+backup1)

	rep1, rep2 := policy.ID(srcNode, dataset1), policy.ID(srcNode, dataset2)
	step("waiting for the first replication (a full send, agent pod to agent pod, ordered by the controller pod)")
	began = time.Now()
	first := waitSynced(p, d, rep1, 2, "")
	waitSynced(p, d, rep2, 1, "")
	fmt.Printf("both Synced %s after the annotations\n", time.Since(began).Round(time.Millisecond))
	kubectl("get", "datasetreplications", "-o", "wide")

	step("the source agent's audit log: the transfers the controller pod asked %s's agent pod for", srcNode)
	showAudit(p, d, kc, srcNode)

	step("checking the replicas on %s: the received snapshot's files, read through %s's own zfs-fuse", replicaNode, replicaNode)
	compare(p, dst, dataset1, first, "photos.bin", sum1)
	compare(p, dst, dataset2, snapshotOf(p, d, rep2), "notes.bin", sum2)
	step("and on %s, in its pool backup", backupNode)
	compare(p, bak, backup1, first, "photos.bin", sum1)

	step("writing 4 MiB more on %s:%s; z8r's schedule annotation makes the next snapshot due 1 minute after the first instead of 6 hours", srcNode, dataset1)
	appendData(p, src, dataset1, "photos.bin", 4)
	sum1 = sha256In(p, src, filepath.Join(mountpoint(src, dataset1), "photos.bin"))
	kubectl("annotate", "node", srcNode, "z8r.dev/schedule=1m")
	began = time.Now()
	second := waitSynced(p, d, rep1, 2, first)
	fmt.Printf("the next snapshot and its incremental sync %s later\n", time.Since(began).Round(time.Millisecond))
	printTargets(p, d, rep1)
	compare(p, dst, dataset1, second, "photos.bin", sum1)
	compare(p, bak, backup1, second, "photos.bin", sum1)

	step("the pods that did it")
	kubectl("get", "pods", "-n", kubenode.Z8RNamespace, "-o", "wide")
	kubectl("z8r", "status")
	step("snapshots on %s (source), %s and %s (replicas)", srcNode, replicaNode, backupNode)
	for _, np := range []struct {
		n    *kubenode.Node
		pool string
	}{{src, "tank"}, {dst, "tank"}, {bak, "backup"}} {
		out, err := np.n.Exec(ctx, "zfs", "list", "-t", "snapshot", "-r", "-o", "name,used,refer,userrefs", np.pool)
		if err != nil {
			p.Fatal(err)
		}
		fmt.Printf("-- %s\n%s", np.n.Name, out)
	}
	step("the data is replicated: %s has %s's %s and %s, %s has %s in %s, through the z8r-agent and z8r-controller pods",
		replicaNode, srcNode, dataset1, dataset2, backupNode, dataset1, backup1)
	if keep {
		fmt.Printf("\nkubeconfig: %s\nkubectl:    %s\nCtrl-C to tear down\n", d.Env.Kubeconfig, filepath.Join(d.Env.BinDir, kubeenv.BinKubectl))
		select {}
	}
	return nodes
}

// kubectlCmd runs the kubectl make kube-tools built against a control
// plane, with the kubectl-z8r plugin on PATH, printing each command line.
type kubectlCmd struct {
	p   *tb.Program
	bin string
	env []string
}

// newKubectl builds the kubectl-z8r plugin and returns a kubectlCmd for env.
func newKubectl(p *tb.Program, env *kubeenv.Env) *kubectlCmd {
	plugins := p.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(plugins, "kubectl-z8r"), "./cmd/kubectl-z8r")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		p.Fatalf("build kubectl-z8r: %v", err)
	}
	return &kubectlCmd{
		p:   p,
		bin: filepath.Join(env.BinDir, kubeenv.BinKubectl),
		env: append(os.Environ(), "PATH="+plugins+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+env.Kubeconfig),
	}
}

// run prints and runs kubectl args, its output going to the demo's.
func (k *kubectlCmd) run(args ...string) {
	fmt.Printf("$ kubectl %s\n", display(args))
	cmd := k.command(args)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		k.p.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
}

// output prints kubectl args and runs it, returning its standard output.
func (k *kubectlCmd) output(args ...string) string {
	fmt.Printf("$ kubectl %s\n", display(args))
	cmd := k.command(args)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		k.p.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// display joins args for printing as a shell line, single-quoting those
// a shell would split or expand (display only: nothing runs through a shell).
func display(args []string) string {
	words := make([]string, len(args))
	for i, a := range args {
		words[i] = a
		if strings.ContainsAny(a, " \"'{}[]*?$&;|<>()`\\") {
			words[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(words, " ")
}

func (k *kubectlCmd) command(args []string) *exec.Cmd {
	cmd := exec.Command(k.bin, args...)
	cmd.Env = k.env
	return cmd
}

// showAudit prints the audit lines of transfers in the log of the agent
// pod on node, read as an operator does with `kubectl logs` (through the
// API server and that node's kubelet), and fails if there is none.
func showAudit(p *tb.Program, d *kubenode.Deployed, kubectl *kubectlCmd, node string) {
	pods, err := kubenode.WaitReadyPods(context.Background(), d.Env, kubenode.Z8RNamespace, kubenode.AgentSelector, len(d.Nodes), time.Minute)
	if err != nil {
		p.Fatal(err)
	}
	pod := ""
	for _, po := range pods {
		if po.Spec.NodeName == node {
			pod = po.Name
		}
	}
	if pod == "" {
		p.Fatalf("no agent pod on %s", node)
	}
	var lines []string
	for _, l := range strings.Split(kubectl.output("logs", "-n", kubenode.Z8RNamespace, pod, "-c", "agent"), "\n") {
		if strings.Contains(l, `"msg":"audit"`) && strings.Contains(l, `"request":"`+transferRequest+`"`) {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		p.Fatalf("%s's agent log has no audit line of a transfer", node)
	}
	fmt.Printf("  (%d audit lines of transfers, the last %d:)\n", len(lines), min(len(lines), auditShown))
	for _, l := range lines[max(0, len(lines)-auditShown):] {
		fmt.Println("  " + l)
	}
}

// mountpoint is where node n's zfs-fuse mounts dataset fs (under the
// pool's mountpoint, in the node's mount namespace).
func mountpoint(n *kubenode.Node, fs string) string {
	return filepath.Join(n.Dir, "zfs", "mnt", fs)
}

// mkdata creates fs on n and writes mib MiB of random data into file.
func mkdata(p *tb.Program, n *kubenode.Node, fs, file string, mib int) string {
	if _, err := n.Exec(context.Background(), "zfs", "create", fs); err != nil {
		p.Fatal(err)
	}
	path := filepath.Join(mountpoint(n, fs), file)
	if _, err := n.Exec(context.Background(), "dd", "if=/dev/urandom", "of="+path, "bs=1M", fmt.Sprintf("count=%d", mib)); err != nil {
		p.Fatal(err)
	}
	sum := sha256In(p, n, path)
	fmt.Printf("  %s:%s/%s sha256 %s\n", n.Name, fs, file, sum)
	return sum
}

// appendData appends mib MiB of random data to fs's file on n.
func appendData(p *tb.Program, n *kubenode.Node, fs, file string, mib int) {
	path := filepath.Join(mountpoint(n, fs), file)
	if _, err := n.Exec(context.Background(), "dd", "if=/dev/urandom", "of="+path, "bs=1M", fmt.Sprintf("count=%d", mib), "oflag=append", "conv=notrunc"); err != nil {
		p.Fatal(err)
	}
}

// sha256In returns the SHA-256 of path as node n sees it.
func sha256In(p *tb.Program, n *kubenode.Node, path string) string {
	sum, err := kubenode.FileSHA256(context.Background(), n, path)
	if err != nil {
		p.Fatal(err)
	}
	return sum
}

// compare clones the replica's snapshot fs@snap on n (the replica itself
// stays unmounted, as received), reads file's SHA-256 from the clone
// through n's zfs-fuse, destroys the clone again (the demo made it) and
// fails unless the checksum is want.
func compare(p *tb.Program, n *kubenode.Node, fs, snap, file, want string) {
	ctx := context.Background()
	mnt := filepath.Join(n.Dir, "zfs", "mnt", cloneDataset)
	pool, _, _ := strings.Cut(fs, "/")
	clone := pool + "/" + cloneDataset
	if _, err := n.Exec(ctx, "zfs", "clone", "-o", "mountpoint="+mnt, fs+"@"+snap, clone); err != nil {
		p.Fatal(err)
	}
	got := sha256In(p, n, filepath.Join(mnt, file))
	// zfs-fuse reports a just-read filesystem busy for a moment.
	var err error
	for range 20 {
		if _, err = n.Exec(ctx, "zfs", "destroy", clone); err == nil || !strings.Contains(err.Error(), "busy") {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		p.Fatal(err)
	}
	if got != want {
		p.Fatalf("%s:%s@%s/%s has SHA-256 %s, want %s (the source's)", n.Name, fs, snap, file, got, want)
	}
	fmt.Printf("  %s:%s@%s %s sha256 %s == the source's\n", n.Name, fs, snap, file, got)
}

// waitSynced waits until the DatasetReplication name has targets targets,
// each Synced on a snapshot other than notSnap, and returns that snapshot.
func waitSynced(p *tb.Program, d *kubenode.Deployed, name string, targets int, notSnap string) string {
	var last, snap string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, syncWithin, true, func(ctx context.Context) (bool, error) {
		var dr z8rv1.DatasetReplication
		if err := d.Env.Client.Get(ctx, client.ObjectKey{Name: name}, &dr); err != nil {
			if ctx.Err() == nil {
				last = err.Error()
			}
			return false, nil
		}
		last = fmt.Sprintf("state %s, targets %+v", dr.Status.State, dr.Status.Targets)
		if dr.Status.State != z8rv1.TargetSynced || len(dr.Status.Targets) != targets {
			return false, nil
		}
		for _, t := range dr.Status.Targets {
			if t.LastSnapshot == "" || t.LastSnapshot == notSnap {
				return false, nil
			}
			snap = t.LastSnapshot
		}
		return true, nil
	})
	if err != nil {
		p.Fatalf("%s did not sync within %s: %s", name, syncWithin, last)
	}
	return snap
}

// waitPools waits until node's agent reports the pools of its Z8RNode's
// spec (status.pools equal to pools, poolsFrom "spec") and is Ready.
func waitPools(p *tb.Program, d *kubenode.Deployed, node string, pools ...string) {
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, poolsWithin, true, func(ctx context.Context) (bool, error) {
		var zn z8rv1.Z8RNode
		if err := d.Env.Client.Get(ctx, client.ObjectKey{Name: node}, &zn); err != nil {
			return false, nil
		}
		last = fmt.Sprintf("pools %v from %q, ready %v", zn.Status.Pools, zn.Status.PoolsFrom, zn.Status.Ready)
		return slices.Equal(zn.Status.Pools, pools) && zn.Status.PoolsFrom == "spec" && zn.Status.Ready, nil
	})
	if err != nil {
		p.Fatalf("%s's agent did not take up spec.pools %v within %s: %s", node, pools, poolsWithin, last)
	}
}

// snapshotOf returns the last snapshot of the DatasetReplication name's
// first target.
func snapshotOf(p *tb.Program, d *kubenode.Deployed, name string) string {
	var dr z8rv1.DatasetReplication
	if err := d.Env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &dr); err != nil {
		p.Fatal(err)
	}
	if len(dr.Status.Targets) == 0 {
		p.Fatalf("%s has no target", name)
	}
	return dr.Status.Targets[0].LastSnapshot
}

func printTargets(p *tb.Program, d *kubenode.Deployed, name string) {
	var dr z8rv1.DatasetReplication
	if err := d.Env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &dr); err != nil {
		p.Fatal(err)
	}
	fmt.Printf("%s (%s:%s):\n", name, dr.Spec.Source.Node, dr.Spec.Source.Dataset)
	for _, t := range dr.Status.Targets {
		dur := ""
		if t.LastSyncDuration != nil {
			dur = t.LastSyncDuration.Duration.Round(time.Millisecond).String()
		}
		fmt.Printf("  -> %-7s %-14s %-7s @%s  last sync: %s, %d bytes in %s, base held on source: @%s\n",
			t.Node, t.Dataset, t.State, t.LastSnapshot, t.LastSyncKind, t.LastSyncBytes, dur, t.ProtectedBase)
	}
}
