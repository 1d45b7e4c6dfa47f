// Package tb is the part of testing.TB the test beds use, so the same
// test beds serve Go tests (pass the *testing.T) and the demo program (pass
// a *Program).
package tb

import (
	"fmt"
	"os"
	"sync"
)

// TB is implemented by *testing.T, *testing.B and *Program.
type TB interface {
	Helper()
	Cleanup(func())
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
	Failed() bool
}

// Program is a TB for a long-running program: cleanups run (last first)
// on Close or on Fatal, which then exits.
type Program struct {
	mu       sync.Mutex
	cleanups []func()
	failed   bool
	dirs     []string
}

var _ TB = (*Program)(nil)

// Helper implements TB.
func (p *Program) Helper() {}

// Cleanup implements TB.
func (p *Program) Cleanup(f func()) {
	p.mu.Lock()
	p.cleanups = append(p.cleanups, f)
	p.mu.Unlock()
}

// Close runs the cleanups, newest first.
func (p *Program) Close() {
	for {
		p.mu.Lock()
		if len(p.cleanups) == 0 {
			p.mu.Unlock()
			break
		}
		f := p.cleanups[len(p.cleanups)-1]
		p.cleanups = p.cleanups[:len(p.cleanups)-1]
		p.mu.Unlock()
		f()
	}
	for _, d := range p.dirs {
		_ = os.RemoveAll(d)
	}
}

// Fatal implements TB: print, clean up, exit 1.
func (p *Program) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"FATAL:"}, args...)...)
	p.failed = true
	p.Close()
	os.Exit(1)
}

// Fatalf implements TB.
func (p *Program) Fatalf(format string, args ...any) { p.Fatal(fmt.Sprintf(format, args...)) }

// Errorf implements TB.
func (p *Program) Errorf(format string, args ...any) {
	p.failed = true
	fmt.Fprintf(os.Stderr, "ERROR: "+format+"\n", args...)
}

// Logf implements TB.
func (p *Program) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// TempDir implements TB.
func (p *Program) TempDir() string {
	d, err := os.MkdirTemp("", "z8r-demo")
	if err != nil {
		p.Fatal(err)
	}
	p.mu.Lock()
	p.dirs = append(p.dirs, d)
	p.mu.Unlock()
	return d
}

// Failed implements TB.
func (p *Program) Failed() bool { return p.failed }
