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

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/controllers"
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
// first use from the standard kubeconfig loading rules and kubectl's
// override flags (--kubeconfig, --context, --as, -n, ...).
func NewCommand(o Options) *cobra.Command {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Random == nil {
		o.Random = rand.Reader
	}
	loading := clientcmd.NewDefaultClientConfigLoadingRules()
	overrides := &clientcmd.ConfigOverrides{}
	r := &runner{opts: o, config: clientcmd.NewNonInteractiveDeferredLoadingClientConfig(loading, overrides)}

	root := &cobra.Command{
		Use:   "kubectl-z8r",
		Short: "Inspect and operate z8r, Kubernetes-native ZFS snapshots and replication",
		Long: `kubectl z8r shows what z8r replicates where and how far behind it is, and
approves changed node host keys. It reads the status of z8r's
DatasetReplication and ZFSNode objects; it never connects to a node.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl z8r"},
	}
	root.SetIn(o.In)
	root.SetOut(o.Out)
	root.SetErr(o.ErrOut)
	flags := root.PersistentFlags()
	flags.StringVar(&loading.ExplicitPath, "kubeconfig", "", "path to the kubeconfig file")
	clientcmd.BindOverrideFlags(overrides, flags, clientcmd.RecommendedConfigOverrideFlags(""))

	var wide bool
	output := func(c *cobra.Command) {
		c.Flags().StringP("output", "o", "", "output format: wide for more columns")
	}
	parseOutput := func(c *cobra.Command) error {
		v, _ := c.Flags().GetString("output")
		switch v {
		case "":
			wide = false
		case "wide":
			wide = true
		default:
			return fmt.Errorf("unknown output format %q (supported: wide)", v)
		}
		return nil
	}

	status := &cobra.Command{
		Use:   "status [NAME...]",
		Short: "Per DatasetReplication: source, targets with state, last sync, snapshots behind, lag and error",
		Long: `status shows, for each DatasetReplication (or those named), its source
(node:dataset, state, schedule, newest snapshot) and a table of its targets:

  STATE      Pending, Syncing, Synced, Behind, Diverged or Failed
  LAST SYNC  when the last transfer to the target succeeded
  BEHIND     source snapshots the target does not have yet
  LAG        age of the newest snapshot the target has: the most recent
             data a failover to that target would lose
  ERROR      the last error, while the target is not Synced`,
		RunE: func(c *cobra.Command, args []string) error {
			if err := parseOutput(c); err != nil {
				return err
			}
			reps, err := r.replications(c.Context(), args)
			if err != nil {
				return err
			}
			return WriteStatus(o.Out, reps, o.Now(), wide)
		},
	}
	output(status)

	snapshots := &cobra.Command{
		Use:   "snapshots [NAME...]",
		Short: "Per DatasetReplication: which snapshots its status reports on the source and on each target",
		RunE: func(c *cobra.Command, args []string) error {
			reps, err := r.replications(c.Context(), args)
			if err != nil {
				return err
			}
			return WriteSnapshots(o.Out, reps, o.Now())
		},
	}

	nodes := &cobra.Command{
		Use:   "nodes [NAME...]",
		Short: "ZFSNodes: agent address, pools, ZFS version, capabilities, readiness, host key and whether it is pinned",
		RunE: func(c *cobra.Command, args []string) error {
			if err := parseOutput(c); err != nil {
				return err
			}
			list, err := r.nodes(c.Context(), args)
			if err != nil {
				return err
			}
			return WriteNodes(o.Out, list, o.Now(), wide)
		},
	}
	output(nodes)

	var yes bool
	approve := &cobra.Command{
		Use:   "approve-hostkey NODE",
		Short: "Trust the host key a node's agent now presents (after a reinstall or key change)",
		Long: `approve-hostkey prints the pinned and the presented host key fingerprints of
NODE and, once confirmed, pins the presented key (spec.pinnedHostKey of the
ZFSNode). z8r refuses to talk to an agent whose key changed until then.

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
		Long: `sync sets the annotation ` + controllers.AnnotationSyncRequested + `=<unix nanoseconds> on each
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
				ns = overrides.Context.Namespace
			}
			return r.initKeys(c.Context(), ns, print)
		},
	}
	initKeys.Flags().BoolVar(&print, "print", false, "write the Secrets as YAML to stdout instead of creating them")

	root.AddCommand(status, snapshots, nodes, approve, syncCmd, initKeys)
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
	config clientcmd.ClientConfig
	c      client.Client
}

func (r *runner) client() (client.Client, error) {
	if r.c != nil {
		return r.c, nil
	}
	cfg, err := r.config.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := z8rv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	r.c = c
	return c, nil
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

func (r *runner) nodes(ctx context.Context, names []string) ([]z8rv1.ZFSNode, error) {
	c, err := r.client()
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		var list z8rv1.ZFSNodeList
		if err := c.List(ctx, &list); err != nil {
			return nil, fmt.Errorf("list ZFSNodes: %w", err)
		}
		return list.Items, nil
	}
	out := make([]z8rv1.ZFSNode, 0, len(names))
	for _, n := range names {
		var zn z8rv1.ZFSNode
		if err := c.Get(ctx, client.ObjectKey{Name: n}, &zn); err != nil {
			return nil, fmt.Errorf("ZFSNode %s: %w", n, err)
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
	var zn z8rv1.ZFSNode
	if err := c.Get(ctx, client.ObjectKey{Name: node}, &zn); err != nil {
		return fmt.Errorf("ZFSNode %s: %w", node, err)
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
		dr.Annotations[controllers.AnnotationSyncRequested] = strconv.FormatInt(r.opts.Now().UnixNano(), 10)
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
