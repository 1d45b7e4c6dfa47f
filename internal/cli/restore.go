package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// ErrRestoreFlags matches every error RestoreObject returns: the flags do
// not describe one restore, and nothing was created.
var ErrRestoreFlags = errors.New("invalid restore")

// RestoreFlags are `kubectl z8r restore`'s flags.
type RestoreFlags struct {
	Name, Namespace               string
	FromReplication, FromContent  string
	Node, Snapshot, Dataset       string
	PVC, Kind, StorageClass, Size string
	AccessModes                   []string
}

// RestoreObject is the ReplicaRestore the flags describe.
func RestoreObject(f RestoreFlags) (*z8rv1.ReplicaRestore, error) {
	bad := func(format string, args ...any) (*z8rv1.ReplicaRestore, error) {
		return nil, fmt.Errorf("%w: %s", ErrRestoreFlags, fmt.Sprintf(format, args...))
	}
	switch {
	case (f.FromReplication == "") == (f.FromContent == ""):
		return bad("give exactly one of --from-replication and --from-content")
	case f.Node == "":
		return bad("--node is required: the node whose copy is restored")
	case f.FromContent != "" && f.Snapshot != "":
		return bad("--snapshot goes with --from-replication: a VolumeSnapshotContent names its snapshot itself")
	case f.PVC == "":
		return bad("--pvc is required: the claim to create")
	}
	rr := &z8rv1.ReplicaRestore{
		TypeMeta:   metav1.TypeMeta{APIVersion: z8rv1.GroupVersion.String(), Kind: "ReplicaRestore"},
		ObjectMeta: metav1.ObjectMeta{Name: f.Name, Namespace: f.Namespace},
		Spec: z8rv1.ReplicaRestoreSpec{
			Source:  z8rv1.RestoreSource{Replication: f.FromReplication, VolumeSnapshotContent: f.FromContent, Node: f.Node, Snapshot: f.Snapshot},
			Dataset: f.Dataset,
			Volume:  z8rv1.RestoreVolume{PVCName: f.PVC, StorageClassName: f.StorageClass},
		},
	}
	if rr.Name == "" {
		rr.Name = f.PVC
	}
	switch strings.ToLower(f.Kind) {
	case "", "local":
		rr.Spec.Volume.Kind = z8rv1.RestoreKindLocal
	case "zfs-localpv", "zfslocalpv":
		rr.Spec.Volume.Kind = z8rv1.RestoreKindZFSLocalPV
	default:
		return bad("--kind %q: local or zfs-localpv", f.Kind)
	}
	for _, m := range f.AccessModes {
		rr.Spec.Volume.AccessModes = append(rr.Spec.Volume.AccessModes, corev1.PersistentVolumeAccessMode(m))
	}
	if f.Size != "" {
		q, err := resource.ParseQuantity(f.Size)
		if err != nil {
			return bad("--size %q: %v", f.Size, err)
		}
		rr.Spec.Volume.Capacity = &q
	}
	return rr, nil
}

func (r *runner) restoreCommand() *cobra.Command {
	var f RestoreFlags
	var wait bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "restore [NAME] --pvc PVC (--from-replication R | --from-content C) --node NODE",
		Short: "Restore a replica snapshot into a new dataset and a PVC on its node",
		Long: `restore creates a ReplicaRestore (NAME, default: the PVC's name) in the
namespace: the controller clones the snapshot on NODE into a new dataset
(zfs clone; nothing existing is changed) and makes a PersistentVolume on
that node and the PVC, pre-bound to it, which a pod on NODE can mount.

  --from-replication R --node N [--snapshot S]   a snapshot of
      DatasetReplication R's dataset on N (its source or a target);
      default the newest
  --from-content C --node N                      the snapshot of
      VolumeSnapshotContent C (a replica content, or one z8r took) on N

--kind local (default) makes a 'local' PV at the dataset's mountpoint;
--kind zfs-localpv makes OpenEBS zfs-localpv's ZFSVolume and CSI PV.
Deleting the ReplicaRestore leaves the dataset, the PV and the PVC.
Creating ReplicaRestores is for cluster administrators (docs/restore.md).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 1 {
				f.Name = args[0]
			}
			return r.restore(c.Context(), f, wait, timeout)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.FromReplication, "from-replication", "", "a DatasetReplication's name")
	fl.StringVar(&f.FromContent, "from-content", "", "a VolumeSnapshotContent's name")
	fl.StringVar(&f.Node, "node", "", "the node whose copy is restored (required)")
	fl.StringVar(&f.Snapshot, "snapshot", "", "with --from-replication: the snapshot's short name (default the newest)")
	fl.StringVar(&f.PVC, "pvc", "", "the PersistentVolumeClaim to create (required)")
	fl.StringVar(&f.Dataset, "dataset", "", "the new dataset (default <replica's parent>/<NAME>-restored)")
	fl.StringVar(&f.Kind, "kind", "local", "local or zfs-localpv")
	fl.StringVar(&f.StorageClass, "storage-class", "", "the PV's and PVC's storageClassName")
	fl.StringVar(&f.Size, "size", "", "the capacity (default the snapshot's referenced size)")
	fl.StringSliceVar(&f.AccessModes, "access-mode", nil, "access modes (default ReadWriteOnce)")
	fl.BoolVar(&wait, "wait", false, "wait for the restore to end and print its outcome")
	fl.DurationVar(&timeout, "timeout", 5*time.Minute, "with --wait: how long to wait")
	return c
}

func (r *runner) restore(ctx context.Context, f RestoreFlags, wait bool, timeout time.Duration) error {
	ns, err := r.namespace()
	if err != nil {
		return err
	}
	f.Namespace = ns
	rr, err := RestoreObject(f)
	if err != nil {
		return err
	}
	c, err := r.client()
	if err != nil {
		return err
	}
	if err := c.Create(ctx, rr); err != nil {
		return fmt.Errorf("create ReplicaRestore %s/%s: %w", ns, rr.Name, err)
	}
	fmt.Fprintf(r.opts.Out, "ReplicaRestore %s/%s created\n", Clean(ns), Clean(rr.Name))
	if !wait {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	key := client.ObjectKeyFromObject(rr)
	for {
		if err := c.Get(ctx, key, rr); err != nil {
			return fmt.Errorf("ReplicaRestore %s: %w", key, err)
		}
		st := rr.Status
		switch st.Phase {
		case z8rv1.RestoreCompleted:
			fmt.Fprintf(r.opts.Out, "Restored %s (GUID %s) on node %s into %s: PV %s, PVC %s\n", Clean(st.Snapshot), Clean(st.SnapshotGUID),
				Clean(st.Node), Clean(st.Dataset), Clean(st.PVName), Clean(st.PVCName))
			return nil
		case z8rv1.RestoreFailed:
			reason := ""
			if cond := apimeta.FindStatusCondition(st.Conditions, z8rv1.ConditionReady); cond != nil {
				reason = cond.Reason + ": "
			}
			return fmt.Errorf("restore %s failed: %s%s", key, Clean(reason), Clean(st.Message))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("restore %s did not end within %s (%s): %w", key, timeout, Clean(st.Message), ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
