package imagebuild

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// ErrLibraryNotFound is returned when ldd cannot find a library a host
// file needs.
var ErrLibraryNotFound = errors.New("shared library not found")

// ParseLdd returns the paths of the shared objects in ldd's output, the
// dynamic loader included, in order. The kernel's vDSO (no path) is left
// out; a statically linked file gives none; a library ldd could not find
// is an error wrapping ErrLibraryNotFound.
func ParseLdd(out string) ([]string, error) {
	var paths []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "", strings.Contains(line, "statically linked"), strings.Contains(line, "not a dynamic executable"):
			continue
		}
		name, target, arrow := strings.Cut(line, "=>")
		if arrow {
			target = strings.TrimSpace(target)
			if strings.HasPrefix(target, "not found") {
				return nil, fmt.Errorf("%w: %s", ErrLibraryNotFound, strings.TrimSpace(name))
			}
		} else {
			target = line
		}
		// "PATH (0xADDRESS)", or "(0xADDRESS)" alone for a vDSO reached by name.
		p, _, _ := strings.Cut(target, " (")
		p = strings.TrimSpace(p)
		if !strings.HasPrefix(p, "/") {
			if arrow {
				return nil, fmt.Errorf("ldd line %q: want NAME => /PATH (ADDRESS)", line)
			}
			continue // linux-vdso.so.1 (0x...)
		}
		paths = append(paths, p)
	}
	return paths, sc.Err()
}

// lddPaths runs ldd on file (a path on the running system) and returns the
// shared objects it loads.
func lddPaths(ctx context.Context, file string) ([]string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ldd", file)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if err := cmd.Run(); err != nil {
		// ldd exits 1 for a static file ("not a dynamic executable").
		if strings.Contains(stdout.String()+stderr.String(), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %w: %s", file, err, strings.TrimSpace(stderr.String()))
	}
	return ParseLdd(stdout.String())
}

// maxLinks bounds the symbolic links followed while resolving one path.
const maxLinks = 40

// resolveHostPath walks p (absolute, inside root) component by component
// and returns the entries that make it resolve the same inside an image:
// every symbolic link met on the way (as written on the host) and the
// regular file it ends at.
func resolveHostPath(root, p string) ([]Entry, error) {
	var out []Entry
	links := 0
	pending := strings.Split(strings.Trim(path.Clean(p), "/"), "/")
	cur := "/"
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		host := filepath.Join(root, filepath.FromSlash(next))
		fi, err := os.Lstat(host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", p, err)
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			links++
			if links > maxLinks {
				return nil, fmt.Errorf("resolve %s: more than %d symbolic links", p, maxLinks)
			}
			target, err := os.Readlink(host)
			if err != nil {
				return nil, fmt.Errorf("resolve %s: %w", p, err)
			}
			out = append(out, Entry{Path: next, Type: Symlink, Linkname: target})
			if path.IsAbs(target) {
				cur = "/"
			}
			pending = append(strings.Split(target, "/"), pending...)
		case fi.IsDir():
			if len(pending) == 0 {
				return nil, fmt.Errorf("resolve %s: %s is a folder, want a file", p, next)
			}
			cur = next
		case fi.Mode().IsRegular():
			if len(pending) > 0 {
				return nil, fmt.Errorf("resolve %s: %s is a file, not a folder", p, next)
			}
			out = append(out, Entry{Path: next, Type: File, Source: host, Mode: fileMode(fi)})
			cur = next
		default:
			return nil, fmt.Errorf("resolve %s: %s is a %s, want a file, folder or symbolic link", p, next, fi.Mode().Type())
		}
	}
	if len(out) == 0 || out[len(out)-1].Type != File {
		return nil, fmt.Errorf("resolve %s: does not end at a file", p)
	}
	return out, nil
}

// fileMode is the fixed mode an image gives a host file: 0755 when the
// host lets anyone execute it, 0644 otherwise.
func fileMode(fi fs.FileInfo) int64 {
	if fi.Mode().Perm()&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

// HostEntries returns the entries that put each of files (absolute paths
// on the running system) into an image at the same path, with every shared
// object ldd says it loads.
func HostEntries(ctx context.Context, files []string) ([]Entry, error) {
	var all []Entry
	for _, f := range files {
		libs, err := lddPaths(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, p := range append([]string{f}, libs...) {
			es, err := resolveHostPath("/", p)
			if err != nil {
				return nil, err
			}
			all = append(all, es...)
		}
	}
	return all, nil
}
