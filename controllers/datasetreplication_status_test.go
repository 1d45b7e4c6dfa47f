package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// TestKeepNewerSyncs_StaleReconcileDoesNotEraseASync: a reconcile computed
// from a cached object older than the last status write found nothing to
// send; the full sync the previous reconcile recorded must survive.
func TestKeepNewerSyncs_StaleReconcileDoesNotEraseASync(t *testing.T) {
	t0 := metav1.NewTime(time.Unix(1000, 0))
	cur := z8rv1.DatasetReplicationStatus{Targets: []z8rv1.TargetStatus{{
		Node: "n2", Dataset: "tank/a", LastSyncTime: &t0, LastSyncKind: "full", LastSyncBytes: 4096,
		LastSyncDuration: &metav1.Duration{Duration: time.Second}}}}
	next := z8rv1.DatasetReplicationStatus{Targets: []z8rv1.TargetStatus{{Node: "n2", Dataset: "tank/a", State: z8rv1.TargetSynced}}}
	keepNewerSyncs(&next, &cur)
	if got := next.Targets[0]; got.LastSyncKind != "full" || got.LastSyncBytes != 4096 || got.LastSyncTime == nil || got.State != z8rv1.TargetSynced {
		t.Fatalf("merged %+v", got)
	}
	// A newer sync in next wins over the older one in cur.
	t1 := metav1.NewTime(time.Unix(2000, 0))
	next = z8rv1.DatasetReplicationStatus{Targets: []z8rv1.TargetStatus{{Node: "n2", Dataset: "tank/a", LastSyncTime: &t1, LastSyncKind: "incremental", LastSyncBytes: 10}}}
	keepNewerSyncs(&next, &cur)
	if got := next.Targets[0]; got.LastSyncKind != "incremental" || got.LastSyncBytes != 10 {
		t.Fatalf("newer sync lost: %+v", got)
	}
}

// TestKeepNewerSyncs_UnsyncedTargetKeepsItsNewestSnapshot: a reconcile
// that started from a stale read (the target listed without snapshots, as
// a promotion lists the old source) and did not sync it (the sync was
// cancelled) must not write the target back to "no snapshot": the newer
// sync's snapshot and base stay, or a promotion to it is refused for ever.
func TestKeepNewerSyncs_UnsyncedTargetKeepsItsNewestSnapshot(t *testing.T) {
	t0 := metav1.NewTime(time.Unix(1000, 0))
	cur := z8rv1.DatasetReplicationStatus{Targets: []z8rv1.TargetStatus{{
		Node: "n1", Dataset: "tank/a", State: z8rv1.TargetSynced, LastSyncTime: &t0, LastSyncKind: "incremental",
		LastSnapshot: "z8r-2", LastSnapshotGUID: "42", ProtectedBase: "z8r-2"}}}
	next := z8rv1.DatasetReplicationStatus{Targets: []z8rv1.TargetStatus{{Node: "n1", Dataset: "tank/a", State: z8rv1.TargetPending,
		LastError: "transfer cancelled: the target was removed from the replication"}}}
	keepNewerSyncs(&next, &cur)
	if got := next.Targets[0]; got.LastSnapshot != "z8r-2" || got.LastSnapshotGUID != "42" || got.ProtectedBase != "z8r-2" || got.State != z8rv1.TargetPending {
		t.Fatalf("merged %+v, want the newer sync's snapshot and base with this reconcile's state", got)
	}
	// A target this reconcile synced itself keeps what it found.
	t1 := metav1.NewTime(time.Unix(2000, 0))
	next = z8rv1.DatasetReplicationStatus{Targets: []z8rv1.TargetStatus{{Node: "n1", Dataset: "tank/a", LastSyncTime: &t1,
		LastSnapshot: "z8r-3", LastSnapshotGUID: "43"}}}
	keepNewerSyncs(&next, &cur)
	if got := next.Targets[0]; got.LastSnapshot != "z8r-3" || got.LastSnapshotGUID != "43" {
		t.Fatalf("a fresh sync's snapshot replaced: %+v", got)
	}
}
