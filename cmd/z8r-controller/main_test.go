package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCheckCertDir_Cases(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	half := filepath.Join(dir, "half")
	for _, d := range []string{full, half} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(full, "tls.crt"), filepath.Join(full, "tls.key"), filepath.Join(half, "tls.crt")} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		dir     string
		wantErr bool
	}{
		{"empty: self-signed", "", false},
		{"certificate and key", full, false},
		{"key missing", half, true},
		{"folder missing", filepath.Join(dir, "nope"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkCertDir(tc.dir); (err != nil) != tc.wantErr {
				t.Errorf("checkCertDir(%q) = %v, want error %v", tc.dir, err, tc.wantErr)
			}
		})
	}
}
