package imagebuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// EntryType is the kind of an Entry.
type EntryType int

// The kinds of entries a layer holds.
const (
	File EntryType = iota
	Dir
	Symlink
)

// Entry is one file, folder or symbolic link of a layer.
type Entry struct {
	// Path is the absolute path inside the image.
	Path string
	Type EntryType
	// Mode is the permission bits of a File (0755 or 0644); folders are
	// always 0755 and links 0777.
	Mode int64
	// Source is the file whose bytes a File holds.
	Source string
	// Linkname is a Symlink's target, as written.
	Linkname string
}

// LayerTar writes a layer's tar stream: entries plus every parent folder
// they need, sorted by path, each owned by 0:0 and dated at epoch, so the
// same entries always give the same bytes. The same path listed twice must
// be the same entry.
func LayerTar(w io.Writer, entries []Entry, epoch time.Time) error {
	byPath := map[string]Entry{}
	add := func(e Entry) error {
		if old, ok := byPath[e.Path]; ok {
			if old != e {
				return fmt.Errorf("layer: %s listed twice, differently (%+v, %+v)", e.Path, old, e)
			}
			return nil
		}
		byPath[e.Path] = e
		return nil
	}
	for _, e := range entries {
		p := path.Clean(e.Path)
		if !path.IsAbs(p) || p == "/" {
			return fmt.Errorf("layer: entry path %q: want an absolute path below /", e.Path)
		}
		e.Path = p
		if err := add(e); err != nil {
			return err
		}
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if err := add(Entry{Path: d, Type: Dir}); err != nil {
				return err
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	tw := tar.NewWriter(w)
	for _, p := range paths {
		e := byPath[p]
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		var body []byte
		switch e.Type {
		case Dir:
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
		case Symlink:
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, e.Linkname, 0o777
		case File:
			if e.Mode != 0o755 && e.Mode != 0o644 {
				return fmt.Errorf("layer: %s: mode %o, want 0755 or 0644", p, e.Mode)
			}
			b, err := os.ReadFile(e.Source)
			if err != nil {
				return fmt.Errorf("layer: %s: %w", p, err)
			}
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, e.Mode, int64(len(b))
			body = b
		default:
			return fmt.Errorf("layer: %s: unknown entry type %d", p, e.Type)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("layer: %s: %w", p, err)
		}
		if _, err := tw.Write(body); err != nil {
			return fmt.Errorf("layer: %s: %w", p, err)
		}
	}
	return tw.Close()
}

// layerBytes is LayerTar into memory (z8r's layers are a few tens of MB).
func layerBytes(entries []Entry, epoch time.Time) ([]byte, error) {
	var buf bytes.Buffer
	if err := LayerTar(&buf, entries, epoch); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
