package cli

import (
	"crypto/ed25519"
	"crypto/sha256"
	"strings"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// now is the fixtures' "current" time.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(-d)} }

// snap is z8r's name of a snapshot taken d before now.
func snap(d time.Duration) string { return "z8r-" + now.Add(-d).Format("20060102T150405Z") }

// testKey is a deterministic ed25519 public key in authorized_keys form.
func testKey(seed, comment string) string {
	sum := sha256.Sum256([]byte(seed))
	pub := ed25519.NewKeyFromSeed(sum[:]).Public()
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))) + " " + comment
}

func fingerprintOf(key string) string {
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		panic(err)
	}
	return ssh.FingerprintSHA256(pk)
}

type repOpt func(*z8rv1.DatasetReplication)

func replication(name, node, dataset string, opts ...repOpt) z8rv1.DatasetReplication {
	dr := z8rv1.DatasetReplication{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       z8rv1.DatasetReplicationSpec{Source: z8rv1.DatasetRef{Node: node, Dataset: dataset}},
	}
	for _, o := range opts {
		o(&dr)
	}
	return dr
}

func withTarget(node, dataset string) repOpt {
	return func(dr *z8rv1.DatasetReplication) {
		dr.Spec.Targets = append(dr.Spec.Targets, z8rv1.ReplicationTarget{Node: node, Dataset: dataset})
	}
}

func withTargetStatus(ts z8rv1.TargetStatus) repOpt {
	return func(dr *z8rv1.DatasetReplication) { dr.Status.Targets = append(dr.Status.Targets, ts) }
}

func withSource(state, summary string, last time.Duration, next time.Duration) repOpt {
	return func(dr *z8rv1.DatasetReplication) {
		dr.Status.State, dr.Status.TargetsSummary = state, summary
		dr.Status.LastSnapshot, dr.Status.LastSnapshotTime = snap(last), at(last)
		dr.Status.NextSnapshotTime = at(-next)
	}
}

// fixtureReplications: "data" is synced to node-b and 2 snapshots behind on
// node-c (failing); "logs" has never been snapshotted and one target was
// never reported.
func fixtureReplications() []z8rv1.DatasetReplication {
	return []z8rv1.DatasetReplication{
		replication("logs", "node-a", "tank/logs", withTarget("node-b", ""), func(dr *z8rv1.DatasetReplication) {
			dr.Spec.Schedule = "1h"
			dr.Status.State = z8rv1.TargetFailed
			dr.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: "SourceUnavailable", LastTransitionTime: *at(time.Minute),
				Message: "node-a: node agent is not ready: pool tank is not available"}}
		}),
		replication("data", "node-a", "tank/data",
			withTarget("node-b", ""), withTarget("node-c", "backup/data"),
			withSource(z8rv1.TargetBehind, "1/2", 2*time.Hour, 4*time.Hour),
			withTargetStatus(z8rv1.TargetStatus{Node: "node-b", Dataset: "tank/data", State: z8rv1.TargetSynced,
				LastSnapshot: snap(2 * time.Hour), SnapshotsBehind: 0, LastSyncTime: at(110 * time.Minute),
				LastSyncDuration: &metav1.Duration{Duration: 1500 * time.Millisecond}, LastSyncBytes: 5 << 20, LastSyncKind: "incremental",
				ProtectedBase: snap(2 * time.Hour)}),
			withTargetStatus(z8rv1.TargetStatus{Node: "node-c", Dataset: "backup/data", State: z8rv1.TargetFailed,
				LastSnapshot: snap(14 * time.Hour), SnapshotsBehind: 2, LastSyncTime: at(13 * time.Hour),
				LastSyncKind: "full", LastSyncBytes: 300 << 20, ProtectedBase: snap(14 * time.Hour), ConsecutiveFailures: 3,
				LastError: "transfer to node-c: recv: cannot receive incremental stream: destination backup/data has been modified since most recent snapshot"}),
		),
	}
}

// content is a VolumeSnapshotContent bound to VolumeSnapshot ns/vs, ready,
// with annotations.
func content(name, ns, vs, driver, handle string, annotations map[string]string) snapshotv1.VolumeSnapshotContent {
	return snapshotv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: snapshotv1.VolumeSnapshotContentSpec{
			VolumeSnapshotRef: corev1.ObjectReference{Namespace: ns, Name: vs, UID: types.UID("uid-" + vs)},
			DeletionPolicy:    snapshotv1.VolumeSnapshotContentDelete,
			Driver:            driver,
			Source:            snapshotv1.VolumeSnapshotContentSource{VolumeHandle: new("vol-" + vs)},
		},
		Status: &snapshotv1.VolumeSnapshotContentStatus{SnapshotHandle: new(handle), ReadyToUse: new(true)},
	}
}

// fixtureContents: "app/db-snap" is replicated to node-b and not yet to
// node-c; "other/web-snap" (another driver's) failed twice on node-b; a
// replica content and a content nobody asked to replicate are not
// replications.
func fixtureContents() []snapshotv1.VolumeSnapshotContent {
	replica := content("snapcontent-db-replica", "app", "db-snap", z8rv1.DriverName, "backup/db@snapshot-uid-db-snap",
		map[string]string{z8rv1.AnnotationNode: "node-b", z8rv1.AnnotationDataset: "backup/db", z8rv1.AnnotationReplicaOf: "snapcontent-db"})
	replica.Labels = map[string]string{z8rv1.LabelReplicaOfUID: "uid-content-db"}
	return []snapshotv1.VolumeSnapshotContent{
		content("snapcontent-web", "other", "web-snap", "zfs.csi.openebs.io", "pvc-web@snapshot-uid-web-snap", map[string]string{
			z8rv1.AnnotationNode: "node-a", z8rv1.AnnotationDataset: "zfspv-pool/pvc-web",
			z8rv1.AnnotationReplicateTo:       "node-b:backup/pvc-web",
			z8rv1.AnnotationReplicationStatus: `[{"node":"node-b","dataset":"backup/pvc-web","state":"Failed","error":"recv: dataset is busy","attempts":2,"time":"` + now.Add(-3*time.Minute).Format(time.RFC3339) + `"}]`,
		}),
		content("snapcontent-db", "app", "db-snap", z8rv1.DriverName, "tank/db@snapshot-uid-db-snap", map[string]string{
			z8rv1.AnnotationNode: "node-a", z8rv1.AnnotationDataset: "tank/db",
			z8rv1.AnnotationReplicateTo:       "node-b:backup/db,node-c:tank/db",
			z8rv1.AnnotationReplicationStatus: `[{"node":"node-b","dataset":"backup/db","state":"Replicated","guid":"1234567890","content":"snapcontent-db-replica","time":"` + now.Add(-10*time.Minute).Format(time.RFC3339) + `"}]`,
		}),
		replica,
		content("snapcontent-plain", "app", "plain-snap", z8rv1.DriverName, "tank/plain@snapshot-uid-plain-snap", nil),
	}
}
