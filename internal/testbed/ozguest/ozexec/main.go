// Command ozexec runs one command in an OpenZFS test guest from any process
// on the host, through the guest's exec relay (package ozguest, Relay):
//
//	ozexec -socket RELAY.sock -key CLIENT_KEY -host-key RELAY_KEY.pub -- zfs list
//
// It is what a z8r agent on the host gets as its --zfs-prefix, so every zfs
// command the agent starts runs in the guest. The argv travels as JSON (no
// shell); stdin, stdout and stderr stream through; ozexec exits with the
// command's exit code (255 when the relay cannot be reached or the
// connection is lost). When ozexec dies, the relay kills the command in the
// guest.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"

	"golang.org/x/crypto/ssh"
)

func main() {
	sock := flag.String("socket", "", "the relay's unix socket")
	keyPath := flag.String("key", "", "client private key (PEM)")
	hostKeyPath := flag.String("host-key", "", "the relay's public key (authorized_keys format)")
	flag.Parse()
	os.Exit(run(*sock, *keyPath, *hostKeyPath, flag.Args()))
}

func run(sock, keyPath, hostKeyPath string, argv []string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "ozexec: %v\n", err)
		return 255
	}
	if sock == "" || keyPath == "" || hostKeyPath == "" || len(argv) == 0 {
		return fail(errors.New("usage: ozexec -socket S -key K -host-key H -- ARGV..."))
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return fail(err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return fail(err)
	}
	hostKeyText, err := os.ReadFile(hostKeyPath)
	if err != nil {
		return fail(err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey(hostKeyText)
	if err != nil {
		return fail(err)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return fail(err)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, "ozguest-relay", &ssh.ClientConfig{
		User:            "z8r",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
	})
	if err != nil {
		return fail(err)
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		return fail(err)
	}
	cmd, err := json.Marshal(argv)
	if err != nil {
		return fail(err)
	}
	s.Stdin, s.Stdout, s.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = s.Run(string(cmd))
	var exitErr *ssh.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr):
		return exitErr.ExitStatus()
	default:
		return fail(err)
	}
}
