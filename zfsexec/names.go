package zfsexec

import (
	"errors"
	"fmt"
	"strings"
)

// MaxNameLen is the longest dataset, snapshot or bookmark name ZFS accepts
// (ZFS_MAX_DATASET_NAME_LEN is 256 including the terminating NUL).
const MaxNameLen = 255

// ErrInvalidName is matched (errors.Is) by every *NameError.
var ErrInvalidName = errors.New("invalid ZFS name")

// NameError reports a name refused before any command ran.
type NameError struct {
	Name   string
	Reason string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("invalid ZFS name %q: %s", e.Name, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidName) true for a *NameError.
func (e *NameError) Is(target error) bool { return target == ErrInvalidName }

func nameErr(name, format string, args ...any) error {
	return &NameError{Name: name, Reason: fmt.Sprintf(format, args...)}
}

// validComponentChar follows zfs_namecheck.c, minus the space character:
// z8r refuses whitespace in names so that they survive every list syntax
// it accepts (annotations, flags) unambiguously.
func validComponentChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == ':'
}

// reservedPoolPrefixes are names zpool refuses for pools (vdev type words).
var reservedPoolPrefixes = []string{"mirror", "raidz", "draid", "spare", "log"}

// ValidatePool checks a pool name.
func ValidatePool(name string) error {
	if name == "" {
		return nameErr(name, "empty")
	}
	if len(name) > MaxNameLen {
		return nameErr(name, "longer than %d characters", MaxNameLen)
	}
	c := name[0]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return nameErr(name, "a pool name must begin with a letter")
	}
	for _, r := range name {
		if !validComponentChar(r) {
			return nameErr(name, "character %q is not allowed", r)
		}
	}
	for _, p := range reservedPoolPrefixes {
		if strings.HasPrefix(name, p) {
			return nameErr(name, "pool names beginning with %q are reserved", p)
		}
	}
	if len(name) >= 2 && name[0] == 'c' && name[1] >= '0' && name[1] <= '9' {
		return nameErr(name, "pool names like c[0-9]... are reserved")
	}
	return nil
}

// ValidateDataset checks a filesystem or volume name: pool[/component]*.
func ValidateDataset(name string) error {
	if name == "" {
		return nameErr(name, "empty")
	}
	if len(name) > MaxNameLen {
		return nameErr(name, "longer than %d characters", MaxNameLen)
	}
	if strings.ContainsAny(name, "@#") {
		return nameErr(name, "a dataset name cannot contain '@' or '#'")
	}
	parts := strings.Split(name, "/")
	if err := ValidatePool(parts[0]); err != nil {
		return nameErr(name, "pool: %s", err.(*NameError).Reason)
	}
	for _, p := range parts[1:] {
		if err := validateComponent(name, p); err != nil {
			return err
		}
	}
	return nil
}

func validateComponent(full, comp string) error {
	switch comp {
	case "":
		return nameErr(full, "empty component (leading, trailing or double '/')")
	case ".", "..":
		return nameErr(full, "component %q is not allowed", comp)
	}
	if comp[0] == '-' {
		// Valid for ZFS, but z8r refuses it so that no part of a name can
		// ever look like an option.
		return nameErr(full, "component %q begins with '-'", comp)
	}
	for _, r := range comp {
		if !validComponentChar(r) {
			return nameErr(full, "character %q is not allowed", r)
		}
	}
	return nil
}

// ValidateSnapshot checks dataset@snapshot.
func ValidateSnapshot(name string) error {
	return validateSuffixed(name, '@', "snapshot")
}

// ValidateBookmark checks dataset#bookmark.
func ValidateBookmark(name string) error {
	return validateSuffixed(name, '#', "bookmark")
}

func validateSuffixed(name string, sep byte, what string) error {
	if len(name) > MaxNameLen {
		return nameErr(name, "longer than %d characters", MaxNameLen)
	}
	i := strings.IndexByte(name, sep)
	if i < 0 {
		return nameErr(name, "a %s name needs %q", what, sep)
	}
	if err := ValidateDataset(name[:i]); err != nil {
		return err
	}
	short := name[i+1:]
	if short == "" {
		return nameErr(name, "empty %s name", what)
	}
	if strings.ContainsAny(short, "@#/") {
		return nameErr(name, "a %s name cannot contain '@', '#' or '/' after %q", what, sep)
	}
	return validateComponent(name, short)
}

// ValidateSnapshotOrBookmark accepts either form, as an incremental source.
func ValidateSnapshotOrBookmark(name string) error {
	if strings.Contains(name, "#") {
		return ValidateBookmark(name)
	}
	return ValidateSnapshot(name)
}

// ValidateTag checks a hold tag. ZFS allows most strings; z8r restricts tags
// to name characters and refuses a leading '-' so a tag can never be read
// as an option.
func ValidateTag(tag string) error {
	if tag == "" {
		return nameErr(tag, "empty hold tag")
	}
	if len(tag) > MaxNameLen {
		return nameErr(tag, "hold tag longer than %d characters", MaxNameLen)
	}
	if tag[0] == '-' {
		return nameErr(tag, "hold tag cannot begin with '-'")
	}
	for _, r := range tag {
		if !validComponentChar(r) {
			return nameErr(tag, "character %q is not allowed in a hold tag", r)
		}
	}
	return nil
}

// ValidateProperty checks a property name: a native property (lower-case
// word) or a user property (module:name).
func ValidateProperty(prop string) error {
	if prop == "" {
		return nameErr(prop, "empty property name")
	}
	if len(prop) > MaxNameLen {
		return nameErr(prop, "property name longer than %d characters", MaxNameLen)
	}
	if !(prop[0] >= 'a' && prop[0] <= 'z') {
		return nameErr(prop, "a property name must begin with a lower-case letter")
	}
	for _, r := range prop {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == ':' || r == '-') {
			return nameErr(prop, "character %q is not allowed in a property name", r)
		}
	}
	return nil
}

// maxPropValue is ZFS's limit on a user property value (ZAP_MAXVALUELEN).
const maxPropValue = 8192

// ValidatePropertyValue checks a value to set.
func ValidatePropertyValue(prop, value string) error {
	if len(value) > maxPropValue {
		return nameErr(prop, "value longer than %d bytes", maxPropValue)
	}
	if strings.ContainsAny(value, "\t\n\x00") {
		return nameErr(prop, "value contains a tab, newline or NUL")
	}
	return nil
}

// SplitSnapshot returns the dataset and short name of dataset@snap (or
// dataset#bookmark).
func SplitSnapshot(name string) (dataset, short string) {
	if i := strings.IndexAny(name, "@#"); i >= 0 {
		return name[:i], name[i+1:]
	}
	return name, ""
}
