package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/volsnap"
)

// ReportGroupVersion is the apiVersion of the documents the plugin prints
// with -o json|yaml when it shows more than one object's fields. They are
// built by the plugin, never stored in the cluster; fields are only ever
// added within one version.
var ReportGroupVersion = schema.GroupVersion{Group: "cli.z8r.dev", Version: "v1alpha1"}

// KindStatusReport is the kind of `kubectl z8r status -o json|yaml`.
const KindStatusReport = "StatusReport"

// StatusReport is what `kubectl z8r status` shows, as a document: every
// DatasetReplication with its targets, and every VolumeSnapshot
// replication in scope with its targets.
type StatusReport struct {
	metav1.TypeMeta `json:",inline"`
	// Time is when the report was made; lags are relative to it.
	Time metav1.Time `json:"time"`
	// Namespace is the namespace whose VolumeSnapshot replications are
	// listed ("" with -A: all of them; also "" when NAMEs were given, and
	// none are listed).
	Namespace                  string                      `json:"namespace"`
	DatasetReplications        []ReplicationReport         `json:"datasetReplications"`
	VolumeSnapshotReplications []VolumeSnapshotReplication `json:"volumeSnapshotReplications"`
}

// DeepCopyObject makes StatusReport a runtime.Object for cli-runtime's
// printers.
func (r *StatusReport) DeepCopyObject() runtime.Object {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // strings, numbers and times always marshal
	}
	var c StatusReport
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return &c
}

// Place is a dataset on a node.
type Place struct {
	Node    string `json:"node"`
	Dataset string `json:"dataset"`
}

// ReplicationReport is one DatasetReplication in a StatusReport.
type ReplicationReport struct {
	Name   string `json:"name"`
	Source Place  `json:"source"`
	// State is the overall state (status.state, "Suspended" when
	// spec.suspend is set).
	State            string       `json:"state"`
	Schedule         string       `json:"schedule"`
	TargetsSynced    string       `json:"targetsSynced,omitempty"`
	LastSnapshot     string       `json:"lastSnapshot,omitempty"`
	LastSnapshotTime *metav1.Time `json:"lastSnapshotTime,omitempty"`
	NextSnapshotTime *metav1.Time `json:"nextSnapshotTime,omitempty"`
	// NotReady is the Ready condition's message while it is False.
	NotReady string         `json:"notReady,omitempty"`
	Targets  []TargetReport `json:"targets"`
	// Promotion is the last (or running) promotion (status.promotion).
	Promotion *z8rv1.PromotionStatus `json:"promotion,omitempty"`
}

// TargetReport is one target of a DatasetReplication (a TargetRow).
type TargetReport struct {
	Place `json:",inline"`
	State string `json:"state"`
	// Removed: in status only, being released by the controller.
	Removed         bool         `json:"removed,omitempty"`
	LastSyncTime    *metav1.Time `json:"lastSyncTime,omitempty"`
	SnapshotsBehind int          `json:"snapshotsBehind"`
	NewestSnapshot  string       `json:"newestSnapshot,omitempty"`
	// LagSeconds is the age of the newest snapshot the target has (absent
	// when unknown).
	LagSeconds          *int64           `json:"lagSeconds,omitempty"`
	ProtectedBase       string           `json:"protectedBase,omitempty"`
	LastSyncKind        string           `json:"lastSyncKind,omitempty"`
	LastSyncBytes       int64            `json:"lastSyncBytes,omitempty"`
	LastSyncDuration    *metav1.Duration `json:"lastSyncDuration,omitempty"`
	ConsecutiveFailures int              `json:"consecutiveFailures,omitempty"`
	Error               string           `json:"error,omitempty"`
	// Transfer is the sync running now: bytes done and expected, rate and
	// estimated completion.
	Transfer *z8rv1.TransferProgress `json:"transfer,omitempty"`
}

// VolumeSnapshotReplication is a VolumeSnapshotContent z8r replicates (it
// carries z8r.dev/replicate-to or z8r.dev/replication-status, and is not
// itself a replica), as the status shows it.
type VolumeSnapshotReplication struct {
	// Content is the VolumeSnapshotContent's name: replication is keyed on
	// it, so it outlives its VolumeSnapshot (Velero deletes those).
	Content string `json:"content"`
	// VolumeSnapshot is "namespace/name" of the bound VolumeSnapshot
	// (spec.volumeSnapshotRef).
	VolumeSnapshot string `json:"volumeSnapshot"`
	Namespace      string `json:"namespace"`
	Driver         string `json:"driver"`
	// Source is where the snapshot lives (z8r.dev/node, z8r.dev/dataset
	// on the content; empty until z8r located it).
	Source   Place  `json:"source"`
	Snapshot string `json:"snapshot,omitempty"`
	// RequestedTargets is the content's z8r.dev/replicate-to.
	RequestedTargets string `json:"requestedTargets,omitempty"`
	// StatusError says why z8r.dev/replication-status could not be read.
	StatusError string                 `json:"statusError,omitempty"`
	Targets     []VolumeSnapshotTarget `json:"targets"`
}

// VolumeSnapshotTarget is one target of a VolumeSnapshot replication: an
// entry of the content's z8r.dev/replication-status, or Pending for a
// requested target with no entry yet.
type VolumeSnapshotTarget struct {
	Place `json:",inline"`
	State string `json:"state"`
	// GUID of the snapshot on the target once replicated.
	GUID string `json:"guid,omitempty"`
	// ReplicaContent is the replica's pre-provisioned content.
	ReplicaContent string `json:"replicaContent,omitempty"`
	Error          string `json:"error,omitempty"`
	Attempts       int    `json:"attempts,omitempty"`
	// Time of the last change (RFC 3339, as recorded).
	Time string `json:"time,omitempty"`
}

// VolumeSnapshotReplications picks the contents z8r replicates whose
// VolumeSnapshot is in namespace ("" for all), sorted by VolumeSnapshot
// then content name. Replica contents are left out: they are shown as
// their source's targets.
func VolumeSnapshotReplications(contents []snapshotv1.VolumeSnapshotContent, namespace string) []VolumeSnapshotReplication {
	var out []VolumeSnapshotReplication
	for i := range contents {
		c := &contents[i]
		if _, replica := c.Labels[z8rv1.LabelReplicaOfUID]; replica {
			continue
		}
		_, requested := c.Annotations[z8rv1.AnnotationReplicateTo]
		_, recorded := c.Annotations[z8rv1.AnnotationReplicationStatus]
		if !requested && !recorded {
			continue
		}
		ref := c.Spec.VolumeSnapshotRef
		if namespace != "" && ref.Namespace != namespace {
			continue
		}
		out = append(out, volumeSnapshotReplication(c))
	}
	slices.SortFunc(out, func(a, b VolumeSnapshotReplication) int {
		if a.VolumeSnapshot != b.VolumeSnapshot {
			return strings.Compare(a.VolumeSnapshot, b.VolumeSnapshot)
		}
		return strings.Compare(a.Content, b.Content)
	})
	return out
}

func volumeSnapshotReplication(c *snapshotv1.VolumeSnapshotContent) VolumeSnapshotReplication {
	ref := c.Spec.VolumeSnapshotRef
	r := VolumeSnapshotReplication{
		Content:          c.Name,
		Namespace:        ref.Namespace,
		Driver:           c.Spec.Driver,
		Source:           Place{Node: c.Annotations[z8rv1.AnnotationNode], Dataset: c.Annotations[z8rv1.AnnotationDataset]},
		RequestedTargets: c.Annotations[z8rv1.AnnotationReplicateTo],
		Targets:          []VolumeSnapshotTarget{},
	}
	if ref.Name != "" {
		r.VolumeSnapshot = ref.Namespace + "/" + ref.Name
	}
	if c.Status != nil && c.Status.SnapshotHandle != nil {
		if short, err := volsnap.ForeignShortName(*c.Status.SnapshotHandle); err == nil {
			r.Snapshot = short
		}
	}
	status, err := volsnap.ParseStatus(c.Annotations[z8rv1.AnnotationReplicationStatus])
	if err != nil {
		r.StatusError = err.Error()
	}
	for _, ts := range status {
		r.Targets = append(r.Targets, VolumeSnapshotTarget{Place: Place{Node: ts.Node, Dataset: ts.Dataset}, State: ts.State,
			GUID: ts.GUID, ReplicaContent: ts.Content, Error: ts.Error, Attempts: ts.Attempts, Time: ts.Time})
	}
	// Requested targets the controller has not reported yet are Pending.
	// The controller stamps the resolved list; one that does not resolve
	// (not stamped yet, or invalid) shows only what status has.
	if r.Source.Node != "" && r.Source.Dataset != "" {
		if ts, err := volsnap.ResolveTargets(r.RequestedTargets, r.Source.Node, r.Source.Dataset); err == nil {
			for _, t := range ts {
				if _, ok := status.Get(t); !ok {
					r.Targets = append(r.Targets, VolumeSnapshotTarget{Place: Place{Node: t.Node, Dataset: t.Dataset}, State: volsnap.StatePending})
				}
			}
		}
	}
	slices.SortFunc(r.Targets, func(a, b VolumeSnapshotTarget) int {
		return strings.Compare(Location(a.Node, a.Dataset), Location(b.Node, b.Dataset))
	})
	return r
}

// NewStatusReport builds the document of reps and vs as of now. namespace
// is the scope vs was picked in ("" for all namespaces).
func NewStatusReport(reps []z8rv1.DatasetReplication, vs []VolumeSnapshotReplication, namespace string, now time.Time) *StatusReport {
	r := &StatusReport{
		TypeMeta:                   metav1.TypeMeta{APIVersion: ReportGroupVersion.String(), Kind: KindStatusReport},
		Time:                       metav1.NewTime(now.UTC().Truncate(time.Second)),
		Namespace:                  namespace,
		DatasetReplications:        []ReplicationReport{},
		VolumeSnapshotReplications: vs,
	}
	if r.VolumeSnapshotReplications == nil {
		r.VolumeSnapshotReplications = []VolumeSnapshotReplication{}
	}
	sortReplications(reps)
	for i := range reps {
		dr := &reps[i]
		st := dr.Status
		rr := ReplicationReport{
			Name:             dr.Name,
			Source:           Place{Node: dr.Spec.Source.Node, Dataset: dr.Spec.Source.Dataset},
			State:            st.State,
			Schedule:         orDefault(dr.Spec.Schedule, "6h"),
			TargetsSynced:    st.TargetsSummary,
			LastSnapshot:     st.LastSnapshot,
			LastSnapshotTime: st.LastSnapshotTime,
			NextSnapshotTime: st.NextSnapshotTime,
			Targets:          []TargetReport{},
		}
		if dr.Spec.Suspend {
			rr.State = "Suspended"
		}
		rr.Promotion = st.Promotion
		if c := meta(st.Conditions, "Ready"); c != nil && c.Status == metav1.ConditionFalse {
			rr.NotReady = c.Message
		}
		for _, row := range TargetRows(dr) {
			tr := TargetReport{
				Place:               Place{Node: row.Node, Dataset: row.Dataset},
				State:               row.State,
				Removed:             row.Removed,
				SnapshotsBehind:     row.Behind,
				NewestSnapshot:      row.Newest,
				ProtectedBase:       row.Base,
				LastSyncKind:        row.Kind,
				LastSyncBytes:       row.Bytes,
				ConsecutiveFailures: row.Failures,
				Error:               row.Error,
				Transfer:            row.Transfer,
			}
			if !row.LastSync.IsZero() {
				tr.LastSyncTime = &metav1.Time{Time: row.LastSync}
			}
			if !row.NewestTime.IsZero() {
				lag := int64(max(now.Sub(row.NewestTime), 0) / time.Second)
				tr.LagSeconds = &lag
			}
			if row.Duration > 0 {
				tr.LastSyncDuration = &metav1.Duration{Duration: row.Duration}
			}
			rr.Targets = append(rr.Targets, tr)
		}
		r.DatasetReplications = append(r.DatasetReplications, rr)
	}
	return r
}

// WriteVolumeSnapshotStatus writes the VolumeSnapshot replications as a
// table, one row per target: the VolumeSnapshot (or its content when the
// VolumeSnapshot is gone), the source snapshot, the target, its state,
// when it last changed and its error. wide adds the content, the GUID
// received, the replica's content and the attempts. scope names the
// namespace the list was taken in ("" for all). Nothing is written when vs
// is empty.
func WriteVolumeSnapshotStatus(w io.Writer, vs []VolumeSnapshotReplication, scope string, now time.Time, wide bool) error {
	if len(vs) == 0 {
		return nil
	}
	where := "all namespaces"
	if scope != "" {
		where = "namespace " + scope
	}
	fmt.Fprintf(w, "VolumeSnapshot replications (%s)\n", Clean(where))
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	header := "  VOLUMESNAPSHOT\tSOURCE\tTARGET\tSTATE\tUPDATED\tERROR"
	if wide {
		header = "  VOLUMESNAPSHOT\tSOURCE\tTARGET\tSTATE\tUPDATED\tCONTENT\tGUID\tREPLICA\tATTEMPTS\tERROR"
	}
	fmt.Fprintln(tw, header)
	for _, r := range vs {
		name := r.VolumeSnapshot
		if name == "" {
			name = "(content " + r.Content + ")"
		}
		source := none
		if r.Source.Node != "" {
			source = Location(r.Source.Node, r.Source.Dataset)
			if r.Snapshot != "" {
				source += "@" + r.Snapshot
			}
		}
		targets := r.Targets
		if len(targets) == 0 {
			msg := "(no target reported yet)"
			if r.StatusError != "" {
				msg = "(status unreadable: " + oneLine(r.StatusError) + ")"
			}
			targets = []VolumeSnapshotTarget{{State: msg}}
		}
		for _, t := range targets {
			target := none
			if t.Node != "" {
				target = Location(t.Node, t.Dataset)
			}
			updated := none
			if ts, err := time.Parse(time.RFC3339, t.Time); err == nil {
				updated = ago(ts, now)
			}
			cells := []string{"  " + name, source, target, t.State, updated}
			if wide {
				cells = append(cells, r.Content, orNone(t.GUID), orNone(t.ReplicaContent), strconv.Itoa(t.Attempts), orNone(oneLine(t.Error)))
			} else {
				cells = append(cells, orNone(truncate(oneLine(t.Error), errorWidth)))
			}
			writeRow(tw, cells...)
		}
	}
	return tw.Flush()
}
