package kubeenv

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process is a running program that an Env started.
type Process struct {
	Name string // base name of the binary, such as "etcd"
	PID  int
}

// Processes lists the live processes of this Env: kube-apiserver, etcd and, if started,
// snapshot-controller and kube-controller-manager. It reads /proc and recognises them by the Env's own folder on
// their command lines, so Envs of parallel tests do not see each other's processes.
func (e *Env) Processes() ([]Process, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	var procs []Process
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		argv, err := cmdline(pid)
		if err != nil || len(argv) == 0 || !containsDir(argv[1:], e.dir) {
			continue
		}
		alive, err := Alive(pid)
		if err != nil || !alive {
			continue
		}
		procs = append(procs, Process{Name: filepath.Base(argv[0]), PID: pid})
	}
	return procs, nil
}

func containsDir(args []string, dir string) bool {
	for _, a := range args {
		if strings.Contains(a, dir+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

func cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil, nil
	}
	return strings.Split(string(b), "\x00"), nil
}

// Alive reports whether pid is a process that has not exited: it exists in /proc and
// is not a zombie waiting to be reaped.
func Alive(pid int) (bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	// The state follows the command name, which is in parentheses and may contain
	// spaces or parentheses itself.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false, fmt.Errorf("parse stat of %d: %q", pid, b)
	}
	state := b[i+2]
	return state != 'Z' && state != 'X', nil
}

// StillRunning returns those of procs that are alive and still run the same binary (a
// reused PID running something else does not count).
func StillRunning(procs []Process) ([]Process, error) {
	var running []Process
	for _, p := range procs {
		alive, err := Alive(p.PID)
		if err != nil {
			return nil, err
		}
		if !alive {
			continue
		}
		argv, err := cmdline(p.PID)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("read cmdline of %d: %w", p.PID, err)
		}
		if len(argv) > 0 && filepath.Base(argv[0]) == p.Name {
			running = append(running, p)
		}
	}
	return running, nil
}
