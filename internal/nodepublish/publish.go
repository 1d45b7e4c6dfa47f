package nodepublish

import (
	"context"
	"fmt"
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
	Client   client.Client
	Node     string
	Address  string
	HostKey  ssh.PublicKey
	Pools    []string
	ZFS      *zfsexec.ZFS
	Interval time.Duration
	Log      logr.Logger
	// StartedAt is published as status.startedAt; zero: the time of the
	// first PublishOnce.
	StartedAt time.Time
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

// PublishOnce creates the Z8RNode if needed and writes its status.
func (p *Publisher) PublishOnce(ctx context.Context) error {
	status := z8rv1.Z8RNodeStatus{
		Address:            p.Address,
		HostKey:            agent.MarshalPublicKey(p.HostKey),
		HostKeyFingerprint: ssh.FingerprintSHA256(p.HostKey),
		Pools:              p.Pools,
		PoolsSummary:       strings.Join(p.Pools, ","),
		Ready:              true,
	}
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
	} else {
		status.Implementation = string(caps.Implementation)
		status.ZFSVersion = caps.Version
		status.Capabilities = caps.Names()
		status.CapabilitiesSummary = strings.Join(caps.Names(), ",")
		for _, pool := range p.Pools {
			if ok, err := p.ZFS.Exists(ctx, pool); err != nil || !ok {
				status.Ready = false
				status.Message = fmt.Sprintf("pool %s is not available: %v", pool, err)
			}
		}
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var zn z8rv1.Z8RNode
		err := p.Client.Get(ctx, client.ObjectKey{Name: p.Node}, &zn)
		if apierrors.IsNotFound(err) {
			zn = z8rv1.Z8RNode{ObjectMeta: metav1.ObjectMeta{Name: p.Node}}
			if err := p.Client.Create(ctx, &zn); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("nodepublish: create Z8RNode %s: %w", p.Node, err)
			}
			if err := p.Client.Get(ctx, client.ObjectKey{Name: p.Node}, &zn); err != nil {
				return fmt.Errorf("nodepublish: get Z8RNode %s: %w", p.Node, err)
			}
		} else if err != nil {
			return fmt.Errorf("nodepublish: get Z8RNode %s: %w", p.Node, err)
		}
		// Keep the controller's conditions; replace what the agent owns.
		status.Conditions = zn.Status.Conditions
		zn.Status = status
		return p.Client.Status().Update(ctx, &zn)
	})
}
