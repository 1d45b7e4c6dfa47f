package cli

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/internal/agent"
)

func TestKeySecrets_Shape(t *testing.T) {
	secrets, err := KeySecrets("z8r-test", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]map[string][]byte{}
	for _, s := range secrets {
		if s.Namespace != "z8r-test" || s.Kind != "Secret" || s.APIVersion != "v1" {
			t.Errorf("secret %s: namespace %q, %s %s", s.Name, s.Namespace, s.APIVersion, s.Kind)
		}
		byName[s.Name] = s.Data
	}
	ctrl, auth := byName[SecretControllerKey], byName[SecretAgentAuthorizedKeys]
	if ctrl == nil || auth == nil || len(byName) != 2 {
		t.Fatalf("secrets = %v, want %s, %s", byName, SecretControllerKey, SecretAgentAuthorizedKeys)
	}
	// Agents authorize the controller's key alone: no key shared by nodes.
	if len(auth) != 1 {
		t.Errorf("authorized keys files %v, want only %s", auth, KeyAuthorizedController)
	}
	// Each private key parses as the agent and controller load it, and
	// matches its public key and the authorized key.
	for _, tc := range []struct {
		name       string
		pair       map[string][]byte
		authorized []byte
	}{
		{"controller", ctrl, auth[KeyAuthorizedController]},
	} {
		signer, err := ssh.ParsePrivateKey(tc.pair[KeyPrivate])
		if err != nil {
			t.Fatalf("%s private key: %v", tc.name, err)
		}
		if signer.PublicKey().Type() != ssh.KeyAlgoED25519 {
			t.Errorf("%s key type = %s, want ed25519", tc.name, signer.PublicKey().Type())
		}
		for _, pubBytes := range [][]byte{tc.pair[KeyPublic], tc.authorized} {
			keys, err := agent.ParseAuthorizedKeys(pubBytes)
			if err != nil || len(keys) != 1 {
				t.Fatalf("%s public key %q: %v", tc.name, pubBytes, err)
			}
			if !bytes.Equal(keys[0].Marshal(), signer.PublicKey().Marshal()) {
				t.Errorf("%s public key %q does not match its private key", tc.name, pubBytes)
			}
		}
	}
	if !strings.Contains(string(auth[KeyAuthorizedController]), "z8r-controller") {
		t.Errorf("controller.pub = %q, want the comment z8r-controller", auth[KeyAuthorizedController])
	}
}

func TestKeySecrets_RandomFailure(t *testing.T) {
	if _, err := KeySecrets("ns", bytes.NewReader(nil)); err == nil {
		t.Error("KeySecrets with an empty random source succeeded")
	}
}
