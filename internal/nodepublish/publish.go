package nodepublish

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/zfsexec"
)

// Publisher publishes one node's Z8RNode status.
type Publisher struct {
	Client  client.Client
	Node    string
	Address string
	HostKey ssh.PublicKey
	// Pools are the agent's own (--pools): in force unless the Z8RNode's
	// spec.pools names others.
	Pools []string
	// OnPools, if set, is told the pools in force whenever they differ
	// from the last ones it was told (first: Pools); an error keeps the
	// old ones in force and is published as Ready=false.
	OnPools  func([]string) error
	ZFS      *zfsexec.ZFS
	Interval time.Duration
	Log      logr.Logger
	// StartedAt is published as status.startedAt; zero: the time of the
	// first PublishOnce.
	StartedAt time.Time

	inForce []string // the pools OnPools was last told
	from    string
}

// Run publishes now and then every Interval until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	if p.Interval == 0 {
		p.Interval = 30 * time.Second
	}
	for {
		if err := p.PublishOnce(ctx); err != nil {
			p.Log.Error(err, "publish node status failed")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.Interval):
		}
	}
}

// Where the pools in force come from (Z8RNodeStatus.PoolsFrom).
const (
	poolsFromSpec  = "spec"
	poolsFromAgent = "agent"
)

// get reads the node's Z8RNode; one that does not exist yet is returned
// empty, with no ResourceVersion.
func (p *Publisher) get(ctx context.Context) (z8rv1.Z8RNode, error) {
	var zn z8rv1.Z8RNode
	err := p.Client.Get(ctx, client.ObjectKey{Name: p.Node}, &zn)
	if apierrors.IsNotFound(err) {
		return z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: p.Node}}, nil
	}
	if err != nil {
		return zn, fmt.Errorf("nodepublish: get Z8RNode %s: %w", p.Node, err)
	}
	return zn, nil
}

// Apply reads the node's Z8RNode and applies the pools in force (see
// apply); it returns what is in force afterwards.
func (p *Publisher) Apply(ctx context.Context) (pools []string, from string, err error) {
	zn, err := p.get(ctx)
	if err != nil {
		return nil, "", err
	}
	return p.apply(&zn)
}

// apply hands the pools in force by zn (its spec.pools, else Pools) to
// OnPools if they changed; it returns what is in force afterwards.
func (p *Publisher) apply(zn *z8rv1.Z8RNode) (pools []string, from string, err error) {
	want, from := p.Pools, poolsFromAgent
	if len(zn.Spec.Pools) > 0 {
		want, from = zn.Spec.Pools, poolsFromSpec
	}
	if p.inForce == nil || !slices.Equal(want, p.inForce) {
		if p.OnPools != nil {
			if err := p.OnPools(want); err != nil {
				return nil, "", fmt.Errorf("nodepublish: pools %v: %w", want, err)
			}
		}
		p.Log.Info("pools in force", "pools", want, "from", from)
		p.inForce, p.from = slices.Clone(want), from
	}
	return p.inForce, p.from, nil
}

// PublishOnce applies the pools in force, creates the Z8RNode if needed
// and writes its status, with one read of the object (more only on a
// write conflict).
func (p *Publisher) PublishOnce(ctx context.Context) error {
	zn, err := p.get(ctx)
	if err != nil {
		return err
	}
	status := z8rv1.Z8RNodeStatus{
		Address:            p.Address,
		HostKey:            agent.MarshalPublicKey(p.HostKey),
		HostKeyFingerprint: ssh.FingerprintSHA256(p.HostKey),
		Ready:              true,
	}
	pools, from, err := p.apply(&zn)
	if err != nil {
		if p.inForce == nil {
			return err // nothing applied yet: nothing true to publish
		}
		// The old pools stay in force; say why the new ones are not.
		pools, from = p.inForce, p.from
		status.Ready, status.Message = false, err.Error()
	}
	status.Pools, status.PoolsSummary, status.PoolsFrom = pools, strings.Join(pools, ","), from
	now := metav1.Now()
	status.LastHeartbeatTime = &now
	if p.StartedAt.IsZero() {
		p.StartedAt = now.Time
	}
	status.StartedAt = &metav1.Time{Time: p.StartedAt.UTC().Truncate(time.Second)}
	caps, err := p.ZFS.Capabilities(ctx)
	if err != nil {
		status.Ready = false
		status.Message = err.Error()
	} else if status.Ready {
		status.Implementation = string(caps.Implementation)
		status.ZFSVersion = caps.Version
		status.Capabilities = caps.Names()
		status.CapabilitiesSummary = strings.Join(caps.Names(), ",")
		for _, pool := range pools {
			if ok, err := p.ZFS.Exists(ctx, pool); err != nil || !ok {
				status.Ready = false
				status.Message = fmt.Sprintf("pool %s is not available: %v", pool, err)
			}
		}
	}
	first := true
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			if zn, err = p.get(ctx); err != nil {
				return err
			}
		}
		first = false
		if zn.ResourceVersion == "" {
			if err := p.Client.Create(ctx, &zn); apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(z8rv1.GroupVersion.WithResource("z8rnodes").GroupResource(), p.Node, err)
			} else if err != nil {
				return fmt.Errorf("nodepublish: create Z8RNode %s: %w", p.Node, err)
			}
		}
		// Keep the controller's conditions; replace what the agent owns.
		status.Conditions = zn.Status.Conditions
		zn.Status = status
		return p.Client.Status().Update(ctx, &zn)
	})
}
