package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// EnvVar names the environment variable that arms failpoints.
const EnvVar = "Z8R_FAILPOINTS"

var (
	once  sync.Once
	mu    sync.Mutex
	armed map[string]int // name -> hit count at which to fire
	hits  map[string]int
)

func load() {
	armed, hits = Parse(os.Getenv(EnvVar)), map[string]int{}
}

// Parse reads a Z8R_FAILPOINTS value: name or name=N, comma-separated.
// Malformed entries are ignored (a typo arms nothing).
func Parse(v string) map[string]int {
	out := map[string]int{}
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		name, n := e, 1
		if k, val, ok := strings.Cut(e, "="); ok {
			c, err := strconv.Atoi(val)
			if err != nil || c < 1 {
				continue
			}
			name, n = k, c
		}
		out[name] = n
	}
	return out
}

// Hit marks that the process reached the point name, and crashes it if
// the point is armed for this hit.
func Hit(name string) {
	once.Do(load)
	if len(armed) == 0 {
		return
	}
	mu.Lock()
	want, ok := armed[name]
	if ok {
		hits[name]++
		ok = hits[name] == want
	}
	mu.Unlock()
	if !ok {
		return
	}
	fmt.Fprintf(os.Stderr, "z8r failpoint: %s\n", name)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}
