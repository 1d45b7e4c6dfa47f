package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// Options are what NewCommand needs besides its flags. Zero fields take
// the defaults of a real run.
type Options struct {
	In          io.Reader
	Out, ErrOut io.Writer
	// Now is the clock ages are computed against (default time.Now).
	Now func() time.Time
	// Random feeds init-keys (default crypto/rand).
	Random io.Reader
}

// NewCommand returns the kubectl-z8r command tree. Its client is built on
// first use by k8s.io/cli-runtime's ConfigFlags: kubectl's own flags
// (--kubeconfig, --context, --cluster, --user, -n, --as, ...) over the
// standard loading rules ($KUBECONFIG, ~/.kube/config, in-cluster).
func NewCommand(o Options) *cobra.Command {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Random == nil {
		o.Random = rand.Reader
	}
	r := &runner{opts: o, config: genericclioptions.NewConfigFlags(true)}

	root := &cobra.Command{
		Use:   "kubectl-z8r",
		Short: "Inspect and operate z8r, Kubernetes-native ZFS snapshots and replication",
		Long: `kubectl z8r shows what z8r replicates where and how far behind it is, and
approves changed node host keys. It reads the status of z8r's
DatasetReplication and Z8RNode objects and of the VolumeSnapshotContents
z8r replicates; it never connects to a node.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl z8r"},
	}
	root.SetIn(o.In)
	root.SetOut(o.Out)
	root.SetErr(o.ErrOut)
	r.config.AddFlags(root.PersistentFlags())

	output := func(c *cobra.Command, help string) {
		c.Flags().StringP("output", "o", "", "output format: "+help)
	}
	format := func(c *cobra.Command, supported ...string) (string, error) {
		v, _ := c.Flags().GetString("output")
		return parseOutput(v, supported...)
	}

	var allNamespaces, watch bool
	var watchEvery time.Duration
	status := &cobra.Command{
		Use:   "status [NAME...]",
		Short: "DatasetReplications and VolumeSnapshot replications: targets with state, last sync, snapshots behind, lag and error",
		Long: `status shows, for each DatasetReplication (or those named), its source
(node:dataset, state, schedule, newest snapshot) and a table of its targets:

  STATE      Pending, Syncing, Synced, Behind, Diverged or Failed
  LAST SYNC  when the last transfer to the target succeeded
  BEHIND     source snapshots the target does not have yet
  LAG        age of the newest snapshot the target has: the most recent
             data a failover to that target would lose
  ERROR      the last error, while the target is not Synced

Without NAME it then lists the VolumeSnapshot replications of the
namespace (-n, or the context's; -A for all): one row per target of each
VolumeSnapshotContent z8r replicates, with its state (Pending, Replicated,
Failed, Diverged, Skipped or Refused) and when it last changed.

A running transfer shows after its target's state: how much of the
expected stream is sent, the rate and the time left (-o wide: the step).
--watch prints the status again whenever it changes.

-o json and -o yaml print the same as a StatusReport document
(apiVersion ` + ReportGroupVersion.String() + `); -o wide adds columns.`,
		RunE: func(c *cobra.Command, args []string) error {
			f, err := format(c, OutputTable, OutputWide, OutputJSON, OutputYAML)
			if err != nil {
				return err
			}
			read := func() (render, error) { return r.status(c.Context(), args, f, allNamespaces) }
			if !watch {
				show, err := read()
				if err != nil {
					return err
				}
				return show(o.Out, o.Now())
			}
			return watchOutput(c.Context(), o.Out, watchEvery, o.Now, read)
		},
	}
	output(status, "wide, json or yaml")
	status.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "list the VolumeSnapshot replications of every namespace")
	status.Flags().BoolVarP(&watch, "watch", "w", false, "print the status again whenever it changes (running transfers show bytes, rate and time left), until interrupted")
	status.Flags().DurationVar(&watchEvery, "watch-interval", 2*time.Second, "with --watch, how often to read the status")

	snapshots := &cobra.Command{
		Use:   "snapshots [NAME...]",
		Short: "Per DatasetReplication: which snapshots its status reports on the source and on each target",
		RunE: func(c *cobra.Command, args []string) error {
			f, err := format(c, OutputTable, OutputJSON, OutputYAML)
			if err != nil {
				return err
			}
			reps, err := r.replications(c.Context(), args)
			if err != nil {
				return err
			}
			if f != OutputTable {
				return r.printObjects(f, len(args) == 1, &z8rv1.DatasetReplicationList{Items: reps})
			}
			return WriteSnapshots(o.Out, reps, o.Now())
		},
	}
	output(snapshots, "json or yaml (the DatasetReplications)")

	nodes := &cobra.Command{
		Use:   "nodes [NAME...]",
		Short: "Z8RNodes: agent address, pools, ZFS version, capabilities, readiness, host key and whether it is pinned",
		RunE: func(c *cobra.Command, args []string) error {
			f, err := format(c, OutputTable, OutputWide, OutputJSON, OutputYAML)
			if err != nil {
				return err
			}
			list, err := r.nodes(c.Context(), args)
			if err != nil {
				return err
			}
			switch f {
			case OutputJSON, OutputYAML:
				return r.printObjects(f, len(args) == 1, &z8rv1.Z8RNodeList{Items: list})
			}
			return WriteNodes(o.Out, list, o.Now(), f == OutputWide)
		},
	}
	output(nodes, "wide, json or yaml (the Z8RNodes)")

	var yes bool
	approve := &cobra.Command{
		Use:   "approve-hostkey NODE",
		Short: "Trust the host key a node's agent now presents (after a reinstall or key change)",
		Long: `approve-hostkey prints the pinned and the presented host key fingerprints of
NODE and, once confirmed, pins the presented key (spec.pinnedHostKey of the
Z8RNode). z8r refuses to talk to an agent whose key changed until then.

Compare the presented fingerprint with the one on the node first, e.g.
  kubectl -n z8r-system exec <agent pod on NODE> -- /z8r-agent --print-host-key | ssh-keygen -lf -`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return r.approve(c.Context(), args[0], yes)
		},
	}
	approve.Flags().BoolVarP(&yes, "yes", "y", false, "approve without asking")

	syncCmd := &cobra.Command{
		Use:   "sync NAME...",
		Short: "Ask the controller to reconcile DatasetReplications now",
		Long: `sync sets the annotation ` + z8rv1.AnnotationSyncRequested + `=<unix nanoseconds> on each
named DatasetReplication. The controller reconciles it at once instead of
at its next requeue: it takes a snapshot if one is due and sends what the
targets lack. (It does not take an unscheduled snapshot.)`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return r.sync(c.Context(), args)
		},
	}

	var print bool
	initKeys := &cobra.Command{
		Use:   "init-keys",
		Short: "Create the SSH key Secrets the controller and the agents mount",
		Long: `init-keys generates the controller's ed25519 key pair and creates the
Secrets deploy/ mounts, in z8r-system (or -n):

  ` + SecretControllerKey + `         id_ed25519, id_ed25519.pub (controller)
  ` + SecretAgentAuthorizedKeys + `  controller.pub (what agents accept)

Agents share no key: each one's identity is its own host key.

It never replaces existing Secrets. With --print it writes them as YAML
instead (for GitOps or sealed-secrets) and creates nothing.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ns := DefaultNamespace
			if c.Flags().Changed("namespace") {
				ns = *r.config.Namespace
			}
			return r.initKeys(c.Context(), ns, print)
		},
	}
	initKeys.Flags().BoolVar(&print, "print", false, "write the Secrets as YAML to stdout instead of creating them")

	root.AddCommand(status, snapshots, nodes, approve, syncCmd, initKeys, r.promoteCommand(), r.restoreCommand())
	cleanErrors(root)
	return root
}

// cleanErrors makes every command's returned error print cleaned (its
// message may quote the cluster), whoever prints it.
func cleanErrors(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(c *cobra.Command, args []string) error { return cleanErr(run(c, args)) }
	}
	for _, sub := range c.Commands() {
		cleanErrors(sub)
	}
}

type runner struct {
	opts   Options
	config *genericclioptions.ConfigFlags
	scheme *runtime.Scheme
	c      client.Client
}

func (r *runner) client() (client.Client, error) {
	if r.c != nil {
		return r.c, nil
	}
	cfg, err := r.config.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, z8rv1.AddToScheme, snapshotv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	r.scheme, r.c = scheme, c
	return c, nil
}

// namespace is -n, or the kubeconfig context's namespace ("default"
// without one), as kubectl resolves it.
func (r *runner) namespace() (string, error) {
	ns, _, err := r.config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	return ns, nil
}

// volumeSnapshotReplications lists the VolumeSnapshotContents z8r
// replicates whose VolumeSnapshot is in namespace ("" for all). A cluster
// without the snapshot CRDs has none. A user who may not list contents
// (they are cluster-scoped and name every tenant's snapshots, so the
// z8r-viewer role does not grant them) gets a note on stderr and the
// DatasetReplications alone.
func (r *runner) volumeSnapshotReplications(ctx context.Context, namespace string) ([]VolumeSnapshotReplication, error) {
	c, err := r.client()
	if err != nil {
		return nil, err
	}
	var list snapshotv1.VolumeSnapshotContentList
	if err := c.List(ctx, &list); err != nil {
		switch {
		case apimeta.IsNoMatchError(err):
			return nil, nil
		case apierrors.IsForbidden(err):
			fmt.Fprintf(r.opts.ErrOut, "VolumeSnapshot replications not shown: %s\n", Clean(err.Error()))
			return nil, nil
		}
		return nil, fmt.Errorf("list VolumeSnapshotContents: %w", err)
	}
	return VolumeSnapshotReplications(list.Items, namespace), nil
}

// printObjects prints list as JSON or YAML: its only item when single (a
// NAME was given), else the whole list, each with its apiVersion and kind
// as kubectl shows them.
func (r *runner) printObjects(format string, single bool, list client.ObjectList) error {
	items, err := apimeta.ExtractList(list)
	if err != nil {
		return err
	}
	for _, item := range append(items, list) {
		gvk, err := apiutil.GVKForObject(item, r.scheme)
		if err != nil {
			return err
		}
		item.GetObjectKind().SetGroupVersionKind(gvk)
	}
	if err := apimeta.SetList(list, items); err != nil {
		return err
	}
	if single && len(items) == 1 {
		return PrintObject(r.opts.Out, format, items[0])
	}
	return PrintObject(r.opts.Out, format, list)
}

func (r *runner) replications(ctx context.Context, names []string) ([]z8rv1.DatasetReplication, error) {
	c, err := r.client()
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		var list z8rv1.DatasetReplicationList
		if err := c.List(ctx, &list); err != nil {
			return nil, fmt.Errorf("list DatasetReplications: %w", err)
		}
		return list.Items, nil
	}
	out := make([]z8rv1.DatasetReplication, 0, len(names))
	for _, n := range names {
		var dr z8rv1.DatasetReplication
		if err := c.Get(ctx, client.ObjectKey{Name: n}, &dr); err != nil {
			return nil, fmt.Errorf("DatasetReplication %s: %w", n, err)
		}
		out = append(out, dr)
	}
	return out, nil
}

func (r *runner) nodes(ctx context.Context, names []string) ([]z8rv1.Z8RNode, error) {
	c, err := r.client()
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		var list z8rv1.Z8RNodeList
		if err := c.List(ctx, &list); err != nil {
			return nil, fmt.Errorf("list Z8RNodes: %w", err)
		}
		return list.Items, nil
	}
	out := make([]z8rv1.Z8RNode, 0, len(names))
	for _, n := range names {
		var zn z8rv1.Z8RNode
		if err := c.Get(ctx, client.ObjectKey{Name: n}, &zn); err != nil {
			return nil, fmt.Errorf("Z8RNode %s: %w", n, err)
		}
		out = append(out, zn)
	}
	return out, nil
}

// ErrNotApproved is returned when the administrator declines the prompt.
var ErrNotApproved = errors.New("not approved; nothing changed")

func (r *runner) approve(ctx context.Context, node string, yes bool) error {
	c, err := r.client()
	if err != nil {
		return err
	}
	var zn z8rv1.Z8RNode
	if err := c.Get(ctx, client.ObjectKey{Name: node}, &zn); err != nil {
		return fmt.Errorf("Z8RNode %s: %w", node, err)
	}
	review, err := ReviewHostKey(&zn)
	if err != nil {
		return err
	}
	if err := WriteReview(r.opts.Out, review, r.opts.Now()); err != nil {
		return err
	}
	if review.AlreadyPinned {
		_, err := fmt.Fprintf(r.opts.Out, "The presented key is already pinned; nothing to do.\n")
		return err
	}
	if !yes {
		fmt.Fprintf(r.opts.ErrOut, "Pin the presented key %s for node %s? Only if it is the key on the node. [y/N]: ", Clean(review.Presented), Clean(node))
		if !confirmed(r.opts.In) {
			return ErrNotApproved
		}
	}
	// Pin exactly the key shown above, whatever the object looks like now:
	// that is the key the administrator approved. If the agent has
	// published another one since, the node shows CHANGED again.
	patch := client.MergeFrom(zn.DeepCopy())
	zn.Spec.PinnedHostKey = review.PresentedKey
	if err := c.Patch(ctx, &zn, patch); err != nil {
		return fmt.Errorf("pin host key of %s: %w", node, err)
	}
	_, err = fmt.Fprintf(r.opts.Out, "Approved: node %s now pins %s.\n", Clean(node), Clean(review.Presented))
	return err
}

func confirmed(in io.Reader) bool {
	if in == nil {
		return false
	}
	line, _ := bufio.NewReader(in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

func (r *runner) sync(ctx context.Context, names []string) error {
	c, err := r.client()
	if err != nil {
		return err
	}
	for _, n := range names {
		var dr z8rv1.DatasetReplication
		if err := c.Get(ctx, client.ObjectKey{Name: n}, &dr); err != nil {
			return fmt.Errorf("DatasetReplication %s: %w", n, err)
		}
		patch := client.MergeFrom(dr.DeepCopy())
		if dr.Annotations == nil {
			dr.Annotations = map[string]string{}
		}
		dr.Annotations[z8rv1.AnnotationSyncRequested] = strconv.FormatInt(r.opts.Now().UnixNano(), 10)
		if err := c.Patch(ctx, &dr, patch); err != nil {
			return fmt.Errorf("request sync of %s: %w", n, err)
		}
		fmt.Fprintf(r.opts.Out, "Sync requested: %s\n", Clean(n))
	}
	return nil
}

func (r *runner) initKeys(ctx context.Context, namespace string, print bool) error {
	secrets, err := KeySecrets(namespace, r.opts.Random)
	if err != nil {
		return err
	}
	if print {
		for i, s := range secrets {
			b, err := yaml.Marshal(s)
			if err != nil {
				return err
			}
			if i > 0 {
				fmt.Fprintln(r.opts.Out, "---")
			}
			if _, err := r.opts.Out.Write(b); err != nil {
				return err
			}
		}
		return nil
	}
	c, err := r.client()
	if err != nil {
		return err
	}
	var ns corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: namespace}, &ns); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace %s does not exist: install z8r first (kubectl apply -k deploy/)", namespace)
		}
		return fmt.Errorf("namespace %s: %w", namespace, err)
	}
	var exist []string
	for _, s := range secrets {
		err := c.Get(ctx, client.ObjectKeyFromObject(s), &corev1.Secret{})
		switch {
		case err == nil:
			exist = append(exist, s.Name)
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("secret %s/%s: %w", namespace, s.Name, err)
		}
	}
	if len(exist) > 0 {
		return fmt.Errorf("secrets already exist in %s: %s; init-keys never replaces keys (to rotate them, see docs/install.md)",
			namespace, strings.Join(exist, ", "))
	}
	for _, s := range secrets {
		if err := c.Create(ctx, s); err != nil {
			return fmt.Errorf("create secret %s/%s: %w", namespace, s.Name, err)
		}
		fmt.Fprintf(r.opts.Out, "secret/%s created in %s\n", s.Name, namespace)
	}
	return nil
}
