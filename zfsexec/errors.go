package zfsexec

import (
	"errors"
	"fmt"
	"regexp"
)

// Sentinel errors for the conditions callers branch on. A *CommandError
// matches one of them (errors.Is) when its stderr carries the wording real
// ZFS prints for that condition. Each pattern below was provoked on real
// zfs-fuse 0.7 and OpenZFS 2.3 (see testdata/ and the platform tests);
// zfs-fuse breaks some messages across lines, so patterns use \s+ where a
// line break was seen.
var (
	ErrDatasetNotExist          = errors.New("dataset does not exist")
	ErrIncrementalMismatch      = errors.New("target's most recent snapshot does not match the incremental source")
	ErrDestinationModified      = errors.New("destination modified since its most recent snapshot")
	ErrDestinationExists        = errors.New("destination exists")
	ErrDestinationHasSnapshots  = errors.New("destination has snapshots")
	ErrDatasetBusy              = errors.New("dataset is busy or held")
	ErrSnapshotExists           = errors.New("snapshot already exists")
	ErrTagExists                = errors.New("hold tag already exists")
	ErrNoSuchTag                = errors.New("no such hold tag")
	ErrInvalidStream            = errors.New("invalid send stream")
	ErrDaemonNotRunning         = errors.New("ZFS is not available (daemon not running or module not loaded)")
	ErrIncrementalSourceMissing = errors.New("incremental source does not exist")
	ErrNotEarlierSnapshot       = errors.New("incremental source is not an earlier snapshot of the same dataset")
	ErrNewerSnapshotsExist      = errors.New("more recent snapshots exist")
	ErrBrokenPipe               = errors.New("send stream broken pipe")
	ErrStreamIncompatible       = errors.New("stream uses features the receiving ZFS does not support")
	ErrBookmarkExists           = errors.New("bookmark already exists")
	ErrPartialReceiveState      = errors.New("target holds partial state of an interrupted resumable receive")
	ErrNoResumeState            = errors.New("no resumable receive state to abort")
	ErrInvalidResumeToken       = errors.New("invalid resume token")
	// ErrHasClones: a snapshot cannot be destroyed because a clone depends
	// on it (it is the clone's origin).
	ErrHasClones = errors.New("snapshot has dependent clones")
	// ErrDatasetExists: a rename's or clone's destination name is taken.
	ErrDatasetExists = errors.New("dataset already exists")
	// ErrNotClone: promote of a filesystem that is not a clone.
	ErrNotClone = errors.New("not a cloned filesystem")
	// ErrAlreadyMounted: mount of a filesystem that is mounted.
	ErrAlreadyMounted = errors.New("filesystem already mounted")
)

// stderrPatterns maps stderr wording to the sentinel it means. Order matters
// only for readability; a message may match several.
var stderrPatterns = []struct {
	re  *regexp.Regexp
	err error
}{
	{regexp.MustCompile(`dataset does not exist`), ErrDatasetNotExist},
	{regexp.MustCompile(`destination '[^']*' does not exist`), ErrDatasetNotExist},
	{regexp.MustCompile(`could not find any snapshots to destroy`), ErrDatasetNotExist},
	{regexp.MustCompile(`bookmark '[^']*' does not exist`), ErrDatasetNotExist},
	{regexp.MustCompile(`cannot open '[^']*': no such pool or dataset`), ErrDatasetNotExist},
	{regexp.MustCompile(`most recent snapshot of \S+ does not\s+match incremental source`), ErrIncrementalMismatch},
	{regexp.MustCompile(`destination \S+ has been modified\s+since most recent snapshot`), ErrDestinationModified},
	{regexp.MustCompile(`destination '[^']*' exists`), ErrDestinationExists},
	{regexp.MustCompile(`destination has snapshots`), ErrDestinationHasSnapshots},
	{regexp.MustCompile(`dataset is busy|it's being held|pool or dataset is busy|cannot unmount '[^']*': umount failed`), ErrDatasetBusy},
	{regexp.MustCompile(`cannot create snapshot '[^']*': dataset already exists`), ErrSnapshotExists},
	{regexp.MustCompile(`tag already exists on this dataset`), ErrTagExists},
	{regexp.MustCompile(`no such tag on this dataset`), ErrNoSuchTag},
	{regexp.MustCompile(`invalid stream|failed to read from stream|checksum mismatch|stream ends? prematurely`), ErrInvalidStream},
	{regexp.MustCompile(`zfs-fuse daemon is running|failed to initialize ZFS library|ZFS modules are not loaded|ZFS modules cannot be auto-loaded|/dev/zfs`), ErrDaemonNotRunning},
	{regexp.MustCompile(`incremental source \([^)]*\) does not exist`), ErrIncrementalSourceMissing},
	{regexp.MustCompile(`not an earlier snapshot from the same fs`), ErrNotEarlierSnapshot},
	{regexp.MustCompile(`more recent snapshots exist|more recent snapshots or bookmarks exist`), ErrNewerSnapshotsExist},
	{regexp.MustCompile(`Broken pipe`), ErrBrokenPipe},
	{regexp.MustCompile(`stream has unsupported feature|unsupported version|stream version .* not supported`), ErrStreamIncompatible},
	{regexp.MustCompile(`cannot create bookmark '[^']*': bookmark exists`), ErrBookmarkExists},
	{regexp.MustCompile(`contains partially-complete state from "zfs receive -s"`), ErrPartialReceiveState},
	{regexp.MustCompile(`does not have any resumable receive state to abort`), ErrNoResumeState},
	{regexp.MustCompile(`resume token is corrupt|invalid resume token`), ErrInvalidResumeToken},
	{regexp.MustCompile(`snapshot has dependent clones`), ErrHasClones},
	{regexp.MustCompile(`cannot rename '[^']*': dataset already exists`), ErrDatasetExists},
	{regexp.MustCompile(`cannot create '[^']*': dataset already exists`), ErrDatasetExists},
	{regexp.MustCompile(`cannot promote '[^']*': not a cloned filesystem`), ErrNotClone},
	{regexp.MustCompile(`cannot mount '[^']*': filesystem already mounted`), ErrAlreadyMounted},
}

// Is reports whether the command's stderr means target, so callers write
// errors.Is(err, zfsexec.ErrDatasetBusy).
func (e *CommandError) Is(target error) bool {
	for _, p := range stderrPatterns {
		if p.err == target && p.re.MatchString(e.Stderr) {
			return true
		}
	}
	return false
}

// ErrUnsupported is matched by *UnsupportedError: the node's ZFS lacks a
// feature the caller asked for.
var ErrUnsupported = errors.New("not supported by this node's ZFS")

// UnsupportedError names the missing feature and the node's implementation.
type UnsupportedError struct {
	Feature        string
	Implementation string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s is not supported by %s", e.Feature, e.Implementation)
}

// Is makes errors.Is(err, ErrUnsupported) true.
func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupported }

// ParseError reports output that did not have the expected shape.
type ParseError struct {
	Argv   []string
	Line   int
	Text   string
	Reason string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("zfsexec: parse output of %v line %d %q: %s", e.Argv, e.Line, e.Text, e.Reason)
}
