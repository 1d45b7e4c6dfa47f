package controllers

import (
	"context"
	"slices"
	"strings"
	"testing"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/policy"
)

// TestTargetsFor_Cases: the targets decided for a content, from the
// objects around it. The fake client stands in for the API server only to
// hold the policies and namespace the decision reads.
func TestTargetsFor_Cases(t *testing.T) {
	allowN2 := &z8rv1.ReplicationTargetPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: z8rv1.ReplicationTargetPolicySpec{Targets: []z8rv1.AllowedTarget{{Node: "n2", ParentDataset: "tank"}}}}
	ann := func(v string) map[string]string { return map[string]string{z8rv1.AnnotationReplicateTo: v} }
	tests := []struct {
		name                string
		content, vs, pvc    map[string]string
		class               map[string]string
		policy              bool
		want                []string
		wantStamped         bool
		wantReason, problem string // an Event reason and the VolumeSnapshot's problem
	}{
		{name: "class and allowed tenant targets are a union", class: ann("n3:backup/"), vs: ann("n2:tank/x/,n4:tank/y/"), policy: true,
			want: []string{"n3:backup/vol", "n2:tank/x/vol"}, wantReason: z8rv1.EventTargetNotAllowed, problem: "n4:tank/y/vol"},
		{name: "without a policy only the class's", class: ann("n3:backup/"), vs: ann("n2:tank/x/"),
			want: []string{"n3:backup/vol"}, wantReason: z8rv1.EventTargetNotAllowed, problem: "no ReplicationTargetPolicy exists"},
		{name: "empty VolumeSnapshot value keeps the class's", class: ann("n3:backup/"), vs: ann(" , "), policy: true,
			want: []string{"n3:backup/vol"}, wantReason: z8rv1.EventEmptyAnnotation, problem: "is empty"},
		{name: "empty VolumeSnapshot value falls back to the PVC's", vs: ann(""), pvc: ann("n2"), policy: true,
			want: []string{"n2:tank/vol"}, wantReason: z8rv1.EventEmptyAnnotation, problem: "is empty"},
		{name: "VolumeSnapshot's value over the PVC's", vs: ann("n2:tank/a/"), pvc: ann("n2:tank/b/"), policy: true,
			want: []string{"n2:tank/a/vol"}},
		{name: "content's own value alone", content: ann("n5:other/x"), class: ann("n3:backup/"), vs: ann("n2"), policy: true,
			want: []string{"n5:other/x"}, wantStamped: true},
		{name: "class targets need no policy", class: ann("n9:anything/"),
			want: []string{"n9:anything/vol"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			scheme := runtime.NewScheme()
			for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, snapshotv1.AddToScheme, z8rv1.AddToScheme} {
				if err := add(scheme); err != nil {
					t.Fatal(err)
				}
			}
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}
			vs := &snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s", Annotations: tc.vs}}
			pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Annotations: tc.pvc}}
			objs := []client.Object{ns, vs, pvc}
			if tc.policy {
				objs = append(objs, allowN2.DeepCopy())
			}
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
			rec := events.NewFakeRecorder(10)
			r := contentKit{Client: c, Recorder: rec}
			loc := located{Node: "n1", Dataset: "tank/vol", VS: vs, PVC: pvc,
				Class: &snapshotv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "cl", Annotations: tc.class}}}
			content := &snapshotv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: "c", Annotations: tc.content}}
			got, stamped, err := r.targetsFor(context.Background(), content, loc)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, g := range got {
				names = append(names, g.String())
			}
			if !slices.Equal(names, tc.want) || stamped != tc.wantStamped {
				t.Errorf("targets %v stamped %v, want %v %v", names, stamped, tc.want, tc.wantStamped)
			}
			if tc.wantReason != "" {
				found := false
				for len(rec.Events) > 0 && !found {
					found = strings.Contains(<-rec.Events, " "+tc.wantReason+" ")
				}
				if !found {
					t.Errorf("no %s event", tc.wantReason)
				}
			}
			var cur snapshotv1.VolumeSnapshot
			if err := c.Get(context.Background(), client.ObjectKeyFromObject(vs), &cur); err != nil {
				t.Fatal(err)
			}
			p := cur.Annotations[policy.AnnProblem]
			if tc.problem == "" && p != "" || tc.problem != "" && !strings.Contains(p, tc.problem) {
				t.Errorf("VolumeSnapshot's problem %q, want %q", p, tc.problem)
			}
		})
	}
}
