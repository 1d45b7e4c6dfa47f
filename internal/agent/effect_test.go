package agent_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/replicate"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/volsnap"
	"github.com/z8r-project/z8r/zfsexec"
)

// getRunner answers `zfs get ... NAME` from canned zfs-fuse output keyed by
// NAME (rows "name\tproperty\tvalue\tsource", as in
// zfsexec/testdata/zfs-fuse-0.7/get-Hp-r.txt), a missing NAME with
// zfs-fuse's "dataset does not exist", and records every argv it sees.
type getRunner struct {
	out  map[string]string
	err  error // returned for every get when set (the node busy)
	mu   sync.Mutex
	runs [][]string
}

func (r *getRunner) Run(_ context.Context, c zfsexec.Command) error {
	r.mu.Lock()
	r.runs = append(r.runs, append([]string(nil), c.Argv...))
	r.mu.Unlock()
	if len(c.Argv) < 2 || c.Argv[1] != "get" {
		return nil
	}
	if r.err != nil {
		return r.err
	}
	name := c.Argv[len(c.Argv)-1]
	out, ok := r.out[name]
	if !ok {
		return &zfsexec.CommandError{Argv: c.Argv, ExitCode: 1, Stderr: fmt.Sprintf("cannot open '%s': dataset does not exist\n", name)}
	}
	_, _ = c.Stdout.Write([]byte(out))
	return nil
}

func (r *getRunner) argvs() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.runs...)
}

// rows renders zfs get -H -p output: each row is name, property, value,
// source.
func getRows(rs ...[4]string) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(strings.Join(r[:], "\t") + "\n")
	}
	return b.String()
}

const (
	effFS      = "tank/r"
	effReplica = "tank/src/data"
)

// fsRows is a filesystem's rows for the properties a forced receive is
// judged by.
func fsRows(name, typ, readonly, mounted, markValue, markSource string) string {
	return getRows(
		[4]string{name, "type", typ, "-"},
		[4]string{name, "readonly", readonly, "local"},
		[4]string{name, "mounted", mounted, "-"},
		[4]string{name, replicate.ReplicaOfProp, markValue, markSource},
	)
}

func snapRows(name, owner, ownerSrc, content, contentSrc string) string {
	return getRows(
		[4]string{name, "type", "snapshot", "-"},
		[4]string{name, snapname.OwnerProp, owner, ownerSrc},
		[4]string{name, volsnap.PropContent, content, contentSrc},
	)
}

// markRows is a dataset's rows for the properties promotion is judged by.
func markRows(name, typ, origin, markValue, markSource string) string {
	return getRows(
		[4]string{name, "type", typ, "-"},
		[4]string{name, "origin", origin, "-"},
		[4]string{name, replicate.ReplicaOfProp, markValue, markSource},
	)
}

// mountRows is a dataset's rows for the properties zfs mount is judged by.
func mountRows(name, typ, mountpoint, source string) string {
	return getRows(
		[4]string{name, "type", typ, "-"},
		[4]string{name, "mountpoint", mountpoint, source},
	)
}

var busy = &zfsexec.CommandError{Argv: []string{"zfs", "get"}, ExitCode: 1,
	Stderr: "connect: No such file or directory\nPlease make sure that the zfs-fuse daemon is running.\n"}

func TestCheckEffect_Rules(t *testing.T) {
	pristine := fsRows(effFS, "filesystem", "on", "no", effReplica, "local")
	recvF := []string{"zfs", "recv", "-u", "-F", "-s", "-o", "readonly=on", effFS}
	destroy := []string{"zfs", "destroy", "tank/a@s"}
	rename := []string{"zfs", "rename", effFS, snapname.DivergedName(effFS, mustTime(t))}
	renameTail := []string{"zfs", "rename", effFS, snapname.TailName(effFS, mustTime(t))}
	roOff := []string{"zfs", "set", "readonly=off", effFS}
	cmOn := []string{"zfs", "set", "canmount=on", effFS}
	promote := []string{"zfs", "promote", effFS}
	mount := []string{"zfs", "mount", effFS}
	tests := []struct {
		name    string
		argv    []string
		out     map[string]string
		err     error
		refused string // substring of the reason; "" means allowed
		reads   int    // zfs get runs expected
	}{
		// zfs recv -F
		{name: "recv without -F reads nothing", argv: []string{"zfs", "recv", "-u", "-s", effFS}, reads: 0},
		{name: "recv -A reads nothing", argv: []string{"zfs", "recv", "-A", effFS}, reads: 0},
		{name: "recv -F into a missing target", argv: recvF, reads: 1},
		{name: "recv -F into a pristine replica", argv: recvF, out: map[string]string{effFS: pristine}, reads: 1},
		{name: "recv -F resuming into a pristine replica", argv: []string{"zfs", "recv", "-u", "-F", "-s", effFS}, out: map[string]string{effFS: pristine}, reads: 1},
		{name: "recv -F over a plain dataset", argv: recvF, out: map[string]string{effFS: fsRows(effFS, "filesystem", "off", "yes", "-", "-")}, refused: "not a z8r replica", reads: 1},
		{name: "recv -F mark inherited", argv: recvF, out: map[string]string{effFS: fsRows(effFS, "filesystem", "on", "no", effReplica, "inherited from tank")}, refused: "not a z8r replica", reads: 1},
		{name: "recv -F mark received", argv: recvF, out: map[string]string{effFS: fsRows(effFS, "filesystem", "on", "no", effReplica, "received")}, refused: "not a z8r replica", reads: 1},
		{name: "recv -F replica made writable", argv: recvF, out: map[string]string{effFS: fsRows(effFS, "filesystem", "off", "no", effReplica, "local")}, refused: "readonly", reads: 1},
		{name: "recv -F replica mounted", argv: recvF, out: map[string]string{effFS: fsRows(effFS, "filesystem", "on", "yes", effReplica, "local")}, refused: "mounted", reads: 1},
		{name: "recv -F replica with a snapshot", argv: recvF, out: map[string]string{effFS: pristine + getRows(
			[4]string{effFS + "@s1", "type", "snapshot", "-"},
			[4]string{effFS + "@s1", "readonly", "-", "-"},
			[4]string{effFS + "@s1", "mounted", "-", "-"},
			[4]string{effFS + "@s1", replicate.ReplicaOfProp, effReplica, "inherited from " + effFS})}, refused: "not empty", reads: 1},
		{name: "recv -F replica with a child", argv: recvF, out: map[string]string{effFS: pristine + fsRows(effFS+"/c", "filesystem", "off", "yes", effReplica, "inherited from "+effFS)}, refused: "not empty", reads: 1},
		{name: "recv -F into a volume", argv: recvF, out: map[string]string{effFS: fsRows(effFS, "volume", "on", "-", effReplica, "local")}, refused: "not a filesystem", reads: 1},
		{name: "recv -F read fails", argv: recvF, err: busy, refused: "zfs-fuse daemon is running", reads: 1},

		// zfs destroy [-d] SNAP
		{name: "destroy owned", argv: destroy, out: map[string]string{"tank/a@s": snapRows("tank/a@s", "z8r", "local", "-", "-")}, reads: 1},
		{name: "destroy -d owned", argv: []string{"zfs", "destroy", "-d", "tank/a@s"}, out: map[string]string{"tank/a@s": snapRows("tank/a@s", "z8r", "local", "-", "-")}, reads: 1},
		{name: "destroy volumesnapshot content", argv: destroy, out: map[string]string{"tank/a@s": snapRows("tank/a@s", "-", "-", "snapcontent-1", "local")}, reads: 1},
		{name: "destroy missing", argv: destroy, reads: 1},
		{name: "destroy unmarked", argv: destroy, out: map[string]string{"tank/a@s": snapRows("tank/a@s", "-", "-", "-", "-")}, refused: "did not create it", reads: 1},
		{name: "destroy owner inherited", argv: destroy, out: map[string]string{"tank/a@s": snapRows("tank/a@s", "z8r", "inherited from tank/a", "-", "-")}, refused: "did not create it", reads: 1},
		{name: "destroy owner received", argv: destroy, out: map[string]string{"tank/a@s": snapRows("tank/a@s", "z8r", "received", "-", "-")}, refused: "did not create it", reads: 1},
		{name: "destroy other owner", argv: destroy, out: map[string]string{"tank/a@s": snapRows("tank/a@s", "zrepl", "local", "-", "-")}, refused: "did not create it", reads: 1},
		{name: "destroy content inherited", argv: destroy, out: map[string]string{"tank/a@s": snapRows("tank/a@s", "-", "-", "snapcontent-1", "inherited from tank/a")}, refused: "did not create it", reads: 1},
		{name: "destroy read fails", argv: destroy, err: busy, refused: "zfs-fuse daemon is running", reads: 1},
		{name: "destroy z8r bookmark reads nothing", argv: []string{"zfs", "destroy", "tank/a#z8r-base-x:s"}, reads: 0},

		// zfs rename FS FS-z8r-diverged-<t>
		{name: "rename replica aside", argv: rename, out: map[string]string{effFS: getRows([4]string{effFS, replicate.ReplicaOfProp, effReplica, "local"})}, reads: 1},
		{name: "rename missing", argv: rename, reads: 1},
		{name: "rename unmarked", argv: rename, out: map[string]string{effFS: getRows([4]string{effFS, replicate.ReplicaOfProp, "-", "-"})}, refused: "only z8r replicas", reads: 1},
		{name: "rename mark inherited", argv: rename, out: map[string]string{effFS: getRows([4]string{effFS, replicate.ReplicaOfProp, effReplica, "inherited from tank"})}, refused: "only z8r replicas", reads: 1},
		{name: "rename mark received", argv: rename, out: map[string]string{effFS: getRows([4]string{effFS, replicate.ReplicaOfProp, effReplica, "received"})}, refused: "only z8r replicas", reads: 1},
		{name: "rename read fails", argv: rename, err: busy, refused: "zfs-fuse daemon is running", reads: 1},

		// zfs rename FS FS-z8r-tail-<t>: the same rule.
		{name: "rename tail aside", argv: renameTail, out: map[string]string{effFS: getRows([4]string{effFS, replicate.ReplicaOfProp, effReplica, "local"})}, reads: 1},
		{name: "rename tail unmarked", argv: renameTail, out: map[string]string{effFS: getRows([4]string{effFS, replicate.ReplicaOfProp, "-", "-"})}, refused: "only z8r replicas", reads: 1},

		// zfs set readonly=off|canmount=on FS
		{name: "readonly=off on a marked replica", argv: roOff, out: map[string]string{effFS: markRows(effFS, "filesystem", "-", effReplica, "local")}, reads: 1},
		{name: "canmount=on on a marked replica", argv: cmOn, out: map[string]string{effFS: markRows(effFS, "filesystem", "-", effReplica, "local")}, reads: 1},
		{name: "readonly=off missing", argv: roOff, reads: 1},
		{name: "readonly=off on a plain dataset", argv: roOff, out: map[string]string{effFS: markRows(effFS, "filesystem", "-", "-", "-")}, refused: "not a z8r replica", reads: 1},
		{name: "readonly=off mark inherited", argv: roOff, out: map[string]string{effFS: markRows(effFS, "filesystem", "-", effReplica, "inherited from tank")}, refused: "not a z8r replica", reads: 1},
		{name: "readonly=off mark received", argv: roOff, out: map[string]string{effFS: markRows(effFS, "filesystem", "-", effReplica, "received")}, refused: "not a z8r replica", reads: 1},
		{name: "readonly=off mark empty", argv: roOff, out: map[string]string{effFS: markRows(effFS, "filesystem", "-", "", "local")}, refused: "not a z8r replica", reads: 1},
		{name: "canmount=on on a plain dataset", argv: cmOn, out: map[string]string{effFS: markRows(effFS, "filesystem", "-", "-", "-")}, refused: "not a z8r replica", reads: 1},
		{name: "readonly=off on a volume", argv: roOff, out: map[string]string{effFS: markRows(effFS, "volume", "-", effReplica, "local")}, refused: "not a filesystem", reads: 1},
		{name: "readonly=off read fails", argv: roOff, err: busy, refused: "zfs-fuse daemon is running", reads: 1},

		// zfs promote FS
		{name: "promote a marked clone", argv: promote, out: map[string]string{effFS: markRows(effFS, "filesystem", "tank/r-z8r-tail-20261130T150405Z@s1", effReplica, "local")}, reads: 1},
		{name: "promote missing", argv: promote, reads: 1},
		{name: "promote a marked non-clone", argv: promote, out: map[string]string{effFS: markRows(effFS, "filesystem", "-", effReplica, "local")}, refused: "not a clone", reads: 1},
		{name: "promote an unmarked clone", argv: promote, out: map[string]string{effFS: markRows(effFS, "filesystem", "tank/x@s1", "-", "-")}, refused: "not a z8r replica", reads: 1},
		{name: "promote a clone, mark inherited", argv: promote, out: map[string]string{effFS: markRows(effFS, "filesystem", "tank/x@s1", effReplica, "inherited from tank")}, refused: "not a z8r replica", reads: 1},
		{name: "promote read fails", argv: promote, err: busy, refused: "zfs-fuse daemon is running", reads: 1},

		// zfs mount FS
		{name: "mount inherited mountpoint", argv: mount, out: map[string]string{effFS: mountRows(effFS, "filesystem", "/tank/r", "inherited from tank")}, reads: 1},
		{name: "mount default mountpoint", argv: mount, out: map[string]string{effFS: mountRows(effFS, "filesystem", "/tank/r", "default")}, reads: 1},
		{name: "mount missing", argv: mount, reads: 1},
		{name: "mount local mountpoint", argv: mount, out: map[string]string{effFS: mountRows(effFS, "filesystem", "/etc/cron.d", "local")}, refused: "not inherited or default", reads: 1},
		{name: "mount received mountpoint", argv: mount, out: map[string]string{effFS: mountRows(effFS, "filesystem", "/root/.ssh", "received")}, refused: "not inherited or default", reads: 1},
		{name: "mount temporary mountpoint", argv: mount, out: map[string]string{effFS: mountRows(effFS, "filesystem", "/x", "temporary")}, refused: "not inherited or default", reads: 1},
		{name: "mount a volume", argv: mount, out: map[string]string{effFS: mountRows(effFS, "volume", "-", "-")}, refused: "not a filesystem", reads: 1},
		{name: "mount read fails", argv: mount, err: busy, refused: "zfs-fuse daemon is running", reads: 1},

		// Everything else is judged by Policy.Check alone.
		{name: "set reads nothing", argv: []string{"zfs", "set", "readonly=on", effFS}, reads: 0},
		{name: "set canmount=noauto reads nothing", argv: []string{"zfs", "set", "canmount=noauto", effFS}, reads: 0},
		{name: "clone reads nothing", argv: []string{"zfs", "clone", "-o", "readonly=on", "tank/a@s", effFS}, reads: 0},
		{name: "inherit reads nothing", argv: []string{"zfs", "inherit", replicate.ReplicaOfProp, effFS}, reads: 0},
		{name: "snapshot reads nothing", argv: []string{"zfs", "snapshot", "-o", "z8r.dev:owner=z8r", "tank/a@s"}, reads: 0},
		{name: "release reads nothing", argv: []string{"zfs", "release", "z8r-base-x", "tank/a@s"}, reads: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := (agent.Policy{Pools: []string{"tank"}}).Check(tt.argv); err != nil {
				t.Fatalf("the case's argv must pass Policy.Check: %v", err)
			}
			r := &getRunner{out: tt.out, err: tt.err}
			err := agent.CheckEffect(context.Background(), zfsexec.New(r), tt.argv)
			switch {
			case tt.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refused != "" && !errors.Is(err, agent.ErrRefused):
				t.Fatalf("got %v, want a refusal", err)
			case tt.refused != "" && !strings.Contains(err.Error(), tt.refused):
				t.Fatalf("reason %q does not say %q", err, tt.refused)
			}
			var re *agent.RefusedError
			if err != nil && !errors.As(err, &re) {
				t.Fatalf("%T is not a *RefusedError", err)
			}
			runs := r.argvs()
			if len(runs) != tt.reads {
				t.Fatalf("ran %q, want %d zfs get", runs, tt.reads)
			}
			for _, a := range runs {
				if a[1] != "get" {
					t.Fatalf("CheckEffect ran %q: it may only read", a)
				}
				// The read must itself be a request the agent allows.
				if err := (agent.Policy{Pools: []string{"tank"}}).Check(a); err != nil {
					t.Fatalf("read %q is not one Policy.Check accepts: %v", a, err)
				}
			}
		})
	}
}

// TestCheckEffect_ServerRefusesBeforeStarting: a request CheckEffect
// refuses reaches the client as ErrRefused with the reason, is audited as
// refused, and starts nothing but the read.
func TestCheckEffect_ServerRefusesBeforeStarting(t *testing.T) {
	r := &getRunner{out: map[string]string{"tank/a@s": snapRows("tank/a@s", "z8r", "inherited from tank/a", "-", "-")}}
	var audit syncBuffer
	host, key := effSigner(t), effSigner(t)
	srv, err := agent.NewServer(agent.ServerConfig{
		HostKey:        host,
		AuthorizedKeys: func() ([]ssh.PublicKey, error) { return []ssh.PublicKey{key.PublicKey()}, nil },
		Policy:         agent.Policy{Pools: []string{"tank"}},
		Runner:         r,
		Log:            logr.Discard(),
		AuditLog:       &audit,
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
	c, err := agent.Dial(context.Background(), l.Addr().String(), agent.ClientConfig{Signer: key, HostKey: host.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.ZFS().Destroy(context.Background(), "tank/a@s", zfsexec.DestroyOptions{})
	if !errors.Is(err, agent.ErrRefused) || !strings.Contains(err.Error(), "did not create it") {
		t.Fatalf("destroy of a foreign snapshot: %v, want ErrRefused", err)
	}
	for _, a := range r.argvs() {
		if a[1] != "get" {
			t.Fatalf("agent ran %q; want only the read", a)
		}
	}
	if got := audit.String(); !strings.Contains(got, `"refused"`) || !strings.Contains(got, "did not create it") {
		t.Fatalf("audit log lacks the refusal: %s", got)
	}

	// The same destroy of a snapshot z8r marks goes through.
	r.mu.Lock()
	r.out["tank/a@s"] = snapRows("tank/a@s", "z8r", "local", "-", "-")
	r.mu.Unlock()
	if err := c.ZFS().Destroy(context.Background(), "tank/a@s", zfsexec.DestroyOptions{}); err != nil {
		t.Fatalf("destroy of an owned snapshot: %v", err)
	}
	runs := r.argvs()
	if last := strings.Join(runs[len(runs)-1], " "); last != "zfs destroy tank/a@s" {
		t.Fatalf("last command %q, want the destroy", last)
	}
}

func effSigner(t *testing.T) ssh.Signer {
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

func mustTime(t *testing.T) time.Time {
	t.Helper()
	return time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
}

// syncBuffer is an io.Writer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
