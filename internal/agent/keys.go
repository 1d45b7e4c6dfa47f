package agent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// LoadOrCreateKey reads an OpenSSH private key from path, or creates an
// ed25519 key there (mode 0600, parent folders 0700) when none exists. The
// agent's host key lives on the node (a host path) so it survives restarts.
func LoadOrCreateKey(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("agent: parse key %s: %w", path, err)
		}
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("agent: read key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("agent: generate key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "z8r")
	if err != nil {
		return nil, fmt.Errorf("agent: marshal key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("agent: key folder: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("agent: write key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("agent: write key: %w", err)
	}
	return ssh.NewSignerFromKey(priv)
}

// LoadKey reads an existing OpenSSH private key.
func LoadKey(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent: read key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("agent: parse key %s: %w", path, err)
	}
	return s, nil
}

// ParseAuthorizedKeys parses authorized_keys content: one key per line,
// comments (#) and blank lines allowed. The agent honours no
// authorized_keys option (from=, command=, no-pty, expiry-time=, ...), so
// a line carrying any is refused with an error naming the line instead of
// being accepted without its restriction; so is any line that does not
// parse. The caller then admits nobody (fail closed).
func ParseAuthorizedKeys(b []byte) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for i, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		k, _, options, rest, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("agent: authorized keys line %d: %w", i+1, err)
		}
		if len(options) > 0 {
			return nil, fmt.Errorf("agent: authorized keys line %d: %w: %s", i+1, ErrKeyOptions, strings.Join(options, ","))
		}
		if len(bytes.TrimSpace(rest)) > 0 {
			return nil, fmt.Errorf("agent: authorized keys line %d: trailing data", i+1)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// ErrKeyOptions: an authorized_keys line carries options, which the agent
// does not honour.
var ErrKeyOptions = errors.New("options are not supported (the agent would not enforce them): remove them")

// AuthorizedKeysFile returns a loader that re-reads path on every call, so
// a rotated Secret mounted there applies to the next login. Every file in
// a folder path is read (a Secret with several keys mounts as a folder).
func AuthorizedKeysFile(path string) func() ([]ssh.PublicKey, error) {
	return func() ([]ssh.PublicKey, error) {
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("agent: authorized keys: %w", err)
		}
		files := []string{path}
		if st.IsDir() {
			entries, err := os.ReadDir(path)
			if err != nil {
				return nil, fmt.Errorf("agent: authorized keys: %w", err)
			}
			files = files[:0]
			for _, e := range entries {
				if !e.IsDir() && e.Name()[0] != '.' {
					files = append(files, filepath.Join(path, e.Name()))
				}
			}
		}
		var keys []ssh.PublicKey
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("agent: authorized keys: %w", err)
			}
			k, err := ParseAuthorizedKeys(b)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			keys = append(keys, k...)
		}
		return keys, nil
	}
}

// MarshalPublicKey renders a key in authorized_keys format without the
// trailing newline.
func MarshalPublicKey(k ssh.PublicKey) string {
	b := ssh.MarshalAuthorizedKey(k)
	return string(b[:len(b)-1])
}
