//go:build kube

package controllers

import (
	"context"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// tableZ8RNode drives Z8RNodeReconciler.Reconcile: a Z8RNode's published
// and pinned host keys (and its HostKeyTrusted condition) → the pinned key,
// the condition and the Events.
func tableZ8RNode(t *testing.T, te *tableEnv) {
	const keyA, keyB = "ssh-ed25519 AAAAkeyA", "ssh-ed25519 AAAAkeyB"
	tests := []struct {
		name      string
		pinned    string
		published string
		trusted   metav1.ConditionStatus // the condition before, "" for none
		conflicts int                    // status updates failed with a conflict first
		wantPin   string
		wantCond  string // HostKeyTrusted reason after, "" for none
		events    []string
	}{
		{name: "no key published yet: nothing", wantPin: ""},
		{name: "first key is pinned on first use", published: keyA, wantPin: keyA,
			wantCond: z8rv1.ReasonHostKeyMatches, events: []string{z8rv1.EventHostKeyPinned}},
		{name: "the pinned key: trusted, no Event", pinned: keyA, published: keyA, trusted: metav1.ConditionTrue,
			wantPin: keyA, wantCond: z8rv1.ReasonHostKeyMatches},
		{name: "a changed key is refused with a Warning", pinned: keyA, published: keyB, trusted: metav1.ConditionTrue,
			wantPin: keyA, wantCond: z8rv1.ReasonHostKeyChanged, events: []string{z8rv1.EventHostKeyChanged}},
		{name: "a changed key already reported: no second Warning", pinned: keyA, published: keyB, trusted: metav1.ConditionFalse,
			wantPin: keyA, wantCond: z8rv1.ReasonHostKeyChanged},
		{name: "an approved key is trusted again", pinned: keyB, published: keyB, trusted: metav1.ConditionFalse,
			wantPin: keyB, wantCond: z8rv1.ReasonHostKeyMatches},
		{name: "API conflicts on the status write are retried", pinned: keyA, published: keyB, conflicts: 2,
			wantPin: keyA, wantCond: z8rv1.ReasonHostKeyChanged, events: []string{z8rv1.EventHostKeyChanged}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c := te.client
			zn := &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: z8rv1.Z8RNodeSpec{PinnedHostKey: tt.pinned}}
			if err := c.Create(ctx, zn); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := c.Delete(ctx, &z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}); client.IgnoreNotFound(err) != nil {
					t.Error(err)
				}
			})
			zn.Status.HostKey, zn.Status.HostKeyFingerprint = tt.published, "SHA256:fp-"+tt.published
			if tt.trusted != "" {
				reason := z8rv1.ReasonHostKeyMatches
				if tt.trusted == metav1.ConditionFalse {
					reason = z8rv1.ReasonHostKeyChanged
				}
				meta.SetStatusCondition(&zn.Status.Conditions, metav1.Condition{Type: z8rv1.ConditionHostKeyTrusted, Status: tt.trusted, Reason: reason, Message: "before"})
			}
			if err := c.Status().Update(ctx, zn); err != nil {
				t.Fatal(err)
			}
			inj := &conflicts{status: tt.conflicts}
			rec := &recorder{}
			r := &Z8RNodeReconciler{Client: interceptor.NewClient(c, inj.funcs()), Recorder: NewLimitedRecorder(rec)}
			if _, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: "n1"}}); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			if inj.fired != tt.conflicts {
				t.Errorf("injected %d conflicts, want %d", inj.fired, tt.conflicts)
			}
			var got z8rv1.Z8RNode
			if err := c.Get(ctx, client.ObjectKey{Name: "n1"}, &got); err != nil {
				t.Fatal(err)
			}
			if got.Spec.PinnedHostKey != tt.wantPin {
				t.Errorf("pinned %q, want %q", got.Spec.PinnedHostKey, tt.wantPin)
			}
			cond := meta.FindStatusCondition(got.Status.Conditions, z8rv1.ConditionHostKeyTrusted)
			switch {
			case tt.wantCond == "" && cond != nil:
				t.Errorf("condition %+v, want none", cond)
			case tt.wantCond != "" && (cond == nil || cond.Reason != tt.wantCond):
				t.Errorf("condition %+v, want reason %s", cond, tt.wantCond)
			}
			if ev := rec.reasons(); !slices.Equal(ev, tt.events) && !(len(ev) == 0 && len(tt.events) == 0) {
				t.Errorf("events %v, want %v", ev, tt.events)
			}
			seenReasons(rec)
		})
	}
}
