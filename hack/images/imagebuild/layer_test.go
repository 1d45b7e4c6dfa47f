package imagebuild

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

type tarEntry struct {
	name     string
	typ      byte
	mode     int64
	linkname string
	body     string
}

func readTar(t *testing.T, b []byte, epoch time.Time) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want 0:0 and no names", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(epoch) || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: times %v %v %v, want only the modification time, at %v", h.Name, h.ModTime, h.AccessTime, h.ChangeTime, epoch)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{h.Name, h.Typeflag, h.Mode, h.Linkname, string(body)})
	}
}

func TestLayerTar_SortedFixedOwnersTimesModes(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	lib := filepath.Join(dir, "lib")
	if err := os.WriteFile(bin, []byte("ELF"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lib, []byte("so"), 0o600); err != nil {
		t.Fatal(err)
	}
	entries := []Entry{
		{Path: "/z8r-agent", Type: File, Mode: 0o755, Source: bin},
		{Path: "/usr/lib/x86_64-linux-gnu/libc.so.6", Type: File, Mode: 0o644, Source: lib},
		{Path: "/lib", Type: Symlink, Linkname: "usr/lib"},
		{Path: "/usr/lib/x86_64-linux-gnu/libc.so.6", Type: File, Mode: 0o644, Source: lib}, // listed twice, the same
	}
	epoch := time.Unix(1700000000, 0).UTC()
	var first []byte
	for i, order := range [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}} {
		var in []Entry
		for _, j := range order {
			in = append(in, entries[j])
		}
		var buf bytes.Buffer
		if err := LayerTar(&buf, in, epoch); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = buf.Bytes()
			continue
		}
		if !bytes.Equal(buf.Bytes(), first) {
			t.Errorf("order %v gives other bytes than order %v", order, [][]int{{0, 1, 2, 3}})
		}
	}
	want := []tarEntry{
		{"lib", tar.TypeSymlink, 0o777, "usr/lib", ""},
		{"usr/", tar.TypeDir, 0o755, "", ""},
		{"usr/lib/", tar.TypeDir, 0o755, "", ""},
		{"usr/lib/x86_64-linux-gnu/", tar.TypeDir, 0o755, "", ""},
		{"usr/lib/x86_64-linux-gnu/libc.so.6", tar.TypeReg, 0o644, "", "so"},
		{"z8r-agent", tar.TypeReg, 0o755, "", "ELF"},
	}
	if got := readTar(t, first, epoch); !slices.Equal(got, want) {
		t.Errorf("layer\n got %+v\nwant %+v", got, want)
	}
}

func TestLayerTar_Refuses(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		entries []Entry
	}{
		{"relative path", []Entry{{Path: "usr/bin/x", Type: File, Mode: 0o644, Source: f}}},
		{"root", []Entry{{Path: "/", Type: Dir}}},
		{"odd mode", []Entry{{Path: "/x", Type: File, Mode: 0o4755, Source: f}}},
		{"same path, two entries", []Entry{{Path: "/lib", Type: Symlink, Linkname: "usr/lib"}, {Path: "/lib", Type: Symlink, Linkname: "usr/lib64"}}},
		{"a link where a folder is needed", []Entry{{Path: "/lib", Type: Symlink, Linkname: "usr/lib"}, {Path: "/lib/x", Type: File, Mode: 0o644, Source: f}}},
		{"missing source", []Entry{{Path: "/x", Type: File, Mode: 0o644, Source: f + ".missing"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := LayerTar(io.Discard, tc.entries, time.Unix(0, 0)); err == nil {
				t.Error("LayerTar succeeded, want an error")
			}
		})
	}
}
