package agent

import (
	"context"
	"net"
	"sync"

	"golang.org/x/crypto/ssh"
)

// Peers keeps one open connection per (agent address, host key), so
// repeated transfers to the same target skip the SSH handshake.
type Peers struct {
	key  ssh.Signer
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	dialMu sync.Mutex
	mu     sync.Mutex
	conns  map[string]*Client
}

// NewPeers returns a pool that dials with key.
func NewPeers(key ssh.Signer, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *Peers {
	return &Peers{key: key, dial: dial, conns: map[string]*Client{}}
}

func peerKey(addr string, hostKey ssh.PublicKey) string {
	return addr + " " + ssh.FingerprintSHA256(hostKey)
}

// Get returns an open client for addr that verified hostKey. Concurrent
// transfers to one target share a connection: dialing is serialized, and a
// live connection is never replaced.
func (p *Peers) Get(ctx context.Context, addr string, hostKey ssh.PublicKey) (*Client, error) {
	k := peerKey(addr, hostKey)
	p.dialMu.Lock()
	defer p.dialMu.Unlock()
	p.mu.Lock()
	c := p.conns[k]
	p.mu.Unlock()
	if c != nil {
		select {
		case <-c.Done():
		default:
			return c, nil
		}
	}
	c, err := Dial(ctx, addr, ClientConfig{Signer: p.key, HostKey: hostKey, Dial: p.dial})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.conns[k] = c
	p.mu.Unlock()
	return c, nil
}

// Drop closes and forgets c if it is still the pooled connection to addr.
func (p *Peers) Drop(addr string, hostKey ssh.PublicKey, c *Client) {
	k := peerKey(addr, hostKey)
	p.mu.Lock()
	cur := p.conns[k]
	if cur == c {
		delete(p.conns, k)
	}
	p.mu.Unlock()
	if cur == c && c != nil {
		_ = c.Close()
	}
}

// Close closes every connection.
func (p *Peers) Close() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[string]*Client{}
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
