// Command demo is `make demo`: z8r's main job on an embedded default.
//
// It starts a real control plane (kube-apiserver, etcd), three simulated
// nodes (each a zfs-fuse daemon in its own mount and network namespace,
// with a z8r-agent process serving SSH on the node's own address), and the
// z8r controller; labels and annotates the nodes exactly as the original
// z8r's README does; writes data; and shows the first (full) replication,
// then an incremental one after new data, printing what an operator looks
// at. Everything is torn down at the end (or on Ctrl-C).
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/cluster"
	"github.com/z8r-project/z8r/internal/testbed/tb"
	"github.com/z8r-project/z8r/internal/testbed/zfsnodes"
	"github.com/z8r-project/z8r/zfsexec"
)

const seed = "zfs.replication.takutakahashi.dev"

func main() {
	keep := flag.Bool("keep", false, "keep everything running until Ctrl-C after the demo")
	flag.Parse()
	p := &tb.Program{}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Println("\ninterrupted: tearing down")
		p.Close()
		os.Exit(130)
	}()
	run(p, *keep)
	p.Close()
	if p.Failed() {
		os.Exit(1)
	}
	fmt.Println("\ndemo finished; everything was torn down")
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

func run(p *tb.Program, keep bool) {
	ctx := context.Background()
	// The seed snapshots every 6 hours. The demo's controller runs on a
	// clock the demo moves forward, so "6 hours later" takes a second.
	clock := clocktest.New(time.Now())
	step("starting a control plane, 3 zfs-fuse nodes in their own network namespaces, and an agent on each")
	c := cluster.Start(p, cluster.Options{Clock: clock, Nodes: []cluster.NodeSpec{
		{Name: "node01", Pools: []string{"tank"}},
		{Name: "node02", Pools: []string{"tank"}},
		{Name: "node03", Pools: []string{"tank", "backup"}},
	}})
	n1, n2, n3 := c.Nodes["node01"], c.Nodes["node02"], c.Nodes["node03"]
	kubectl := kubectlFunc(p, c)

	step("writing data on node01: tank/dataset1 (32 MiB) and tank/dataset2 (8 MiB)")
	sum1 := mkdata(p, n1, "tank/dataset1", "photos.bin", 32<<20)
	sum2 := mkdata(p, n1, "tank/dataset2", "notes.bin", 8<<20)

	step("labelling and annotating the nodes exactly as the original z8r's README")
	for _, args := range [][]string{
		{"label", "node", "node01", seed + "=true"},
		{"label", "node", "node02", seed + "=true"},
		{"annotate", "node", "node01", seed + "/master=tank/dataset1,tank/dataset2"},
		{"annotate", "node", "node02", seed + "/replica=tank/dataset1,tank/dataset2"},
	} {
		kubectl(args...)
	}
	step("and node03 with z8r's extension: receive tank/dataset1 into another pool (backup/dataset1)")
	kubectl("label", "node", "node03", "z8r.dev/replication=true")
	kubectl("annotate", "node", "node03", "z8r.dev/replica=tank/dataset1:backup/dataset1")

	step("starting the z8r controller")
	c.StartController()
	if err := c.WaitZ8RNodesReady(ctx, time.Minute); err != nil {
		p.Fatal(err)
	}
	kubectl("get", "z8rnodes", "-o", "wide")

	rep1, rep2 := policy.ID("node01", "tank/dataset1"), policy.ID("node01", "tank/dataset2")
	step("waiting for the first replication (a full send of the first snapshot)")
	waitSynced(p, c, rep1, "")
	waitSynced(p, c, rep2, "")
	kubectl("get", "datasetreplications")
	first := printTargets(p, c, rep1)

	step("checking the replicas: same snapshot GUIDs, same bytes")
	compare(p, n1, n2, "tank/dataset1", "tank/dataset1", "photos.bin", sum1)
	compare(p, n1, n3, "tank/dataset1", "backup/dataset1", "photos.bin", sum1)
	compare(p, n1, n2, "tank/dataset2", "tank/dataset2", "notes.bin", sum2)

	step("writing 4 MiB more on node01:tank/dataset1; 6 hours pass (the seed's interval)")
	writeFile(p, n1, "tank/dataset1", "more.bin", 4<<20)
	clock.Advance(6*time.Hour + time.Minute)
	for _, r := range []string{rep1, rep2} {
		requestSync(p, c, r)
	}
	step("waiting for the next snapshot and the incremental replication")
	waitSynced(p, c, rep1, first)
	kubectl("get", "datasetreplications", "-o", "wide")
	printTargets(p, c, rep1)

	step("the kubectl plugin: kubectl z8r status / nodes")
	kubectl("z8r", "status")
	kubectl("z8r", "nodes")

	step("events of %s", rep1)
	ev, _ := c.Events(ctx, rep1)
	for _, e := range ev {
		fmt.Println("  " + e)
	}
	step("snapshots on node01 (source), node02 and node03 (replicas)")
	for _, x := range []struct {
		n  *zfsnodes.Node
		ds string
	}{{n1, "tank"}, {n2, "tank"}, {n3, "backup"}} {
		out, err := x.n.Exec(ctx, "zfs", "list", "-t", "snapshot", "-r", "-o", "name,used,refer", x.ds)
		if err != nil {
			p.Fatal(err)
		}
		fmt.Printf("-- %s\n%s", x.n.Name, out)
	}
	step("the data is replicated: %s has node01's tank/dataset1 and tank/dataset2, %s has it in backup/dataset1", n2.Name, n3.Name)
	if keep {
		fmt.Printf("\nkubeconfig: %s\nkubectl:    %s\nCtrl-C to tear down\n", c.Kube.Kubeconfig, filepath.Join(c.Kube.BinDir, "kubectl"))
		select {}
	}
}

func kubectlFunc(p *tb.Program, c *cluster.Cluster) func(args ...string) {
	bin := filepath.Join(c.Kube.BinDir, "kubectl")
	// kubectl finds the z8r plugin (kubectl-z8r) on PATH.
	plugins := p.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(plugins, "kubectl-z8r"), "./cmd/kubectl-z8r")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		p.Fatalf("build kubectl-z8r: %v", err)
	}
	env := append(os.Environ(), "PATH="+plugins+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+c.Kube.Kubeconfig)
	return func(args ...string) {
		fmt.Printf("$ kubectl %s\n", strings.Join(args, " "))
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Printf("kubectl failed: %v\n", err)
		}
	}
}

func mkdata(p *tb.Program, n *zfsnodes.Node, fs, file string, size int) [32]byte {
	if err := n.ZFS().CreateFilesystem(context.Background(), fs, zfsexec.CreateOptions{Parents: true}); err != nil {
		p.Fatal(err)
	}
	return writeFile(p, n, fs, file, size)
}

func writeFile(p *tb.Program, n *zfsnodes.Node, fs, file string, size int) [32]byte {
	mp, err := n.ZFS().Get(context.Background(), fs, "mountpoint")
	if err != nil {
		p.Fatal(err)
	}
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if err := os.WriteFile(n.Path(filepath.Join(mp["mountpoint"].Value, file)), data, 0o644); err != nil {
		p.Fatal(err)
	}
	return sha256.Sum256(data)
}

func requestSync(p *tb.Program, c *cluster.Cluster, name string) {
	ctx := context.Background()
	dr, err := c.Replication(ctx, name)
	if err != nil {
		p.Fatal(err)
	}
	patch := client.MergeFrom(dr.DeepCopy())
	if dr.Annotations == nil {
		dr.Annotations = map[string]string{}
	}
	dr.Annotations[z8rv1.AnnotationSyncRequested] = fmt.Sprint(time.Now().UnixNano())
	if err := c.Kube.Client.Patch(ctx, dr, patch); err != nil {
		p.Fatal(err)
	}
}

// waitSynced waits until every target is Synced on a snapshot other than
// notSnap.
func waitSynced(p *tb.Program, c *cluster.Cluster, name, notSnap string) {
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		dr, err := c.Replication(ctx, name)
		if err != nil {
			return false, client.IgnoreNotFound(err)
		}
		if dr.Status.State != z8rv1.TargetSynced || len(dr.Status.Targets) == 0 {
			return false, nil
		}
		for _, t := range dr.Status.Targets {
			if t.LastSnapshot == "" || t.LastSnapshot == notSnap {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		ev, _ := c.Events(context.Background(), name)
		p.Fatalf("%s did not sync: %v\n%s", name, err, strings.Join(ev, "\n"))
	}
}

func printTargets(p *tb.Program, c *cluster.Cluster, name string) string {
	dr, err := c.Replication(context.Background(), name)
	if err != nil {
		p.Fatal(err)
	}
	fmt.Printf("%s (%s:%s):\n", name, dr.Spec.Source.Node, dr.Spec.Source.Dataset)
	var last string
	for _, t := range dr.Status.Targets {
		d := ""
		if t.LastSyncDuration != nil {
			d = t.LastSyncDuration.Duration.Round(time.Millisecond).String()
		}
		fmt.Printf("  -> %-7s %-16s %-7s @%s  last sync: %s, %d bytes in %s, base held on source: @%s\n",
			t.Node, t.Dataset, t.State, t.LastSnapshot, t.LastSyncKind, t.LastSyncBytes, d, t.ProtectedBase)
		last = t.LastSnapshot
	}
	return last
}

func compare(p *tb.Program, src, dst *zfsnodes.Node, srcFS, dstFS, file string, want [32]byte) {
	ctx := context.Background()
	s, err := src.ZFS().Snapshots(ctx, srcFS)
	if err != nil {
		p.Fatal(err)
	}
	d, err := dst.ZFS().Snapshots(ctx, dstFS)
	if err != nil {
		p.Fatal(err)
	}
	if len(s) == 0 || len(d) == 0 || s[len(s)-1].GUID != d[len(d)-1].GUID {
		p.Fatalf("%s:%s and %s:%s do not share their newest snapshot", src.Name, srcFS, dst.Name, dstFS)
	}
	if _, err := dst.Exec(ctx, "zfs", "mount", dstFS); err != nil {
		p.Fatal(err)
	}
	mp, _ := dst.ZFS().Get(ctx, dstFS, "mountpoint")
	got, err := os.ReadFile(dst.Path(filepath.Join(mp["mountpoint"].Value, file)))
	_, _ = dst.Exec(ctx, "zfs", "umount", dstFS)
	if err != nil || sha256.Sum256(got) != want {
		p.Fatalf("%s:%s/%s differs from the source (%v)", dst.Name, dstFS, file, err)
	}
	fmt.Printf("  %s:%s@%s guid %d == %s:%s; %s sha256 %x… identical\n",
		dst.Name, dstFS, d[len(d)-1].ShortName(), d[len(d)-1].GUID, src.Name, srcFS, file, want[:6])
}
