package nodepublish

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"slices"
	"testing"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/testbed/fakezfs"
)

// TestPublisher_PoolsFromSpecElseAgent: without spec.pools the agent's
// own pools are in force; an administrator's spec.pools replaces them
// (OnPools told once per change) and status shows which; pools OnPools
// refuses stay as they were, with Ready=false saying why.
func TestPublisher_PoolsFromSpecElseAgent(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	if err := z8rv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&z8rv1.Z8RNode{}).Build()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	var told [][]string
	refuse := false
	p := &Publisher{Client: c, Node: "n1", Address: "10.0.0.1:2022", HostKey: hk, Pools: []string{"tank"}, Log: logr.Discard(),
		ZFS: fakezfs.New("n1", fakezfs.Options{Pools: []string{"tank", "backup"}}).ZFS(),
		OnPools: func(pools []string) error {
			if refuse {
				return errors.New("refused")
			}
			told = append(told, pools)
			return nil
		}}
	get := func() z8rv1.Z8RNode {
		t.Helper()
		var zn z8rv1.Z8RNode
		if err := c.Get(ctx, client.ObjectKey{Name: "n1"}, &zn); err != nil {
			t.Fatal(err)
		}
		return zn
	}
	for range 2 {
		if err := p.PublishOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if zn := get(); !slices.Equal(zn.Status.Pools, []string{"tank"}) || zn.Status.PoolsFrom != "agent" || !zn.Status.Ready {
		t.Errorf("status %+v, want the agent's pools [tank], ready", zn.Status)
	}
	zn := get()
	zn.Spec.Pools = []string{"backup"}
	if err := c.Update(ctx, &zn); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if zn := get(); !slices.Equal(zn.Status.Pools, []string{"backup"}) || zn.Status.PoolsFrom != "spec" || !zn.Status.Ready {
		t.Errorf("status %+v, want spec's pools [backup], ready", zn.Status)
	}
	if want := [][]string{{"tank"}, {"backup"}}; !slices.EqualFunc(told, want, slices.Equal) {
		t.Errorf("OnPools told %v, want %v (once per change)", told, want)
	}

	zn = get()
	zn.Spec.Pools = []string{"missing"}
	if err := c.Update(ctx, &zn); err != nil {
		t.Fatal(err)
	}
	refuse = true
	if err := p.PublishOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if zn := get(); !slices.Equal(zn.Status.Pools, []string{"backup"}) || zn.Status.Ready || zn.Status.Message == "" {
		t.Errorf("status %+v, want [backup] still in force, not ready, with the reason", zn.Status)
	}
	// Accepted but absent on the node: in force, and not ready.
	refuse = false
	if err := p.PublishOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if zn := get(); !slices.Equal(zn.Status.Pools, []string{"missing"}) || zn.Status.Ready {
		t.Errorf("status %+v, want [missing] in force and not ready (no such pool)", zn.Status)
	}
}
