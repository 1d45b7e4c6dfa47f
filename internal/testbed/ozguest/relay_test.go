//go:build platform

package ozguest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRelay_Contract runs commands in a guest through ozexec, as an agent's
// --zfs-prefix does: stdin and stdout stream, stderr and the exit code come
// back as they were, and killing ozexec kills the command in the guest.
func TestRelay_Contract(t *testing.T) {
	g := Boot(t, Options{Disks: 1})
	prefix := StartRelay(t, g).Prefix()
	ozexec := func(argv ...string) *exec.Cmd {
		full := append(append([]string{}, prefix...), argv...)
		return exec.Command(full[0], full[1:]...)
	}

	t.Run("streams stdin to stdout", func(t *testing.T) {
		in := make([]byte, 4<<20)
		rand.Read(in)
		cmd := ozexec("cat")
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.Output()
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("cat through the relay: %v, %d bytes back of %d", err, len(out), len(in))
		}
	})
	t.Run("exit code and stderr", func(t *testing.T) {
		cmd := ozexec("zfs", "get", "-Hp", "guid", "nopool/nope")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "dataset does not exist") {
			t.Fatalf("err %v, stderr %q; want exit 1 with zfs's message", err, stderr.String())
		}
	})
	t.Run("no program", func(t *testing.T) {
		err := ozexec("/nonexistent").Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 127 {
			t.Fatalf("err %v, want exit 127", err)
		}
	})
	t.Run("killing ozexec kills the command", func(t *testing.T) {
		cmd := ozexec("sleep", "300")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if ozexec("pgrep", "-x", "sleep").Run() == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("sleep never started in the guest")
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if ozexec("pgrep", "-x", "sleep").Run() != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("sleep still runs in the guest after ozexec was killed")
			}
		}
	})
}
