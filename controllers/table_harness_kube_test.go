//go:build kube

package controllers

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/log"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/testbed/fakezfs"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/zfsexec"
)

// The reconciler tables (TestTable_*) run each reconciler's Reconcile
// directly (no manager) against a real kube-apiserver (kubeenv, one per
// table) and in-memory ZFS nodes (fakezfs) reached through fakeNodes, a
// NodeAccess. Cases are sequential; each removes its objects when done, so
// they may reuse node and object names.

// TestTable_Reconcilers runs every reconciler table on one control plane.
func TestTable_Reconcilers(t *testing.T) {
	te := startTableEnv(t)
	t.Run("DatasetReplication", func(t *testing.T) { tableDatasetReplication(t, te) })
	t.Run("Z8RNode", func(t *testing.T) { tableZ8RNode(t, te) })
	t.Run("NodePolicy", func(t *testing.T) { tableNodePolicy(t, te) })
	t.Run("PVCAnnotations", func(t *testing.T) { tablePVCAnnotations(t, te) })
	t.Run("PVCPromoted", func(t *testing.T) { tablePVCPromoted(t, te) })
	t.Run("PVCSchedule", func(t *testing.T) { tablePVCSchedule(t, te) })
	t.Run("SnapshotContent", func(t *testing.T) { tableSnapshotContent(t, te) })
	t.Run("VolumeSnapshotReplication", func(t *testing.T) { tableVolumeSnapshotReplication(t, te) })
	t.Run("AgentPool", func(t *testing.T) { tableAgentPool(t, te) })
	t.Run("Promotion", func(t *testing.T) { tablePromotion(t, te) })
	t.Run("ManualTrigger", func(t *testing.T) { tableManualTrigger(t, te) })
	t.Run("BackgroundSync", func(t *testing.T) { tableBackgroundSync(t, te) })
	logReasons(t)
}

// tableEnv is the control plane one table shares between its cases.
type tableEnv struct {
	env    *kubeenv.Env
	client client.WithWatch
}

func startTableEnv(t *testing.T) *tableEnv {
	t.Helper()
	log.SetLogger(logr.Discard())
	env := kubeenv.Start(t, kubeenv.Options{})
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, snapshotv1.AddToScheme, z8rv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.NewWithWatch(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return &tableEnv{env: env, client: c}
}

// fakeNodes is a NodeAccess over fakezfs nodes. A node listed in unknown
// has no Z8RNode (ErrNodeUnknown); one in unreachable cannot be reached
// (agent.ErrUnreachable), by the controller or by another node's
// transfer; one in keyUnknown has no pinned host key yet.
type fakeNodes struct {
	mu          sync.Mutex
	nodes       map[string]*fakezfs.Node
	unknown     map[string]bool
	unreachable map[string]bool
	keyUnknown  map[string]bool
	dropped     []string
	// beforeTransfer, if set, runs at the start of every transfer; an
	// error it returns is the transfer's.
	beforeTransfer func(ctx context.Context) error
}

func newFakeNodes(names ...string) *fakeNodes {
	f := &fakeNodes{nodes: map[string]*fakezfs.Node{}, unknown: map[string]bool{}, unreachable: map[string]bool{}, keyUnknown: map[string]bool{}}
	for _, n := range names {
		f.nodes[n] = fakezfs.New(n, fakezfs.Options{})
	}
	return f
}

var _ NodeAccess = (*fakeNodes)(nil)

func (f *fakeNodes) Get(_ context.Context, name string) (*Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.unknown[name]:
		return nil, fmt.Errorf("node %s: %w", name, ErrNodeUnknown)
	case f.unreachable[name]:
		return nil, fmt.Errorf("connect to node %s: %w", name, agent.ErrUnreachable)
	case f.keyUnknown[name]:
		return nil, fmt.Errorf("node %s: %w", name, ErrHostKeyUnknown)
	}
	n := f.nodes[name]
	if n == nil {
		return nil, fmt.Errorf("node %s: %w", name, ErrNodeUnknown)
	}
	return &Node{Endpoint: fakeEndpoint{f: f, node: n}, Name: name, Address: name + ":2222", HostKey: "ssh-ed25519 AAAAfake" + name}, nil
}

func (f *fakeNodes) DropFailed(err error, nodes ...*Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range nodes {
		if n != nil && errors.Is(err, agent.ErrUnreachable) {
			f.dropped = append(f.dropped, n.Name)
		}
	}
}

// fakeEndpoint is a fake node's agent: its ZFS, and transfers piped into
// the node the request's TargetAddr names, as the agents would.
type fakeEndpoint struct {
	f    *fakeNodes
	node *fakezfs.Node
}

func (e fakeEndpoint) ZFS() *zfsexec.ZFS { return e.node.ZFS() }

func (e fakeEndpoint) Transfer(ctx context.Context, req agent.TransferRequest, progress func(agent.Progress)) (agent.Result, error) {
	name, _, _ := strings.Cut(req.TargetAddr, ":")
	e.f.mu.Lock()
	dst, down := e.f.nodes[name], e.f.unreachable[name]
	before := e.f.beforeTransfer
	e.f.mu.Unlock()
	if before != nil {
		if err := before(ctx); err != nil {
			return agent.Result{}, err
		}
	}
	if dst == nil || down {
		return agent.Result{}, fmt.Errorf("transfer to %s: %w", req.TargetAddr, agent.ErrUnreachable)
	}
	start := time.Now()
	n, err := zfsexec.PipeCounted(ctx, e.node.ZFS(), req.Send, dst.ZFS(), req.Recv, &zfsexec.CountingWriter{})
	if err == nil && progress != nil && n > 0 {
		// Agents report progress every second; the fake reports once.
		progress(agent.Progress{Bytes: n, ElapsedMillis: time.Since(start).Milliseconds()})
	}
	return agent.Result{Bytes: n, ElapsedMillis: time.Since(start).Milliseconds()}, err
}

// recorder captures Events: "Type Reason related" per Event, in order.
type recorder struct {
	mu  sync.Mutex
	got []recorded
}

type recorded struct {
	Type, Reason, Related, Note string
}

var _ events.EventRecorder = (*recorder)(nil)

func (r *recorder) Eventf(_ runtime.Object, related runtime.Object, eventtype, reason, _ string, note string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rel := ""
	if o, ok := related.(client.Object); ok && o != nil {
		rel = o.GetName()
	}
	r.got = append(r.got, recorded{Type: eventtype, Reason: reason, Related: rel, Note: fmt.Sprintf(note, args...)})
}

// reasons returns the recorded Events as "Reason" or "Reason/related".
func (r *recorder) reasons() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.got))
	for _, e := range r.got {
		s := e.Reason
		if e.Related != "" {
			s += "/" + e.Related
		}
		out = append(out, s)
	}
	return out
}

// reasonsOnly returns the recorded Events' reasons.
func (r *recorder) reasonsOnly() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.got))
	for _, e := range r.got {
		out = append(out, e.Reason)
	}
	return out
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = nil
}

// mutating is the subsequence of a node's argv log that changes state,
// each argv joined with spaces.
func mutating(cmds [][]string) []string {
	verbs := []string{"snapshot", "hold", "release", "destroy", "receive", "recv", "rename", "rollback", "bookmark", "set", "inherit", "create", "clone", "promote"}
	var out []string
	for _, c := range cmds {
		if len(c) >= 2 && c[0] == "zfs" && slices.Contains(verbs, c[1]) {
			out = append(out, strings.Join(c, " "))
		}
	}
	return out
}

// conflicts is an interceptor that fails the first n calls of one kind of
// write with an API conflict, as a concurrent writer would cause.
type conflicts struct {
	mu           sync.Mutex
	status, spec int // remaining conflicts for status and object updates
	fired        int
}

func (c *conflicts) funcs() interceptor.Funcs {
	gr := schema.GroupResource{Group: z8rv1.GroupVersion.Group, Resource: "datasetreplications"}
	take := func(n *int) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if *n > 0 {
			*n--
			c.fired++
			return true
		}
		return false
	}
	return interceptor.Funcs{
		Update: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if take(&c.spec) {
				return apierrors.NewConflict(gr, obj.GetName(), errors.New("injected: the object has been modified"))
			}
			return cl.Update(ctx, obj, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, cl client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			if sub == "status" && take(&c.status) {
				return apierrors.NewConflict(gr, obj.GetName(), errors.New("injected: the object has been modified"))
			}
			return cl.Status().Update(ctx, obj, opts...)
		},
	}
}

// seen counts, across the tables of one run, the Event reasons recorded in
// the checked part of a case; logReasons names those no case emitted.
var seen = struct {
	sync.Mutex
	reasons map[string]int
}{reasons: map[string]int{}}

func seenReasons(r *recorder) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen.Lock()
	defer seen.Unlock()
	for _, e := range r.got {
		seen.reasons[e.Reason]++
	}
}

// allReasons are the Event reasons of api/v1alpha1.
var allReasons = []string{
	z8rv1.EventSnapshotCreated, z8rv1.EventSnapshotFailed, z8rv1.EventReplicated, z8rv1.EventReplicationFailed,
	z8rv1.EventTargetDiverged, z8rv1.EventTargetMovedAside, z8rv1.EventPruned, z8rv1.EventPruneFailed,
	z8rv1.EventSourceUnavailable, z8rv1.EventTargetRemoved, z8rv1.EventInvalidAnnotation, z8rv1.EventAnnotationWarning,
	z8rv1.EventHostKeyPinned, z8rv1.EventHostKeyChanged, z8rv1.EventReplicationGenerated, z8rv1.EventReplicationConflict,
	z8rv1.EventFutureSnapshot, z8rv1.EventHoldsLeaked, z8rv1.EventResumeAbandoned, z8rv1.EventTransferCancelled, z8rv1.EventReplicationHandedOver, z8rv1.EventEmptyAnnotation,
	z8rv1.EventTargetNotAllowed, z8rv1.EventReplicationNameTaken,
	z8rv1.EventPromoted, z8rv1.EventPromotionRefused, z8rv1.EventPromotionWaiting, z8rv1.EventPromotionCancelled,
	z8rv1.EventTailPreserved,
	// The VolumeSnapshot integration's (api/v1alpha1/volumesnapshot.go).
	z8rv1.EventSnapshotDeleted, z8rv1.EventSnapshotDeferred, z8rv1.EventSnapshotDeleteFailed, z8rv1.EventSnapshotImported,
	z8rv1.EventSnapshotRetained, z8rv1.EventReplicaCreated, z8rv1.EventInvalidPVCAnnotation,
	z8rv1.EventScheduledSnapshot, z8rv1.EventScheduledPruned, z8rv1.EventScheduledWaiting, z8rv1.EventReplicaNotOwned,
}

// logReasons logs the Event reasons no case of the tables run so far
// emitted in its checked reconcile.
func logReasons(t *testing.T) {
	seen.Lock()
	defer seen.Unlock()
	var missing []string
	for _, r := range allReasons {
		if seen.reasons[r] == 0 {
			missing = append(missing, r)
		}
	}
	t.Logf("Event reasons emitted: %d of %d; not emitted: %v", len(allReasons)-len(missing), len(allReasons), missing)
}

// anyOrderMark starts an expected argv entry that stands for several
// commands a node may see in any order (ones run side by side).
const anyOrderMark = "any order:\n"

// anyOrder is an expected argv entry for cmds in any order.
func anyOrder(cmds ...string) string { return anyOrderMark + strings.Join(cmds, "\n") }

// argvMatch reports whether got is want, where an anyOrder entry of want
// matches as many commands of got, in any order.
func argvMatch(got, want []string) bool {
	i := 0
	for _, w := range want {
		group, ok := strings.CutPrefix(w, anyOrderMark)
		if !ok {
			if i >= len(got) || got[i] != w {
				return false
			}
			i++
			continue
		}
		ws := strings.Split(group, "\n")
		if i+len(ws) > len(got) {
			return false
		}
		gs := slices.Clone(got[i : i+len(ws)])
		slices.Sort(gs)
		slices.Sort(ws)
		if !slices.Equal(gs, ws) {
			return false
		}
		i += len(ws)
	}
	return i == len(got)
}

// indexed is an interceptor that answers the reconcilers' List calls by the
// manager's field indexes (snapshotIndexes), which only a cache serves,
// straight from the API server: it lists everything and keeps what the
// index would return, computed by the index's own function.
func indexed() interceptor.Funcs {
	return interceptor.Funcs{
		List: func(ctx context.Context, cl client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			lo := &client.ListOptions{}
			lo.ApplyOptions(opts)
			if lo.FieldSelector == nil {
				return cl.List(ctx, list, opts...)
			}
			var ix *fieldIndex
			var want string
			for i := range snapshotIndexes {
				if v, ok := lo.FieldSelector.RequiresExactMatch(snapshotIndexes[i].Field); ok {
					ix, want = &snapshotIndexes[i], v
				}
			}
			if ix == nil {
				return cl.List(ctx, list, opts...)
			}
			rest := *lo
			rest.FieldSelector = nil
			if err := cl.List(ctx, list, &rest); err != nil {
				return err
			}
			items, err := meta.ExtractList(list)
			if err != nil {
				return err
			}
			kept := make([]runtime.Object, 0, len(items))
			for _, it := range items {
				o, ok := it.(client.Object)
				if !ok {
					return fmt.Errorf("indexed: %T is not a client.Object", it)
				}
				if reflect.TypeOf(o) != reflect.TypeOf(ix.Object) {
					return fmt.Errorf("indexed: no index %s for %T", ix.Field, list)
				}
				if slices.Contains(ix.Extract(o), want) {
					kept = append(kept, o)
				}
			}
			return meta.SetList(list, kept)
		},
	}
}
