//go:build kube

package controllers

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/schedule/clocktest"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// tablePVCSchedule drives PVCAnnotationsReconciler.Reconcile for a CSI
// PVC with z8r.dev/schedule: the scheduled VolumeSnapshots before (taken
// by earlier reconciles, ready or not) and the clock → the VolumeSnapshots
// after and the Events.
func tablePVCSchedule(t *testing.T, te *tableEnv) {
	tests := []struct {
		name      string
		retention string
		earlier   int  // reconciles before the checked one, 6h apart
		ready     bool // the earlier snapshots are ready
		advance   time.Duration
		wantVS    int
		events    []string
	}{
		{name: "the first scheduled snapshot is taken", wantVS: 1, events: []string{z8rv1.EventScheduledSnapshot}},
		{name: "not due: nothing taken", earlier: 1, ready: true, advance: time.Hour, wantVS: 1},
		{name: "due while the previous is not ready: waiting, none taken", earlier: 1, advance: 6 * time.Hour, wantVS: 1,
			events: []string{z8rv1.EventScheduledWaiting}},
		{name: "due with the previous ready: taken, and retention prunes the ready ones", retention: "last=1", earlier: 2, ready: true, advance: 6 * time.Hour,
			wantVS: 2, events: []string{z8rv1.EventScheduledSnapshot, z8rv1.EventScheduledPruned}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c := te.client
			ns := te.env.CreateNamespace(t, "schedtable")
			class := kubeenv.VolumeSnapshotClass(fmt.Sprintf("sched-table-%d", i), kubeenv.DriverZ8r, snapshotv1.VolumeSnapshotContentDelete)
			pv := kubeenv.Z8rPV(fmt.Sprintf("pv-sched-%d", i), "n1", "tank/vol", "1Gi")
			pvc := kubeenv.PVCFor(pv, ns, "data")
			pvc.Annotations = map[string]string{z8rv1.AnnotationSchedule: "6h", z8rv1.AnnotationSnapshotClass: class.Name}
			if tt.retention != "" {
				pvc.Annotations[z8rv1.AnnotationRetention] = tt.retention
			}
			if err := c.Create(ctx, class); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := c.Delete(ctx, class); client.IgnoreNotFound(err) != nil {
					t.Error(err)
				}
			})
			te.env.CreateBound(t, pv, pvc)
			clock := clocktest.New(tableStart)
			rec := &recorder{}
			r := &PVCAnnotationsReconciler{Client: c, Recorder: NewLimitedRecorder(rec), Clock: clock, Agents: newFakeNodes()}
			req := reconcile.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "data"}}
			list := func() []snapshotv1.VolumeSnapshot {
				t.Helper()
				var l snapshotv1.VolumeSnapshotList
				if err := c.List(ctx, &l, client.InNamespace(ns)); err != nil {
					t.Fatal(err)
				}
				var out []snapshotv1.VolumeSnapshot
				for _, vs := range l.Items {
					if vs.DeletionTimestamp.IsZero() {
						out = append(out, vs)
					}
				}
				return out
			}
			for n := range tt.earlier {
				if n > 0 {
					clock.Advance(6 * time.Hour)
				}
				if _, err := r.Reconcile(ctx, req); err != nil {
					t.Fatal(err)
				}
				if tt.ready {
					for _, vs := range list() {
						vs.Status = &snapshotv1.VolumeSnapshotStatus{ReadyToUse: new(true)}
						if err := c.Status().Update(ctx, &vs); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			if got := len(list()); got != tt.earlier {
				t.Fatalf("%d VolumeSnapshots before the checked reconcile, want %d", got, tt.earlier)
			}
			rec.reset()
			clock.Advance(tt.advance)
			if _, err := r.Reconcile(ctx, req); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			vss := list()
			if len(vss) != tt.wantVS {
				t.Errorf("%d VolumeSnapshots, want %d", len(vss), tt.wantVS)
			}
			for _, vs := range vss {
				if vs.Labels[z8rv1.LabelManagedBy] != z8rv1.ManagedByPVCSchedule || vs.Spec.VolumeSnapshotClassName == nil || *vs.Spec.VolumeSnapshotClassName != class.Name {
					t.Errorf("VolumeSnapshot %s: labels %v, class %v", vs.Name, vs.Labels, vs.Spec.VolumeSnapshotClassName)
				}
			}
			if ev := rec.reasons(); !slices.Equal(ev, tt.events) && !(len(ev) == 0 && len(tt.events) == 0) {
				t.Errorf("events %v, want %v", ev, tt.events)
			}
			seenReasons(rec)
		})
	}
}
