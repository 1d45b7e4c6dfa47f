package manifests

import (
	"maps"
	"strings"
	"testing"
)

func TestParseDockerfile_Labels(t *testing.T) {
	for _, tc := range []struct {
		name    string
		src     string
		want    map[string]string
		wantErr bool
	}{
		{"quoted, continued, unexpanded", "FROM scratch AS a\nLABEL a.b=\"x y\" \\\n      c=\"${VERSION}\"\nLABEL d=plain e=\"q\\\"uote\"\n",
			map[string]string{"a.b": "x y", "c": "${VERSION}", "d": "plain", "e": `q"uote`}, false},
		{"value with =", "FROM scratch\nLABEL k=\"a=b\"\n", map[string]string{"k": "a=b"}, false},
		{"no labels", "FROM scratch\n", nil, false},
		{"not key=value", "FROM scratch\nLABEL justakey\n", nil, true},
		{"unterminated quote", "FROM scratch\nLABEL k=\"open\n", nil, true},
		{"empty", "FROM scratch\nLABEL \"\"\n", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDockerfile(strings.NewReader(tc.src))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parsed labels %v, want an error", d.Stages[0].Labels)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Stages[0].Labels; !maps.Equal(got, tc.want) {
				t.Errorf("labels %v, want %v", got, tc.want)
			}
		})
	}
}
