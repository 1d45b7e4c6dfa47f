// Command guestexec is the exec server of the OpenZFS test guest. The guest's
// init (hack/ozguest/guest/ozinit) starts it from the host's 9p share; the host
// side is package ozguest.
//
// It speaks SSH (golang.org/x/crypto/ssh) on a virtio-serial port and,
// optionally, on TCP. Each command is one "session" channel whose "exec"
// request carries the argv as a JSON array of strings: no shell is involved.
// The channel carries stdin, stdout and stderr; the server replies
// "exit-status" (128+signal when the process was killed by a signal, 127 when
// it could not be started, with the reason on stderr).
//
// Requests on a session after exec:
//   - "signal" KILL (or any other name): the process group is killed with
//     SIGKILL; the host sends it when its context is cancelled.
//   - "signal" PIPE: the server stops reading the process's stdout and closes
//     it, so the process sees a broken pipe, as it would locally when the
//     reader of its output went away.
//
// Closing the channel, or losing the connection, kills the process group.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Config is written by the host into the share as guestexec.json.
type Config struct {
	// HostKey is the path of the server's private key (PEM).
	HostKey string `json:"hostKey"`
	// AuthorizedKey is the path of the one client public key allowed
	// (authorized_keys format).
	AuthorizedKey string `json:"authorizedKey"`
	// SerialPort is the name of the virtio-serial port to serve on ("" for none).
	SerialPort string `json:"serialPort,omitempty"`
	// TCPListen is the TCP address to serve on ("" for none).
	TCPListen string `json:"tcpListen,omitempty"`
	// Banner is written as one line on every connection before the SSH
	// version line, so the host knows the server is there before it writes
	// anything.
	Banner string `json:"banner"`
}

func main() {
	log.SetPrefix("guestexec: ")
	log.SetFlags(0)
	configPath := flag.String("config", "/mnt/z8r/guestexec.json", "configuration file")
	flag.Parse()
	if err := run(*configPath); err != nil {
		log.Fatal(err)
	}
}

func run(configPath string) error {
	raw, err := os.ReadFile(configPath)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("parse config %s: %w", configPath, err)
	}
	sc, err := serverConfig(cfg)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	if cfg.TCPListen != "" {
		l, err := net.Listen("tcp", cfg.TCPListen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", cfg.TCPListen, err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					errc <- fmt.Errorf("accept: %w", err)
					return
				}
				go serveConn(c, cfg.Banner, sc)
			}
		}()
	}
	if cfg.SerialPort != "" {
		dev, err := findPort(cfg.SerialPort)
		if err != nil {
			return err
		}
		go func() {
			for {
				// One connection at a time; reopen after the host hangs up.
				if err := serveSerial(dev, cfg.Banner, sc); err != nil {
					log.Printf("serial %s: %v", dev, err)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	log.Printf("serving (serial %q, tcp %q)", cfg.SerialPort, cfg.TCPListen)
	return <-errc
}

func serverConfig(cfg Config) (*ssh.ServerConfig, error) {
	pemBytes, err := os.ReadFile(cfg.HostKey)
	if err != nil {
		return nil, fmt.Errorf("read host key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("parse host key: %w", err)
	}
	authBytes, err := os.ReadFile(cfg.AuthorizedKey)
	if err != nil {
		return nil, fmt.Errorf("read authorized key: %w", err)
	}
	allowed, _, _, _, err := ssh.ParseAuthorizedKey(authBytes)
	if err != nil {
		return nil, fmt.Errorf("parse authorized key: %w", err)
	}
	sc := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), allowed.Marshal()) {
				return &ssh.Permissions{}, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	sc.AddHostKey(signer)
	return sc, nil
}

// findPort returns the device of the virtio-serial port with the given name.
func findPort(name string) (string, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err == nil && strings.TrimSpace(string(b)) == name {
				return "/dev/" + filepath.Base(filepath.Dir(n)), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio-serial port named %q", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func serveSerial(dev, banner string, sc *ssh.ServerConfig) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	serveConn(fileConn{f}, banner, sc)
	return nil
}

func serveConn(c net.Conn, banner string, sc *ssh.ServerConfig) {
	defer c.Close()
	if _, err := io.WriteString(c, banner+"\n"); err != nil {
		log.Printf("write banner: %v", err)
		return
	}
	conn, chans, reqs, err := ssh.NewServerConn(c, sc)
	if err != nil {
		log.Printf("handshake: %v", err)
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			log.Printf("accept channel: %v", err)
			continue
		}
		go serveSession(ch, creqs)
	}
}

type execMsg struct{ Command string }
type signalMsg struct{ Signal string }
type exitStatusMsg struct{ Status uint32 }

func serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	var p *proc
	for req := range reqs {
		switch {
		case req.Type == "exec" && p == nil:
			var m execMsg
			var argv []string
			if err := ssh.Unmarshal(req.Payload, &m); err != nil || json.Unmarshal([]byte(m.Command), &argv) != nil || len(argv) == 0 {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			p = start(ch, argv)
			go func() {
				status := p.wait()
				// EOF ends stdout and stderr alike, so it goes only after
				// both are drained (wait covers both).
				ch.CloseWrite()
				ch.SendRequest("exit-status", false, ssh.Marshal(exitStatusMsg{status}))
				ch.Close()
			}()
		case req.Type == "signal" && p != nil:
			var m signalMsg
			if ssh.Unmarshal(req.Payload, &m) == nil && m.Signal == "PIPE" {
				p.breakStdout()
			} else {
				p.kill()
			}
			if req.WantReply {
				req.Reply(true, nil)
			}
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
	// The host closed the channel or the connection is gone.
	if p != nil {
		p.kill()
	}
}

// proc is one running command.
type proc struct {
	cmd      *exec.Cmd
	started  bool
	stdout   *os.File // read end of the process's stdout pipe
	outDone  chan struct{}
	pipeOnce sync.Once
	exitCode uint32
}

func start(ch ssh.Channel, argv []string) *proc {
	p := &proc{outDone: make(chan struct{})}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = ch.Stderr()
	p.cmd = cmd
	fail := func(err error) *proc {
		fmt.Fprintf(ch.Stderr(), "guestexec: %s: %v\n", argv[0], err)
		p.exitCode = 127
		close(p.outDone)
		return p
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fail(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	cmd.Stdout = outW
	if err := cmd.Start(); err != nil {
		outR.Close()
		outW.Close()
		return fail(err)
	}
	outW.Close()
	p.started = true
	p.stdout = outR
	// stdin: copy until the host closes its side, then close the pipe. The
	// process may exit first; the copy then fails and ends.
	go func() {
		io.Copy(stdin, ch)
		stdin.Close()
	}()
	go func() {
		defer close(p.outDone)
		w := bufio.NewWriterSize(ch, 256<<10)
		io.CopyBuffer(w, outR, make([]byte, 256<<10))
		w.Flush()
	}()
	return p
}

// wait waits for the process, its stdout and its stderr (os/exec copies
// stderr to the channel and Wait waits for that copy) and returns the exit
// status.
func (p *proc) wait() uint32 {
	if !p.started {
		return p.exitCode
	}
	err := p.cmd.Wait()
	<-p.outDone
	p.stdout.Close()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + uint32(ws.Signal())
		}
		return uint32(ee.ExitCode())
	}
	return 255
}

func (p *proc) kill() {
	if p.started && p.cmd.Process != nil {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// breakStdout closes the read end of the process's stdout, so its next write
// fails with EPIPE (or SIGPIPE).
func (p *proc) breakStdout() {
	if p.started {
		p.pipeOnce.Do(func() { p.stdout.Close() })
	}
}

// fileConn adapts the serial port device to net.Conn for the SSH server.
type fileConn struct{ *os.File }

func (fileConn) LocalAddr() net.Addr  { return serialAddr{} }
func (fileConn) RemoteAddr() net.Addr { return serialAddr{} }

type serialAddr struct{}

func (serialAddr) Network() string { return "virtio-serial" }
func (serialAddr) String() string  { return "host" }
