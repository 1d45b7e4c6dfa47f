package imagebuild

import (
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// lddDebian12 is `ldd /usr/bin/nsenter` on Debian 12 (amd64).
const lddDebian12 = `	linux-vdso.so.1 (0x00007ffd4a5f2000)
	libselinux.so.1 => /lib/x86_64-linux-gnu/libselinux.so.1 (0x00007fa05c06d000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fa05be8b000)
	libpcre2-8.so.0 => /lib/x86_64-linux-gnu/libpcre2-8.so.0 (0x00007fa05bdf1000)
	/lib64/ld-linux-x86-64.so.2 (0x00007fa05c0b8000)
`

func TestParseLdd_Cases(t *testing.T) {
	for _, tc := range []struct {
		name    string
		out     string
		want    []string
		wantErr error
	}{
		{"debian12 nsenter", lddDebian12, []string{
			"/lib/x86_64-linux-gnu/libselinux.so.1",
			"/lib/x86_64-linux-gnu/libc.so.6",
			"/lib/x86_64-linux-gnu/libpcre2-8.so.0",
			"/lib64/ld-linux-x86-64.so.2",
		}, nil},
		{"arm64 vdso by name", "\tlinux-vdso.so.1 (0x0000ffff)\n\tlibc.so.6 => /lib/aarch64-linux-gnu/libc.so.6 (0x0000ffff)\n\t/lib/ld-linux-aarch64.so.1 (0x0000ffff)\n",
			[]string{"/lib/aarch64-linux-gnu/libc.so.6", "/lib/ld-linux-aarch64.so.1"}, nil},
		{"static", "\tstatically linked\n", nil, nil},
		{"not dynamic", "\tnot a dynamic executable\n", nil, nil},
		{"missing library", "\tlibselinux.so.1 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n", nil, ErrLibraryNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLdd(tc.out)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// fakeRoot builds a merged-/usr tree like Debian 12's under a temporary
// folder: /lib -> usr/lib, /lib64 -> usr/lib64, an absolute link to the
// loader, a relative versioned library link, a loop and a folder.
func fakeRoot(t *testing.T) string {
	t.Helper()
	r := t.TempDir()
	for _, d := range []string{"usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]os.FileMode{
		"usr/bin/nsenter":                               0o755,
		"usr/lib/x86_64-linux-gnu/libc.so.6":            0o755,
		"usr/lib/x86_64-linux-gnu/libpcre2-8.so.0.11.2": 0o644,
		"usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2": 0o755,
		"usr/lib/x86_64-linux-gnu/private-0600":         0o600,
	}
	for f, m := range files {
		if err := os.WriteFile(filepath.Join(r, f), []byte(f), m); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"lib":                            "usr/lib",
		"lib64":                          "usr/lib64",
		"usr/lib64/ld-linux-x86-64.so.2": "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"usr/lib/x86_64-linux-gnu/libpcre2-8.so.0": "libpcre2-8.so.0.11.2",
		"usr/lib/x86_64-linux-gnu/up":              "../../bin/nsenter",
		"usr/lib/loop-a":                           "loop-b",
		"usr/lib/loop-b":                           "loop-a",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(r, l)); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestResolveHostPath_Cases(t *testing.T) {
	r := fakeRoot(t)
	link := func(p, target string) Entry { return Entry{Path: p, Type: Symlink, Linkname: target} }
	file := func(p string, mode int64) Entry {
		return Entry{Path: p, Type: File, Mode: mode, Source: filepath.Join(r, p)}
	}
	for _, tc := range []struct {
		path    string
		want    []Entry
		wantErr bool
	}{
		{"/usr/bin/nsenter", []Entry{file("/usr/bin/nsenter", 0o755)}, false},
		{"/lib/x86_64-linux-gnu/libc.so.6", []Entry{
			link("/lib", "usr/lib"),
			file("/usr/lib/x86_64-linux-gnu/libc.so.6", 0o755),
		}, false},
		{"/lib64/ld-linux-x86-64.so.2", []Entry{
			link("/lib64", "usr/lib64"),
			link("/usr/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
			link("/lib", "usr/lib"),
			file("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", 0o755),
		}, false},
		{"/lib/x86_64-linux-gnu/libpcre2-8.so.0", []Entry{
			link("/lib", "usr/lib"),
			link("/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0", "libpcre2-8.so.0.11.2"),
			file("/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0.11.2", 0o644),
		}, false},
		{"/usr/lib/x86_64-linux-gnu/up", []Entry{
			link("/usr/lib/x86_64-linux-gnu/up", "../../bin/nsenter"),
			file("/usr/bin/nsenter", 0o755),
		}, false},
		{"/usr/lib/x86_64-linux-gnu/private-0600", []Entry{file("/usr/lib/x86_64-linux-gnu/private-0600", 0o644)}, false},
		{"/usr/lib/loop-a", nil, true},
		{"/usr/lib", nil, true},
		{"/usr/bin/nsenter/x", nil, true},
		{"/usr/bin/missing", nil, true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			got, err := resolveHostPath(r, tc.path)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("resolved to %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestHostEntries_Nsenter: on this (Debian) machine, nsenter comes with
// libc and its program interpreter, reached through the host's own links.
func TestHostEntries_Nsenter(t *testing.T) {
	es, err := HostEntries(t.Context(), []string{"/usr/bin/nsenter"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open("/usr/bin/nsenter")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	interp := programInterpreter(t, f)
	var files, paths []string
	for _, e := range es {
		paths = append(paths, e.Path)
		if e.Type == File {
			files = append(files, filepath.Base(e.Path))
		}
	}
	for _, want := range []string{"nsenter", "libc.so.6", filepath.Base(interp)} {
		if !slices.Contains(files, want) {
			t.Errorf("files %q: no %s", files, want)
		}
	}
	if !slices.Contains(paths, filepath.Dir(interp)) && !slices.Contains(paths, interp) {
		t.Errorf("entries %q: nothing makes %s resolve", paths, interp)
	}
}

func programInterpreter(t *testing.T, f *elf.File) string {
	t.Helper()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				t.Fatal(err)
			}
			return strings.TrimRight(string(b), "\x00")
		}
	}
	t.Fatal("no PT_INTERP")
	return ""
}
