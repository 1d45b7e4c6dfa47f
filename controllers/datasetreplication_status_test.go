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
