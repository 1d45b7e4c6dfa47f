package imagebuild

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The index annotations that name an image: containerd's (the full
// reference, used by ctr import) and OCI's (the tag, as docker save
// writes it).
const (
	AnnotationImageName = "io.containerd.image.name"
	AnnotationRefName   = "org.opencontainers.image.ref.name"
)

// WriteArchive writes img, named ref, as one tar stream holding an OCI
// image layout and a Docker manifest.json that name the same blobs. Every
// entry is sorted, owned by 0:0 and dated at epoch.
func WriteArchive(w io.Writer, img v1.Image, ref name.Tag, epoch time.Time) error {
	blobs := map[string][]byte{} // digest hex -> bytes
	add := func(h v1.Hash, b []byte) string {
		blobs[h.Hex] = b
		return "blobs/" + h.Algorithm + "/" + h.Hex
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("archive: config: %w", err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("archive: config digest: %w", err)
	}
	docker := tarball.Descriptor{Config: add(cfgName, rawCfg), RepoTags: []string{ref.String()}}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("archive: layers: %w", err)
	}
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return fmt.Errorf("archive: layer %d: %w", i, err)
		}
		b, err := readAll(l.Compressed)
		if err != nil {
			return fmt.Errorf("archive: layer %d: %w", i, err)
		}
		docker.Layers = append(docker.Layers, add(d, b))
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("archive: manifest: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return fmt.Errorf("archive: manifest media type: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("archive: manifest digest: %w", err)
	}
	add(digest, rawManifest)
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("archive: config: %w", err)
	}
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: mt,
			Size:      int64(len(rawManifest)),
			Digest:    digest,
			Annotations: map[string]string{
				AnnotationImageName: ref.String(),
				AnnotationRefName:   ref.TagStr(),
			},
			Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture},
		}},
	}
	files := map[string][]byte{}
	if files["index.json"], err = json.Marshal(index); err != nil {
		return fmt.Errorf("archive: index.json: %w", err)
	}
	if files["manifest.json"], err = json.Marshal(tarball.Manifest{docker}); err != nil {
		return fmt.Errorf("archive: manifest.json: %w", err)
	}
	files["oci-layout"] = []byte(`{"imageLayoutVersion":"1.0.0"}`)
	for hex, b := range blobs {
		files["blobs/sha256/"+hex] = b
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return fmt.Errorf("archive: %s: %w", dir, err)
		}
	}
	for _, n := range names {
		b := files[n]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return fmt.Errorf("archive: %s: %w", n, err)
		}
		if _, err := tw.Write(b); err != nil {
			return fmt.Errorf("archive: %s: %w", n, err)
		}
	}
	return tw.Close()
}

func readAll(open func() (io.ReadCloser, error)) ([]byte, error) {
	rc, err := open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
