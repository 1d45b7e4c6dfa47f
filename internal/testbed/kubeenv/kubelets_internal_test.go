package kubeenv

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestEgressProxy_Connect speaks to the egress proxy as kube-apiserver does
// (CONNECT over the unix socket, then the tunnelled bytes): 503 before a
// dialer is set, 502 when the dial fails, 200 and a working tunnel to the
// address the dialer was asked for; close removes the socket's folder.
func TestEgressProxy_Connect(t *testing.T) {
	dir, err := os.MkdirTemp("", "z8r-egress-test-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "cluster.sock")
	p, err := startEgressProxy(sock)
	if err != nil {
		t.Fatal(err)
	}
	p.dir = dir
	closed := false
	t.Cleanup(func() {
		if !closed {
			p.close()
		}
	})

	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()

	connect := func(target string) (net.Conn, *bufio.Reader, int) {
		t.Helper()
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c, br, res.StatusCode
	}

	c, _, code := connect("10.1.2.3:10250")
	_ = c.Close()
	if code != http.StatusServiceUnavailable {
		t.Errorf("CONNECT before SetClusterDialer: HTTP %d, want 503", code)
	}

	var mu sync.Mutex
	var asked []string
	p.setDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		asked = append(asked, addr)
		mu.Unlock()
		if addr == "10.1.2.3:10250" {
			var d net.Dialer
			return d.DialContext(ctx, network, echo.Addr().String())
		}
		return nil, errors.New("no route")
	})
	c, _, code = connect("10.9.9.9:10250")
	_ = c.Close()
	if code != http.StatusBadGateway {
		t.Errorf("CONNECT to an address the dialer fails: HTTP %d, want 502", code)
	}
	c, br, code := connect("10.1.2.3:10250")
	if code != http.StatusOK {
		t.Fatalf("CONNECT 10.1.2.3:10250: HTTP %d, want 200", code)
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Errorf("through the tunnel: %q, %v; want the echo of ping", line, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 || asked[0] != "10.9.9.9:10250" || asked[1] != "10.1.2.3:10250" {
		t.Errorf("dialer asked for %v, want [10.9.9.9:10250 10.1.2.3:10250]", asked)
	}

	p.close()
	closed = true
	// The tunnel is closed with the proxy.
	if _, err := br.ReadString('\n'); err == nil {
		t.Error("tunnel still open after close")
	}
	_ = c.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("socket folder %s after close: %v, want it removed", dir, err)
	}
}
