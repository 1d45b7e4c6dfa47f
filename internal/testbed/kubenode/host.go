package kubenode

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// KubeletSysctls are the global sysctls kubelet sets at start
// (pkg/kubelet/cm: setupKernelTunables); the test bed restores them.
var KubeletSysctls = []string{
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
}

// StateRoot is the folder holding every node's folder and the saved sysctls.
func StateRoot() string {
	if d := os.Getenv("Z8R_KUBENODE_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "z8r-kubenode")
}

func sysctlFile() string { return filepath.Join(StateRoot(), "sysctls") }

// sysctls counts the running nodes of this process; the first saves the
// values, the last restores them.
var sysctls struct {
	mu    sync.Mutex
	nodes int
}

func readSysctls() (map[string]string, error) {
	vals := map[string]string{}
	for _, k := range KubeletSysctls {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			return nil, fmt.Errorf("read sysctl %s: %w", k, err)
		}
		vals[k] = strings.TrimSpace(string(b))
	}
	return vals, nil
}

// saveSysctls records the sysctls before the first node of this process
// starts. A file left by an earlier run that did not restore is kept: it
// holds the values from before any kubelet ran.
func saveSysctls() error {
	sysctls.mu.Lock()
	defer sysctls.mu.Unlock()
	if sysctls.nodes > 0 {
		sysctls.nodes++
		return nil
	}
	if _, err := os.Stat(sysctlFile()); err != nil {
		vals, err := readSysctls()
		if err != nil {
			return err
		}
		var b strings.Builder
		for _, k := range KubeletSysctls {
			fmt.Fprintf(&b, "%s=%s\n", k, vals[k])
		}
		if err := os.WriteFile(sysctlFile(), []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("save sysctls: %w", err)
		}
	}
	sysctls.nodes++
	return nil
}

// releaseSysctls restores the saved sysctls once the last node of this
// process has stopped.
func releaseSysctls() error {
	sysctls.mu.Lock()
	defer sysctls.mu.Unlock()
	sysctls.nodes--
	if sysctls.nodes > 0 {
		return nil
	}
	return restoreSysctls()
}

// restoreSysctls writes back the values in the saved file and removes it.
func restoreSysctls() error {
	b, err := os.ReadFile(sysctlFile())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore sysctls: %w", err)
	}
	var errs []error
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || !isKubeletSysctl(k) {
			errs = append(errs, fmt.Errorf("restore sysctls: bad line %q in %s", line, sysctlFile()))
			continue
		}
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s: %w", k, err))
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(sysctlFile()); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctls: %w", err))
		}
	}
	return errors.Join(errs...)
}

func isKubeletSysctl(k string) bool {
	for _, s := range KubeletSysctls {
		if s == k {
			return true
		}
	}
	return false
}

// cgroupMounts returns the mount points of every cgroup hierarchy, v1 and
// the unified one (runc creates a container's cgroup in both on a hybrid
// host).
func cgroupMounts() (v1, all []string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, nil, fmt.Errorf("cgroups: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		switch fields[sep+1] {
		case "cgroup":
			v1 = append(v1, fields[4])
			all = append(all, fields[4])
		case "cgroup2":
			all = append(all, fields[4])
		}
	}
	return v1, all, s.Err()
}

// createCgroupRoot creates /name in every cgroup v1 hierarchy, as kubelet
// wants its cgroupRoot to exist in each. A new cpuset cgroup gets its
// parent's cpus and mems, or nothing can join it.
func createCgroupRoot(name string) error {
	v1, _, err := cgroupMounts()
	if err != nil {
		return err
	}
	if len(v1) == 0 {
		return fmt.Errorf("cgroups: no cgroup v1 hierarchy mounted (the kubelet config here is for cgroup v1)")
	}
	for _, m := range v1 {
		dir := filepath.Join(m, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("cgroups: %w", err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			b, err := os.ReadFile(filepath.Join(m, f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				return fmt.Errorf("cgroups: %s: %w", f, err)
			}
		}
	}
	return nil
}

// cgroupDirs lists /name and every cgroup below it in every hierarchy,
// deepest first.
func cgroupDirs(name string) ([]string, error) {
	_, all, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, m := range all {
		root := filepath.Join(m, name)
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs, nil
}

// removeCgroupRoot removes /name and everything below it from every
// hierarchy, retrying while exiting processes still leave their cgroups.
func removeCgroupRoot(name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		dirs, err := cgroupDirs(name)
		if err != nil {
			return err
		}
		var last error
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				last = fmt.Errorf("cgroups: rmdir %s: %w", d, err)
			}
		}
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nsInode returns the inode of /proc/pid/ns/kind, which names the namespace.
func nsInode(pid int, kind string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/proc", strconv.Itoa(pid), "ns", kind), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// processesIn lists the processes (host PIDs, with their names) whose
// namespace of kind is the one with inode ino.
func processesIn(kind string, ino uint64) []string {
	entries, _ := os.ReadDir("/proc")
	var found []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if got, err := nsInode(pid, kind); err == nil && got == ino {
			comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
			found = append(found, fmt.Sprintf("%d (%s)", pid, strings.TrimSpace(string(comm))))
		}
	}
	return found
}

// hostMountsUnder lists the mount points of the test process's mount
// namespace at or below dir.
func hostMountsUnder(dirs ...string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	var found []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		for _, d := range dirs {
			if f[4] == d || strings.HasPrefix(f[4], d+"/") {
				found = append(found, f[4])
			}
		}
	}
	return found, nil
}

// rssKiB returns a process's resident set size in KiB (VmRSS).
func rssKiB(pid int) (int64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for %d", pid)
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// cpuTime returns the user and system CPU time pid has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// Fields after the command's closing parenthesis start at field 3
	// (state); utime and stime are fields 14 and 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var ticks int64
	for _, v := range f[11:13] {
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += t
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// Sweep cleans up after nodes whose owner process died without stopping
// them: the kernel killed their processes with their init, which leaves
// their cgroups, their folder and, when no node of a live process remains,
// the sysctls kubelet changed.
func Sweep() error {
	entries, _ := os.ReadDir(StateRoot())
	var errs []error
	live := false
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(StateRoot(), e.Name())
		b, _ := os.ReadFile(filepath.Join(dir, "owner"))
		owner, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if owner > 0 && alive(owner) {
			live = true
			continue
		}
		if cg, err := os.ReadFile(filepath.Join(dir, "cgroup-root")); err == nil {
			if err := removeCgroupRoot(strings.TrimSpace(string(cg)), 5*time.Second); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if m, _ := hostMountsUnder(dir); len(m) > 0 {
			errs = append(errs, fmt.Errorf("sweep %s: still mounted: %v", dir, m))
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("sweep: %w", err))
		}
	}
	sysctls.mu.Lock()
	mine := sysctls.nodes
	sysctls.mu.Unlock()
	if !live && mine == 0 {
		if err := restoreSysctls(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
