package hostkeys

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sort"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
)

// ErrChanged is matched by *ChangedError.
var ErrChanged = errors.New("host key changed; refused until an administrator approves the new key")

// ChangedError reports a presented key that differs from the pinned one.
type ChangedError struct {
	Node      string
	Pinned    string // fingerprint
	Presented string // fingerprint
}

func (e *ChangedError) Error() string {
	return fmt.Sprintf("host key of node %s changed: pinned %s, presented %s; refused until approved (kubectl z8r approve-hostkey %s)",
		e.Node, e.Pinned, e.Presented, e.Node)
}

// Is makes errors.Is(err, ErrChanged) true.
func (e *ChangedError) Is(target error) bool { return target == ErrChanged }

// Store keeps one pinned key per node, in authorized_keys format.
type Store interface {
	Pinned(ctx context.Context, node string) (key string, ok bool, err error)
	Pin(ctx context.Context, node, key string) error
}

// Verify applies trust on first use to the key a node presented.
func Verify(ctx context.Context, s Store, node string, presented ssh.PublicKey) error {
	pinned, ok, err := s.Pinned(ctx, node)
	if err != nil {
		return fmt.Errorf("hostkeys: read pin for %s: %w", node, err)
	}
	if !ok {
		if err := s.Pin(ctx, node, marshal(presented)); err != nil {
			return fmt.Errorf("hostkeys: pin %s: %w", node, err)
		}
		return nil
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pinned))
	if err != nil {
		return fmt.Errorf("hostkeys: pinned key of %s: %w", node, err)
	}
	if !bytes.Equal(pk.Marshal(), presented.Marshal()) {
		return &ChangedError{Node: node, Pinned: ssh.FingerprintSHA256(pk), Presented: ssh.FingerprintSHA256(presented)}
	}
	return nil
}

// Callback returns an ssh.HostKeyCallback that Verifies against s.
func Callback(ctx context.Context, s Store, node string) ssh.HostKeyCallback {
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		return Verify(ctx, s, node, key)
	}
}

// Approve pins key for node, replacing any previous pin.
func Approve(ctx context.Context, s Store, node string, key ssh.PublicKey) error {
	return s.Pin(ctx, node, marshal(key))
}

func marshal(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// FileStore keeps pins in a file of "node key" lines.
type FileStore struct {
	Path string
	mu   sync.Mutex
}

func (f *FileStore) read() (map[string]string, error) {
	m := map[string]string{}
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		node, key, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if ok && node != "" && !strings.HasPrefix(node, "#") {
			m[node] = key
		}
	}
	return m, sc.Err()
}

// Pinned implements Store.
func (f *FileStore) Pinned(_ context.Context, node string) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.read()
	if err != nil {
		return "", false, err
	}
	k, ok := m[node]
	return k, ok, nil
}

// Pin implements Store.
func (f *FileStore) Pin(_ context.Context, node, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.read()
	if err != nil {
		return err
	}
	m[node] = key
	nodes := make([]string, 0, len(m))
	for n := range m {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	var b strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&b, "%s %s\n", n, m[n])
	}
	tmp := f.Path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, f.Path)
}
