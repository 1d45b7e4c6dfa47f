// Command pause is the test bed's pause image and the init (PID 1) of each
// simulated kubelet node's PID namespace: it reaps every child that is
// reparented to it and exits 0 on SIGTERM or SIGINT. It is the Go
// equivalent of Kubernetes' pause container (build/pause/linux/pause.c),
// built static (CGO_ENABLED=0) so that an image needs nothing else.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
