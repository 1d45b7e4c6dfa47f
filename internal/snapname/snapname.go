package snapname

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultPrefix is the snapshot name prefix used when none is configured.
const DefaultPrefix = "z8r"

// User properties z8r sets on the snapshots it creates.
const (
	OwnerProp  = "z8r.dev:owner"
	OwnerValue = "z8r"
	PolicyProp = "z8r.dev:policy"
)

// TimeLayout is the UTC timestamp in snapshot names.
const TimeLayout = "20060102T150405Z"

// MaxPrefixLen bounds the configurable prefix so that a dataset name plus
// '@' plus a z8r snapshot name stays well within ZFS's 255 characters.
const MaxPrefixLen = 32

// ErrInvalidPrefix is matched by errors from ValidatePrefix.
var ErrInvalidPrefix = errors.New("invalid snapshot name prefix")

// ValidatePrefix checks a configured prefix: 1 to MaxPrefixLen characters of
// [A-Za-z0-9_.:-], beginning with a letter or digit.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("%w: empty", ErrInvalidPrefix)
	}
	if len(prefix) > MaxPrefixLen {
		return fmt.Errorf("%w %q: longer than %d characters", ErrInvalidPrefix, prefix, MaxPrefixLen)
	}
	if !isAlnum(prefix[0]) {
		return fmt.Errorf("%w %q: must begin with a letter or digit", ErrInvalidPrefix, prefix)
	}
	for i := 0; i < len(prefix); i++ {
		if !isNameChar(prefix[i]) {
			return fmt.Errorf("%w %q: character %q is not allowed", ErrInvalidPrefix, prefix, prefix[i])
		}
	}
	return nil
}

// New returns the short snapshot name (the part after '@') for a snapshot
// taken at t: prefix-20261126T103000Z, in UTC, truncated to the second.
// An empty prefix means DefaultPrefix. New does not validate the prefix;
// callers validate configuration once with ValidatePrefix.
func New(prefix string, t time.Time) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return prefix + "-" + t.UTC().Format(TimeLayout)
}

// WithSuffix returns name with the collision suffix -n (n >= 1), for a
// second snapshot in the same second. n < 1 returns name unchanged.
func WithSuffix(name string, n int) string {
	if n < 1 {
		return name
	}
	return name + "-" + strconv.Itoa(n)
}

// Parse splits a short snapshot name made by New (optionally WithSuffix)
// into its prefix and UTC time. ok is false for any other name. A name that
// parses is not necessarily z8r's: ownership is IsOwned.
func Parse(short string) (prefix string, t time.Time, ok bool) {
	if p, t, ok := parseExact(short); ok {
		return p, t, true
	}
	// Strip a collision suffix -N and try again.
	i := strings.LastIndexByte(short, '-')
	if i < 0 || i == len(short)-1 {
		return "", time.Time{}, false
	}
	digits := short[i+1:]
	if digits[0] == '0' {
		return "", time.Time{}, false
	}
	for j := 0; j < len(digits); j++ {
		if digits[j] < '0' || digits[j] > '9' {
			return "", time.Time{}, false
		}
	}
	return parseExact(short[:i])
}

func parseExact(s string) (string, time.Time, bool) {
	n := len(TimeLayout)
	if len(s) < n+2 || s[len(s)-n-1] != '-' {
		return "", time.Time{}, false
	}
	prefix, ts := s[:len(s)-n-1], s[len(s)-n:]
	if ValidatePrefix(prefix) != nil {
		return "", time.Time{}, false
	}
	t, err := time.Parse(TimeLayout, ts)
	if err != nil {
		return "", time.Time{}, false
	}
	return prefix, t.UTC(), true
}

// IsOwned reports whether a snapshot's *locally set* user properties
// (zfsexec.Dataset.LocalProps) mark it as created by z8r. Pass only local
// properties: a value inherited from a parent dataset or received in a
// stream is no proof that z8r created this very snapshot.
func IsOwned(localProps map[string]string) bool {
	return localProps[OwnerProp] == OwnerValue
}

// IsOwnedBy reports whether a snapshot's locally set user properties mark
// it as created by z8r for the replication (policy) policyID: the scope
// within which retention may prune it and a rollback may discard it.
func IsOwnedBy(localProps map[string]string, policyID string) bool {
	return IsOwned(localProps) && policyID != "" && localProps[PolicyProp] == policyID
}

// Props returns the user properties to set on a snapshot z8r creates for
// the given policy (replication) id.
func Props(policyID string) map[string]string {
	return map[string]string{OwnerProp: OwnerValue, PolicyProp: policyID}
}

// Hold tags and bookmarks.

// Hold tag prefixes. Every tag z8r places begins with one of them, and all
// have the same length.
const (
	// HoldTagPrefix begins the tag that protects a target's incremental
	// base on the source (HoldTag).
	HoldTagPrefix = "z8r-base-"
	// StepHoldTagPrefix begins the tag that protects both ends of a
	// transfer in flight on the source (StepHoldTag).
	StepHoldTagPrefix = "z8r-step-"
	// ReplicaHoldTagPrefix begins the tag that protects a target's last
	// received snapshot on the target (ReplicaHoldTag).
	ReplicaHoldTagPrefix = "z8r-last-"
)

var holdTagPrefixes = []string{HoldTagPrefix, StepHoldTagPrefix, ReplicaHoldTagPrefix}

// MaxHoldTagLen is the longest tag HoldTag returns. ZFS accepts longer tags;
// this keeps BookmarkName's result (tag, ':', snapshot) within name limits.
const MaxHoldTagLen = 96

// readableLen is how much of a target id a hashed tag keeps for humans.
const readableLen = 40

// HoldTag returns the hold tag that protects targetID's incremental base on
// the source. Ids of [A-Za-z0-9_.-] that fit are used as they are; any
// other id (including one with ':', which BookmarkName reserves) is
// sanitised, shortened and followed by a hash of the full id.
func HoldTag(targetID string) string { return holdTag(HoldTagPrefix, targetID) }

// StepHoldTag returns the hold tag that protects, on the source, the from
// and to snapshots of a transfer to targetID while it is in flight (zrepl's
// step holds): placed before the send, released only after the target's
// receipt is confirmed and the base hold has moved. Same form as HoldTag.
func StepHoldTag(targetID string) string { return holdTag(StepHoldTagPrefix, targetID) }

// ReplicaHoldTag returns the hold tag that protects, on the target, the
// last snapshot received for targetID, so that nothing (target retention,
// an operator's script) can remove the next incremental's base there.
// Same form as HoldTag.
func ReplicaHoldTag(targetID string) string { return holdTag(ReplicaHoldTagPrefix, targetID) }

func holdTag(prefix, targetID string) string {
	if targetID != "" && len(prefix)+len(targetID) <= MaxHoldTagLen && isLiteralID(targetID) {
		return prefix + targetID
	}
	sum := sha256.Sum256([]byte(targetID))
	var b strings.Builder
	b.WriteString(prefix)
	for i := 0; i < len(targetID) && b.Len() < len(prefix)+readableLen; i++ {
		c := targetID[i]
		if !isNameChar(c) || c == ':' {
			c = '_'
		}
		b.WriteByte(c)
	}
	if len(targetID) > 0 {
		b.WriteByte('-')
	}
	b.WriteString(hex.EncodeToString(sum[:8]))
	return b.String()
}

// IsZ8RHoldTag reports whether tag is one z8r places (the form of HoldTag,
// StepHoldTag or ReplicaHoldTag).
func IsZ8RHoldTag(tag string) bool {
	for _, p := range holdTagPrefixes {
		if strings.HasPrefix(tag, p) && len(tag) > len(p) && len(tag) <= MaxHoldTagLen {
			return isLiteralID(tag[len(p):])
		}
	}
	return false
}

// DivergedInfix joins a dataset's name and a time in the name a diverged
// target is moved aside to (DivergedName).
const DivergedInfix = "-z8r-diverged-"

// DivergedName returns the name a diverged target dataset is renamed to,
// in the same parent, instead of being rolled back or overwritten:
// <dataset>-z8r-diverged-<UTC time>, e.g.
// tank/data-z8r-diverged-20261130T083500Z. Nothing in it is destroyed.
func DivergedName(dataset string, t time.Time) string {
	return dataset + DivergedInfix + t.UTC().Format(TimeLayout)
}

// ParseDivergedName reports whether name was made by DivergedName, and
// for which dataset.
func ParseDivergedName(name string) (dataset string, t time.Time, ok bool) {
	i := strings.LastIndex(name, DivergedInfix)
	if i <= 0 {
		return "", time.Time{}, false
	}
	t, err := time.Parse(TimeLayout, name[i+len(DivergedInfix):])
	if err != nil {
		return "", time.Time{}, false
	}
	return name[:i], t.UTC(), true
}

// TailInfix joins a dataset's name and a time in the name the
// unreplicated tail of a former source is preserved under (TailName).
const TailInfix = "-z8r-tail-"

// TailSnapshotPrefix begins the short name of the snapshot that captures
// a former source's writes since its newest snapshot before the tail is
// moved aside (TailSnapshotName).
const TailSnapshotPrefix = "z8r-tail-"

// TailName returns the name a former source's dataset is renamed to, in
// the same parent, when a promotion left it with history the new source
// lacks (snapshots after the common base, or writes):
// <dataset>-z8r-tail-<UTC time>, e.g.
// tank/data-z8r-tail-20261130T150405Z. It keeps every snapshot and write
// after the common base; nothing in it is destroyed.
func TailName(dataset string, t time.Time) string {
	return dataset + TailInfix + t.UTC().Format(TimeLayout)
}

// ParseTailName reports whether name was made by TailName, and for which
// dataset and time.
func ParseTailName(name string) (dataset string, t time.Time, ok bool) {
	i := strings.LastIndex(name, TailInfix)
	if i <= 0 || strings.ContainsAny(name, "@#") {
		return "", time.Time{}, false
	}
	t, err := time.Parse(TimeLayout, name[i+len(TailInfix):])
	if err != nil {
		return "", time.Time{}, false
	}
	return name[:i], t.UTC(), true
}

// IsTailName reports whether name is TailName(dataset, t) for some time t.
func IsTailName(dataset, name string) bool {
	ds, _, ok := ParseTailName(name)
	return ok && ds == dataset
}

// TailSnapshotName returns the short name (after '@') of the snapshot
// taken of a former source right before its tail is moved aside:
// z8r-tail-<UTC time>, the same time as the TailName it goes with. It
// carries no ownership marks: it records the tail, and z8r's retention
// never prunes it.
func TailSnapshotName(t time.Time) string {
	return TailSnapshotPrefix + t.UTC().Format(TimeLayout)
}

// ParseTailSnapshotName reports whether short was made by
// TailSnapshotName, and for which time.
func ParseTailSnapshotName(short string) (t time.Time, ok bool) {
	rest, found := strings.CutPrefix(short, TailSnapshotPrefix)
	if !found {
		return time.Time{}, false
	}
	t, err := time.Parse(TimeLayout, rest)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// BookmarkName returns the short bookmark name (after '#') that protects
// snapShort as targetID's incremental base: HoldTag(targetID)+":"+snapShort.
func BookmarkName(targetID, snapShort string) string {
	return HoldTag(targetID) + ":" + snapShort
}

// ParseBookmarkName splits a bookmark name made by BookmarkName into the
// target's hold tag and the snapshot name. ok is false for other names.
func ParseBookmarkName(short string) (tag, snapShort string, ok bool) {
	i := strings.IndexByte(short, ':')
	if i < 0 || i == len(short)-1 {
		return "", "", false
	}
	tag, snapShort = short[:i], short[i+1:]
	if !IsZ8RHoldTag(tag) {
		return "", "", false
	}
	return tag, snapShort, true
}

// IsZ8RBookmark reports whether a short bookmark name is one z8r creates.
func IsZ8RBookmark(short string) bool {
	_, _, ok := ParseBookmarkName(short)
	return ok
}

func isLiteralID(id string) bool {
	for i := 0; i < len(id); i++ {
		if !isNameChar(id[i]) || id[i] == ':' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// isNameChar is the character set ZFS allows in name components (z8r
// excludes the space).
func isNameChar(c byte) bool {
	return isAlnum(c) || c == '-' || c == '_' || c == '.' || c == ':'
}
