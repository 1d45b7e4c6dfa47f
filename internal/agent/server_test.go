package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

type failRunner struct{ t *testing.T }

func (f failRunner) Run(_ context.Context, c zfsexec.Command) error {
	f.t.Errorf("agent started %q; want nothing started", c.Argv)
	return nil
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer runs an in-process agent on loopback with runner r.
func startServer(t *testing.T, r zfsexec.Runner, client ssh.Signer) (addr string, hostKey ssh.PublicKey) {
	t.Helper()
	host := newSigner(t)
	srv, err := NewServer(ServerConfig{
		HostKey:        host,
		AuthorizedKeys: func() ([]ssh.PublicKey, error) { return []ssh.PublicKey{client.PublicKey()}, nil },
		Policy:         Policy{Pools: []string{"tank"}},
		Runner:         r,
		Log:            logr.Discard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String(), host.PublicKey()
}

// TestServer_RefusesBadRequestsWithoutRunning sends raw argv (bypassing
// the client's own validation) and expects a refusal and no process.
func TestServer_RefusesBadRequestsWithoutRunning(t *testing.T) {
	key := newSigner(t)
	addr, hk := startServer(t, failRunner{t}, key)
	ctx := context.Background()
	c, err := Dial(ctx, addr, ClientConfig{Signer: key, HostKey: hk, GrantAuthority: key})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, argv := range [][]string{
		{"zfs", "snapshot", "tank/a;rm -rf /@s"},
		{"zfs", "snapshot", "tank/../x@s"},
		{"zfs", "snapshot", "-o", "x=y", "-tank@s"},
		{"zfs", "snapshot", "tank/" + strings.Repeat("a", 300) + "@s"},
		{"zfs", "snapshot", "other/a@s"},
		{"zfs", "destroy", "tank/a"},
		{"sh", "-c", "id"},
	} {
		err := c.Runner().Run(ctx, zfsexec.Command{Argv: argv})
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%q: got %v, want ErrRefused", argv, err)
		}
	}
	// A transfer whose send names a pool outside the allow-list.
	_, err = c.Transfer(ctx, TransferRequest{Send: zfsexec.SendOptions{Snapshot: "other/a@s"}, TargetAddr: "127.0.0.1:1", TargetHostKey: MarshalPublicKey(hk),
		Recv: zfsexec.RecvOptions{Target: "tank/a", Unmounted: true}}, nil)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "outside the pools") {
		t.Errorf("transfer outside allow-list: %v", err)
	}
}

func TestServer_UnknownClientKeyRefused(t *testing.T) {
	addr, hk := startServer(t, failRunner{t}, newSigner(t))
	_, err := Dial(context.Background(), addr, ClientConfig{Signer: newSigner(t), HostKey: hk})
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("unknown key: %v, want authentication failure", err)
	}
}

func TestClient_WrongHostKeyRefused(t *testing.T) {
	key := newSigner(t)
	addr, _ := startServer(t, failRunner{t}, key)
	_, err := Dial(context.Background(), addr, ClientConfig{Signer: key, HostKey: newSigner(t).PublicKey()})
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("wrong host key: %v, want ErrHostKeyMismatch", err)
	}
}

// echoRunner answers `zfs version` like OpenZFS and copies stdin to stdout
// for any other command, failing with a CommandError when argv asks.
type echoRunner struct{}

func (echoRunner) Run(ctx context.Context, c zfsexec.Command) error {
	if strings.Join(c.Argv, " ") == "zfs version" {
		_, _ = c.Stdout.Write([]byte("zfs-2.3.2-1\n"))
		return nil
	}
	if c.Argv[1] == "hold" {
		return &zfsexec.CommandError{Argv: c.Argv, ExitCode: 1, Stderr: "cannot hold 'tank/a@s': tag already exists on this dataset\n"}
	}
	return nil
}

// TestServer_TypedErrorsSurviveTheWire: a ZFS error on the agent arrives as
// the same typed error on the client.
func TestServer_TypedErrorsSurviveTheWire(t *testing.T) {
	key := newSigner(t)
	addr, hk := startServer(t, echoRunner{}, key)
	c, err := Dial(context.Background(), addr, ClientConfig{Signer: key, HostKey: hk})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.ZFS().Hold(context.Background(), "z8r-base-x", "tank/a@s")
	if !errors.Is(err, zfsexec.ErrTagExists) {
		t.Fatalf("got %v, want ErrTagExists", err)
	}
	caps, err := c.ZFS().Capabilities(context.Background())
	if err != nil || caps.Implementation != zfsexec.ImplOpenZFS {
		t.Fatalf("caps over the wire: %+v %v", caps, err)
	}
}
