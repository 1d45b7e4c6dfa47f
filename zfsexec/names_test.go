package zfsexec

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateDataset(t *testing.T) {
	long := "tank/" + strings.Repeat("a", 300)
	cases := []struct {
		name string
		ok   bool
	}{
		{"tank", true},
		{"tank/data", true},
		{"tank/a-b_c.d:e", true},
		{"Tank2/x", true},
		{"", false},
		{"tank/a;rm -rf /", false},
		{"-o", false},
		{"tank/@x", false},
		{"tank/data@snap", false},
		{"tank/data#bm", false},
		{"tank//data", false},
		{"tank/", false},
		{"/tank", false},
		{"tank/..", false},
		{"tank/./x", false},
		{"tank/a b", false},
		{"tank/$(id)", false},
		{"tank/a`b`", false},
		{"tank/a%b", false},
		{"mirror0/x", false},
		{"c0/x", false},
		{"1tank", false},
		{long, false},
		{"tank/" + strings.Repeat("a", MaxNameLen-5), true},
		{"tank/" + strings.Repeat("a", MaxNameLen-4), false},
	}
	for _, c := range cases {
		err := ValidateDataset(c.name)
		if (err == nil) != c.ok {
			t.Errorf("ValidateDataset(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateDataset(%q) error %v is not ErrInvalidName", c.name, err)
		}
	}
}

func TestValidateSnapshot(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{"tank/data@z8r-20261126T100000Z", true},
		{"tank@s1", true},
		{"tank/data@", false},
		{"tank/data", false},
		{"tank/@x", false},
		{"tank/data@a@b", false},
		{"tank/data@a/b", false},
		{"tank/data@a;b", false},
		{"@x", false},
		{"tank/data@..", false},
	}
	for _, c := range cases {
		if err := ValidateSnapshot(c.name); (err == nil) != c.ok {
			t.Errorf("ValidateSnapshot(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestValidateBookmark(t *testing.T) {
	for name, ok := range map[string]bool{
		"tank/data#z8r-b": true,
		"tank/data#":      false,
		"tank/data@x":     false,
		"tank/data#a#b":   false,
	} {
		if err := ValidateBookmark(name); (err == nil) != ok {
			t.Errorf("ValidateBookmark(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestValidateTag(t *testing.T) {
	for tag, ok := range map[string]bool{
		"z8r-target-node2": true,
		"":                 false,
		"-r":               false,
		"a b":              false,
		"a;b":              false,
	} {
		if err := ValidateTag(tag); (err == nil) != ok {
			t.Errorf("ValidateTag(%q) = %v, want ok=%v", tag, err, ok)
		}
	}
}

func TestValidateProperty(t *testing.T) {
	for p, ok := range map[string]bool{
		"readonly":      true,
		"z8r.dev:owner": true,
		"Readonly":      false,
		"-o":            false,
		"a=b":           false,
		"":              false,
	} {
		if err := ValidateProperty(p); (err == nil) != ok {
			t.Errorf("ValidateProperty(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}
