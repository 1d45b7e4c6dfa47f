package controllers

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
)

// versionReader serves one DatasetReplication at a fixed resourceVersion
// and counts its reads.
type versionReader struct {
	rv    string
	reads int
}

func (v *versionReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	v.reads++
	dr := obj.(*z8rv1.DatasetReplication)
	*dr = z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: key.Name, ResourceVersion: v.rv}}
	return nil
}

func (v *versionReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return nil
}

func TestOwnWrites_ReadsLiveOnlyWhenTheCacheTrails(t *testing.T) {
	key := types.NamespacedName{Name: "r"}
	ctx := context.Background()
	cache, live := &versionReader{rv: "5"}, &versionReader{rv: "7"}
	var w ownWrites
	var dr z8rv1.DatasetReplication

	// Nothing written yet: the cache is trusted.
	if err := w.getFresh(ctx, cache, live, key, &dr); err != nil || dr.ResourceVersion != "5" || live.reads != 0 {
		t.Fatalf("first read: rv %q, live reads %d, err %v; want the cached 5 and no live read", dr.ResourceVersion, live.reads, err)
	}
	// The reconciler wrote version 7; the cache still has 5.
	w.record(&z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "r", ResourceVersion: "7"}})
	if err := w.getFresh(ctx, cache, live, key, &dr); err != nil || dr.ResourceVersion != "7" || live.reads != 1 {
		t.Fatalf("after an own write: rv %q, live reads %d, err %v; want the live 7", dr.ResourceVersion, live.reads, err)
	}
	// The cache caught up: no more live reads.
	cache.rv = "7"
	if err := w.getFresh(ctx, cache, live, key, &dr); err != nil || dr.ResourceVersion != "7" || live.reads != 1 {
		t.Fatalf("cache caught up: rv %q, live reads %d, err %v; want the cached 7 only", dr.ResourceVersion, live.reads, err)
	}
	// Someone else wrote 9, already cached: one live read confirms it.
	cache.rv, live.rv = "9", "9"
	for range 2 {
		if err := w.getFresh(ctx, cache, live, key, &dr); err != nil || dr.ResourceVersion != "9" {
			t.Fatalf("another writer: rv %q, err %v", dr.ResourceVersion, err)
		}
	}
	if live.reads != 2 {
		t.Errorf("live reads %d after another writer's change, want exactly one more", live.reads)
	}
	// Without a live reader the cache is used as it is.
	w.record(&z8rv1.DatasetReplication{ObjectMeta: metav1.ObjectMeta{Name: "r", ResourceVersion: "11"}})
	if err := w.getFresh(ctx, cache, nil, key, &dr); err != nil || dr.ResourceVersion != "9" {
		t.Fatalf("no live reader: rv %q, err %v", dr.ResourceVersion, err)
	}
	w.forget(key)
	if w.mayBeStale(&dr) {
		t.Error("a forgotten object is still suspected stale")
	}
}
