package agent

import (
	"errors"
	"slices"
	"testing"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"
)

// TestServer_SetPoolsReplacesWhatRequestsMayName: the pools in force
// change with SetPools (a node's Z8RNode spec.pools); an empty list or a
// name that is not a pool's is refused and the old pools stay.
func TestServer_SetPoolsReplacesWhatRequestsMayName(t *testing.T) {
	srv, err := NewServer(ServerConfig{HostKey: newSigner(t), Runner: failRunner{t}, Log: logr.Discard(),
		AuthorizedKeys: func() ([]ssh.PublicKey, error) { return nil, nil }, Policy: Policy{Pools: []string{"tank"}}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string) error {
		return srv.policy.Load().Check([]string{"zfs", "snapshot", name + "@s1"})
	}
	if err := check("tank/a"); err != nil {
		t.Fatalf("tank/a under the default pools: %v", err)
	}
	if err := srv.SetPools([]string{"backup"}); err != nil {
		t.Fatal(err)
	}
	if err := check("tank/a"); !errors.Is(err, ErrRefused) {
		t.Errorf("tank/a after SetPools(backup): %v, want refused", err)
	}
	if err := check("backup/a"); err != nil {
		t.Errorf("backup/a after SetPools(backup): %v", err)
	}
	for _, bad := range [][]string{nil, {}, {"tank/a"}, {"bad pool"}, {"backup", "-o"}} {
		if err := srv.SetPools(bad); err == nil {
			t.Errorf("SetPools(%q) accepted", bad)
		}
	}
	if got := srv.Pools(); !slices.Equal(got, []string{"backup"}) {
		t.Errorf("pools after refused changes: %v, want [backup]", got)
	}
}
