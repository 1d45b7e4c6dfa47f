package cli

import (
	"crypto/ed25519"
	"encoding/pem"
	"fmt"
	"io"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The key Secrets the manifests in deploy/ mount, and their keys.
const (
	// DefaultNamespace is where deploy/ installs z8r.
	DefaultNamespace = "z8r-system"

	// SecretControllerKey holds the controller's SSH client key
	// (mounted at /etc/z8r/controller-key).
	SecretControllerKey = "z8r-controller-key"
	// SecretAgentAuthorizedKeys holds the public keys agents accept with
	// full authority, and whose transfer grants they honour: the
	// controller's (mounted at /etc/z8r/authorized-keys, every file is
	// read). No private key is shared by the agents: each node's identity
	// is its own host key, generated on the node.
	SecretAgentAuthorizedKeys = "z8r-agent-authorized-keys"

	// KeyPrivate and KeyPublic are the keys of SecretControllerKey.
	KeyPrivate = "id_ed25519"
	KeyPublic  = "id_ed25519.pub"
	// KeyAuthorizedController is the file of SecretAgentAuthorizedKeys.
	KeyAuthorizedController = "controller.pub"
)

// KeySecrets generates the controller key (ed25519, from random) and
// returns the two Secrets deploy/ expects in namespace:
// SecretControllerKey and SecretAgentAuthorizedKeys.
func KeySecrets(namespace string, random io.Reader) ([]*corev1.Secret, error) {
	ctrlPriv, ctrlPub, err := newKey(random, "z8r-controller")
	if err != nil {
		return nil, err
	}
	secret := func(name, component string, data map[string][]byte) *corev1.Secret {
		return &corev1.Secret{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace,
				Labels: map[string]string{"app.kubernetes.io/name": "z8r", "app.kubernetes.io/component": component}},
			Type: corev1.SecretTypeOpaque,
			Data: data,
		}
	}
	return []*corev1.Secret{
		secret(SecretControllerKey, "controller", map[string][]byte{KeyPrivate: ctrlPriv, KeyPublic: ctrlPub}),
		secret(SecretAgentAuthorizedKeys, "agent", map[string][]byte{KeyAuthorizedController: ctrlPub}),
	}, nil
}

// newKey returns an OpenSSH private key (PEM, unencrypted) and its
// authorized_keys line.
func newKey(random io.Reader, comment string) (priv, pub []byte, err error) {
	pk, sk, err := ed25519.GenerateKey(random)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(sk, comment)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pk)
	if err != nil {
		return nil, nil, fmt.Errorf("public key: %w", err)
	}
	line := ssh.MarshalAuthorizedKey(sshPub) // ends in "\n"
	line = append(line[:len(line)-1], []byte(" "+comment+"\n")...)
	return pem.EncodeToMemory(block), line, nil
}
