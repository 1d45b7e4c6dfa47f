//go:build kube

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/manifests"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

func TestMain(m *testing.M) {
	logf.SetLogger(logr.Discard())
	code := m.Run()
	if pluginDir != "" {
		_ = os.RemoveAll(pluginDir)
	}
	os.Exit(code)
}

// plugin runs kubectl-z8r in process against env with stdin in and the
// fixtures' clock.
type plugin struct {
	t   *testing.T
	env *kubeenv.Env
}

func (p plugin) run(in string, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	cmd := NewCommand(Options{In: strings.NewReader(in), Out: &out, ErrOut: &errOut, Now: func() time.Time { return now }})
	cmd.SetArgs(append(args, "--kubeconfig", p.env.Kubeconfig))
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func (p plugin) ok(args ...string) string {
	p.t.Helper()
	out, errOut, err := p.run("", args...)
	if err != nil {
		p.t.Fatalf("kubectl z8r %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// createFixtures stores the fixture objects, status included.
func createFixtures(t *testing.T, c client.Client) {
	t.Helper()
	ctx := context.Background()
	for _, dr := range fixtureReplications() {
		status := dr.Status
		if err := c.Create(ctx, &dr); err != nil {
			t.Fatal(err)
		}
		dr.Status = status
		if err := c.Status().Update(ctx, &dr); err != nil {
			t.Fatal(err)
		}
	}
	for _, vsc := range fixtureContents() {
		status := vsc.Status
		if err := c.Create(ctx, &vsc); err != nil {
			t.Fatal(err)
		}
		vsc.Status = status
		if err := c.Status().Update(ctx, &vsc); err != nil {
			t.Fatal(err)
		}
	}
	for _, zn := range fixtureNodes() {
		status := zn.Status
		if err := c.Create(ctx, &zn); err != nil {
			t.Fatal(err)
		}
		zn.Status = status
		if err := c.Status().Update(ctx, &zn); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPlugin_AgainstAPIServer(t *testing.T) {
	env := kubeenv.Start(t, kubeenv.Options{})
	c := env.Client
	ctx := context.Background()
	createFixtures(t, c)
	p := plugin{t: t, env: env}

	t.Run("status", func(t *testing.T) {
		var want bytes.Buffer
		if err := WriteStatus(&want, fixtureReplications(), now, false); err != nil {
			t.Fatal(err)
		}
		if got := p.ok("status"); got != want.String() {
			t.Errorf("kubectl z8r status:\n%s\nwant (the fixtures rendered directly):\n%s", got, want.String())
		}
		if got := p.ok("status", "logs"); !strings.HasPrefix(got, "logs  node-a:tank/logs") || strings.Contains(got, "tank/data") {
			t.Errorf("kubectl z8r status logs:\n%s", got)
		}
		if got := p.ok("status", "-o", "wide"); !strings.Contains(got, "incremental 5.0 MiB in 1.5s") {
			t.Errorf("kubectl z8r status -o wide lacks the last transfer:\n%s", got)
		}
		if _, _, err := p.run("", "status", "nosuch"); !apierrors.IsNotFound(err) {
			t.Errorf("status of a missing replication: %v, want NotFound", err)
		}
		if _, _, err := p.run("", "status", "-o", "jsonpath={.x}"); !errors.Is(err, ErrOutputFormat) {
			t.Errorf("status -o jsonpath: %v, want ErrOutputFormat", err)
		}
	})

	// The kubeconfig's context has no namespace: "default", which has no
	// VolumeSnapshot replication (the table above is the DatasetReplications
	// alone); -n and -A pick them.
	t.Run("status VolumeSnapshot replications", func(t *testing.T) {
		app := p.ok("status", "-n", "app")
		for _, want := range []string{"VolumeSnapshot replications (namespace app)", "app/db-snap", "node-b:backup/db", "Replicated", "node-c:tank/db"} {
			if !strings.Contains(app, want) {
				t.Errorf("status -n app lacks %q:\n%s", want, app)
			}
		}
		if strings.Contains(app, "web-snap") || strings.Contains(app, "plain-snap") || strings.Contains(app, "node-b:backup/db@") ||
			strings.Count(app, "  app/db-snap ") != 2 {
			t.Errorf("status -n app shows another namespace's, an unreplicated or a replica content:\n%s", app)
		}
		var want bytes.Buffer
		if err := WriteVolumeSnapshotStatus(&want, VolumeSnapshotReplications(fixtureContents(), ""), "", now, false); err != nil {
			t.Fatal(err)
		}
		if all := p.ok("status", "-A"); !strings.HasSuffix(all, "\n"+want.String()) {
			t.Errorf("status -A:\n%s\nwant it to end with:\n%s", all, want.String())
		}
		if wide := p.ok("status", "--all-namespaces", "-o", "wide"); !strings.Contains(wide, "GUID") || !strings.Contains(wide, "1234567890") ||
			!strings.Contains(wide, "snapcontent-db-replica") {
			t.Errorf("status -A -o wide lacks the GUID and replica content:\n%s", wide)
		}
		if named := p.ok("status", "-A", "data"); strings.Contains(named, "VolumeSnapshot") {
			t.Errorf("status NAME shows VolumeSnapshot replications:\n%s", named)
		}
	})

	t.Run("status -o json and yaml", func(t *testing.T) {
		var report StatusReport
		out := p.ok("status", "-A", "-o", "json")
		if err := json.Unmarshal([]byte(out), &report); err != nil {
			t.Fatalf("status -o json: %v\n%s", err, out)
		}
		want := NewStatusReport(fixtureReplications(), VolumeSnapshotReplications(fixtureContents(), ""), "", now)
		assertSameJSON(t, "status -A -o json", &report, want)

		out = p.ok("status", "-n", "other", "-o", "yaml")
		if err := yaml.UnmarshalStrict([]byte(out), &report); err != nil {
			t.Fatalf("status -o yaml: %v\n%s", err, out)
		}
		if report.Namespace != "other" || len(report.VolumeSnapshotReplications) != 1 || report.VolumeSnapshotReplications[0].Content != "snapcontent-web" {
			t.Errorf("status -n other -o yaml: %+v", report)
		}
	})

	// A user with only the z8r-viewer role may not list the (cluster-wide)
	// VolumeSnapshotContents: status still shows the DatasetReplications
	// and says on stderr what it left out.
	t.Run("status as z8r-viewer", func(t *testing.T) {
		root, err := kubeenv.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(root, "config/rbac/viewer_role.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := manifests.Parse(b)
		if err != nil || len(objs) != 1 {
			t.Fatalf("viewer role: %d objects, %v", len(objs), err)
		}
		if err := c.Create(ctx, objs[0]); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "viewer"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: objs[0].GetName()},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "viewer"}},
		}); err != nil {
			t.Fatal(err)
		}
		user, err := env.Environment.AddUser(envtest.User{Name: "viewer"}, &rest.Config{})
		if err != nil {
			t.Fatal(err)
		}
		kc, err := user.KubeConfig()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "viewer.kubeconfig")
		if err := os.WriteFile(path, kc, 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		cmd := NewCommand(Options{Out: &out, ErrOut: &errOut, Now: func() time.Time { return now }})
		cmd.SetArgs([]string{"status", "-A", "--kubeconfig", path})
		if err := cmd.ExecuteContext(ctx); err != nil {
			t.Fatalf("status as z8r-viewer: %v\n%s", err, errOut.String())
		}
		var want bytes.Buffer
		if err := WriteStatus(&want, fixtureReplications(), now, false); err != nil {
			t.Fatal(err)
		}
		if out.String() != want.String() || !strings.Contains(errOut.String(), "VolumeSnapshot replications not shown") ||
			!strings.Contains(errOut.String(), "forbidden") {
			t.Errorf("status as z8r-viewer:\n%s\nstderr: %s", out.String(), errOut.String())
		}
	})

	t.Run("nodes and snapshots -o json|yaml", func(t *testing.T) {
		var list z8rv1.Z8RNodeList
		if err := json.Unmarshal([]byte(p.ok("nodes", "-o", "json")), &list); err != nil {
			t.Fatal(err)
		}
		if list.Kind != "Z8RNodeList" || len(list.Items) != len(fixtureNodes()) || list.Items[0].Status.HostKey == "" || len(list.Items[0].ManagedFields) != 0 {
			t.Errorf("nodes -o json: kind %q, %d items, first %+v", list.Kind, len(list.Items), list.Items[0])
		}
		var dr z8rv1.DatasetReplication
		if err := yaml.UnmarshalStrict([]byte(p.ok("snapshots", "data", "-o", "yaml")), &dr); err != nil {
			t.Fatal(err)
		}
		if dr.Kind != "DatasetReplication" || dr.Name != "data" || len(dr.Status.Targets) != 2 {
			t.Errorf("snapshots data -o yaml: %+v", dr)
		}
	})

	t.Run("snapshots", func(t *testing.T) {
		var want bytes.Buffer
		if err := WriteSnapshots(&want, fixtureReplications(), now); err != nil {
			t.Fatal(err)
		}
		if got := p.ok("snapshots"); got != want.String() {
			t.Errorf("kubectl z8r snapshots:\n%s\nwant:\n%s", got, want.String())
		}
	})

	t.Run("nodes", func(t *testing.T) {
		var want bytes.Buffer
		if err := WriteNodes(&want, fixtureNodes(), now, false); err != nil {
			t.Fatal(err)
		}
		if got := p.ok("nodes"); got != want.String() {
			t.Errorf("kubectl z8r nodes:\n%s\nwant:\n%s", got, want.String())
		}
	})

	t.Run("approve-hostkey", func(t *testing.T) {
		get := func(name string) *z8rv1.Z8RNode {
			var zn z8rv1.Z8RNode
			if err := c.Get(ctx, client.ObjectKey{Name: name}, &zn); err != nil {
				t.Fatal(err)
			}
			return &zn
		}
		oldPin := get("node-b").Spec.PinnedHostKey
		out, prompt, err := p.run("n\n", "approve-hostkey", "node-b")
		if !errors.Is(err, ErrNotApproved) {
			t.Fatalf("declined approval: %v, want ErrNotApproved", err)
		}
		for _, want := range []string{fingerprintOf(testKey("b", "")), fingerprintOf(testKey("b2", ""))} {
			if !strings.Contains(out, want) {
				t.Errorf("approve-hostkey output lacks fingerprint %s:\n%s", want, out)
			}
		}
		if !strings.Contains(prompt, "[y/N]") {
			t.Errorf("no prompt on stderr: %q", prompt)
		}
		if got := get("node-b").Spec.PinnedHostKey; got != oldPin {
			t.Fatalf("declined approval changed the pin to %q", got)
		}
		if _, _, err := p.run("y\n", "approve-hostkey", "node-b"); err != nil {
			t.Fatal(err)
		}
		zn := get("node-b")
		if zn.Spec.PinnedHostKey != zn.Status.HostKey || Trust(zn) != TrustPinned {
			t.Errorf("after approval: pinned %q, presented %q", zn.Spec.PinnedHostKey, zn.Status.HostKey)
		}
		if out := p.ok("approve-hostkey", "node-b"); !strings.Contains(out, "already pinned") {
			t.Errorf("second approval:\n%s\nwant already pinned", out)
		}
		// --yes, and a node whose agent published no key.
		if _, _, err := p.run("", "approve-hostkey", "node-c", "--yes"); err == nil || !strings.Contains(err.Error(), "no host key") {
			t.Errorf("approving a node without a published key: %v", err)
		}
		zc := get("node-c")
		zc.Status.HostKey = testKey("c", "z8r")
		if err := c.Status().Update(ctx, zc); err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.run("", "approve-hostkey", "node-c", "--yes"); err != nil {
			t.Fatal(err)
		}
		if got := get("node-c").Spec.PinnedHostKey; got != testKey("c", "z8r") {
			t.Errorf("--yes pinned %q", got)
		}
	})

	t.Run("sync", func(t *testing.T) {
		if out := p.ok("sync", "data", "logs"); out != "Sync requested: data\nSync requested: logs\n" {
			t.Errorf("sync output %q", out)
		}
		var dr z8rv1.DatasetReplication
		if err := c.Get(ctx, client.ObjectKey{Name: "data"}, &dr); err != nil {
			t.Fatal(err)
		}
		if got, want := dr.Annotations[z8rv1.AnnotationSyncRequested], strconv.FormatInt(now.UnixNano(), 10); got != want {
			t.Errorf("annotation %s = %q, want %q", z8rv1.AnnotationSyncRequested, got, want)
		}
		if _, _, err := p.run("", "sync", "nosuch"); !apierrors.IsNotFound(err) {
			t.Errorf("sync of a missing replication: %v, want NotFound", err)
		}
	})

	t.Run("init-keys", func(t *testing.T) {
		if _, _, err := p.run("", "init-keys"); err == nil || !strings.Contains(err.Error(), "kubectl apply -k deploy/") {
			t.Errorf("init-keys without the namespace: %v, want a hint to install first", err)
		}
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: DefaultNamespace}}); err != nil {
			t.Fatal(err)
		}
		out := p.ok("init-keys")
		for _, name := range []string{SecretControllerKey, SecretAgentAuthorizedKeys} {
			if !strings.Contains(out, "secret/"+name+" created") {
				t.Errorf("init-keys output lacks %s:\n%s", name, out)
			}
			if err := c.Get(ctx, client.ObjectKey{Namespace: DefaultNamespace, Name: name}, &corev1.Secret{}); err != nil {
				t.Errorf("secret %s: %v", name, err)
			}
		}
		var before corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: DefaultNamespace, Name: SecretControllerKey}, &before); err != nil {
			t.Fatal(err)
		}
		if _, _, err := p.run("", "init-keys"); err == nil || !strings.Contains(err.Error(), "already exist") {
			t.Errorf("second init-keys: %v, want a refusal", err)
		}
		var after corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: DefaultNamespace, Name: SecretControllerKey}, &after); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before.Data[KeyPrivate], after.Data[KeyPrivate]) {
			t.Error("second init-keys replaced the controller key")
		}
		// --print creates nothing and writes Secrets that kubectl could apply.
		printed := p.ok("init-keys", "--print", "-n", "elsewhere")
		objs, err := manifests.Parse([]byte(printed))
		if err != nil || len(objs) != 2 {
			t.Fatalf("init-keys --print: %d objects, %v:\n%s", len(objs), err, printed)
		}
		for _, o := range objs {
			if o.GetKind() != "Secret" || o.GetNamespace() != "elsewhere" {
				t.Errorf("printed %s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
			}
		}
	})
}

var (
	pluginOnce sync.Once
	pluginDir  string
	pluginErr  error
)

// TestPlugin_ThroughKubectl installs the built binary on PATH and runs it
// the way users do: kubectl z8r status.
func TestPlugin_ThroughKubectl(t *testing.T) {
	env := kubeenv.Start(t, kubeenv.Options{})
	createFixtures(t, env.Client)
	pluginOnce.Do(func() {
		root, err := kubeenv.ModuleRoot()
		if err != nil {
			pluginErr = err
			return
		}
		pluginDir, pluginErr = os.MkdirTemp("", "kubectl-z8r")
		if pluginErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", pluginDir+"/", "./cmd/kubectl-z8r")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			pluginErr = errors.New(string(out))
		}
	})
	if pluginErr != nil {
		t.Fatal(pluginErr)
	}
	kubectl := filepath.Join(env.BinDir, kubeenv.BinKubectl)
	run := func(args ...string) string {
		cmd := exec.Command(kubectl, args...)
		cmd.Env = append(os.Environ(), "PATH="+pluginDir+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+env.Kubeconfig)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("plugin", "list"); !strings.Contains(out, filepath.Join(pluginDir, "kubectl-z8r")) {
		t.Errorf("kubectl plugin list does not find kubectl-z8r:\n%s", out)
	}
	out := run("z8r", "status")
	for _, want := range []string{"data  node-a:tank/data  state Behind", "node-c:backup/data   Failed", "logs  node-a:tank/logs"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl z8r status lacks %q:\n%s", want, out)
		}
	}
	if out := run("z8r", "nodes"); !strings.Contains(out, "CHANGED") {
		t.Errorf("kubectl z8r nodes:\n%s", out)
	}

	// kubectl's own flags reach the plugin: an explicit --kubeconfig (no
	// $KUBECONFIG), -n and -A.
	plugin := func(args ...string) *exec.Cmd {
		cmd := exec.Command(kubectl, append([]string{"z8r"}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+pluginDir+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG=/nonexistent")
		return cmd
	}
	if out, err := plugin("status", "--kubeconfig", env.Kubeconfig, "-n", "app").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "app/db-snap") || strings.Contains(string(out), "web-snap") {
		t.Errorf("kubectl z8r status --kubeconfig -n app: %v\n%s", err, out)
	}
	if out, err := plugin("status", "--kubeconfig", env.Kubeconfig, "-A", "-o", "wide").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "LAST TRANSFER") || !strings.Contains(string(out), "REPLICA") || !strings.Contains(string(out), "web-snap") {
		t.Errorf("kubectl z8r status -A -o wide: %v\n%s", err, out)
	}
	if out, err := plugin("status", "--kubeconfig", env.Kubeconfig, "-o", "yaml").Output(); err != nil || yaml.Unmarshal(out, &StatusReport{}) != nil {
		t.Errorf("kubectl z8r status -o yaml: %v\n%s", err, out)
	}

	// kubectl z8r status -A -o json | jq: the document is JSON that jq
	// reads whole (jq . re-emits the same document) and its fields are
	// where jq users look for them. jq returns its output and what it read.
	jq := func(filter string) (out, in string) {
		t.Helper()
		src := plugin("status", "--kubeconfig", env.Kubeconfig, "-A", "-o", "json")
		cmd := exec.Command("jq", "-r", filter)
		pipe, err := src.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var read bytes.Buffer
		cmd.Stdin = io.TeeReader(pipe, &read)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := src.Start(); err != nil {
			t.Fatal(err)
		}
		b, err := cmd.Output()
		if werr := src.Wait(); werr != nil {
			t.Fatalf("kubectl z8r status -A -o json: %v", werr)
		}
		if err != nil {
			t.Fatalf("jq -r %q: %v\n%s", filter, err, stderr.String())
		}
		return strings.TrimSuffix(string(b), "\n"), read.String()
	}
	var direct, viaJQ any
	out, in := jq(".")
	if err := json.Unmarshal([]byte(in), &direct); err != nil {
		t.Fatalf("kubectl z8r status -o json does not parse: %v\n%s", err, in)
	}
	if err := json.Unmarshal([]byte(out), &viaJQ); err != nil {
		t.Fatalf("jq . output does not parse: %v", err)
	}
	if !reflect.DeepEqual(direct, viaJQ) {
		t.Errorf("jq . changed the document:\n%v\nwant\n%v", viaJQ, direct)
	}
	for filter, want := range map[string]string{
		".kind": KindStatusReport,
		`.datasetReplications[] | select(.name == "data") | .targets[] | select(.node == "node-c") | .snapshotsBehind`:                   "2",
		`.volumeSnapshotReplications[] | select(.volumeSnapshot == "app/db-snap") | .targets[] | select(.state == "Replicated") | .guid`: "1234567890",
		`[.volumeSnapshotReplications[].content] | join(",")`:                                                                            "snapcontent-db,snapcontent-web",
	} {
		if got, _ := jq(filter); got != want {
			t.Errorf("kubectl z8r status -A -o json | jq -r '%s' = %q, want %q", filter, got, want)
		}
	}
}
