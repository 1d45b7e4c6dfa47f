package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/z8r-project/z8r/zfsexec"
)

// TestClient_OneDataTicketPerChannel: an agent (here a hostile one) that
// sends a second data ticket on a channel does not get the stream twice:
// the client ends the request with ErrProtocol, and at most one data
// connection arrives.
func TestClient_OneDataTicketPerChannel(t *testing.T) {
	key, host := newSigner(t), newSigner(t)
	data, err := newDataServer()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(host)
	arrived := make(chan int, 1)
	hostile := func(ch ssh.Channel) {
		t1, wait1, _ := data.ticket()
		t2, wait2, _ := data.ticket()
		_, _ = ch.SendRequest(reqDataTicket, false, mustJSON(t1))
		_, _ = ch.SendRequest(reqDataTicket, false, mustJSON(t2))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n := 0
		for _, wait := range []func(context.Context) (net.Conn, bool, error){wait1, wait2} {
			if dc, _, err := wait(ctx); err == nil {
				n++
				_, _ = io.Copy(io.Discard, dc)
				_ = dc.Close()
			}
		}
		arrived <- n
		finish(ch, exitStatus{})
	}
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				c, kind, err := sniff(nc)
				switch {
				case err != nil:
					_ = nc.Close()
					return
				case kind == kindTLS:
					data.serve(c, func() {})
					return
				}
				_, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					return
				}
				go ssh.DiscardRequests(reqs)
				for nch := range chans {
					ch, creqs, err := nch.Accept()
					if err != nil {
						continue
					}
					go ssh.DiscardRequests(creqs)
					go hostile(ch)
				}
			}()
		}
	}()
	ctx := context.Background()
	c, err := Dial(ctx, l.Addr().String(), ClientConfig{Signer: key, HostKey: host.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Runner().Run(ctx, zfsexec.Command{Argv: []string{"zfs", "recv", "-u", "tank/a"}, Stdin: strings.NewReader("stream")})
	if !errors.Is(err, ErrProtocol) {
		t.Errorf("got %v, want ErrProtocol", err)
	}
	select {
	case n := <-arrived:
		if n > 1 {
			t.Errorf("%d data connections arrived for one channel", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the hostile agent never finished")
	}
}
