package zfsexec

import (
	"strings"
	"time"
)

// Type is a ZFS object type as `zfs get type` prints it.
type Type string

// Object types.
const (
	TypeFilesystem Type = "filesystem"
	TypeVolume     Type = "volume"
	TypeSnapshot   Type = "snapshot"
	TypeBookmark   Type = "bookmark"
)

// Dataset is one filesystem, volume, snapshot or bookmark with the
// properties replication needs.
type Dataset struct {
	Name      string
	Type      Type
	GUID      uint64
	CreateTXG uint64
	Creation  time.Time
	// UserRefs is the number of holds on a snapshot (0 for other types).
	UserRefs uint64
	// UserProps holds the user properties asked for that have a value
	// (set locally, received or inherited), keyed by property name.
	UserProps map[string]string
	// LocalProps holds those of UserProps whose source is "local": set on
	// this very object, not inherited from a parent nor received in a
	// stream. z8r's ownership is decided from these alone.
	LocalProps map[string]string
}

// Filesystem returns the dataset part of a snapshot or bookmark name, or
// the name itself.
func (d Dataset) Filesystem() string {
	fs, _ := SplitSnapshot(d.Name)
	return fs
}

// ShortName returns the part after '@' or '#' ("" for filesystems).
func (d Dataset) ShortName() string {
	_, s := SplitSnapshot(d.Name)
	return s
}

// IsSnapshot reports whether d is a snapshot.
func (d Dataset) IsSnapshot() bool { return d.Type == TypeSnapshot }

// IsBookmark reports whether d is a bookmark.
func (d Dataset) IsBookmark() bool { return d.Type == TypeBookmark }

// Property is one property value and where it comes from ("local",
// "default", "received", "inherited from X", or "-").
type Property struct {
	Value  string
	Source string
}

// IsSet reports whether a user property has a value on this object (rather
// than ZFS's "-" placeholder for an unset user property).
func (p Property) IsSet() bool {
	return p.Source != "-" || p.Value != "-"
}

// Inherited reports whether the value came from a parent dataset.
func (p Property) Inherited() bool { return strings.HasPrefix(p.Source, "inherited") }
