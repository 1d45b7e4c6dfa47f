package fakezfs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/z8r-project/z8r/internal/testbed/resumetok"
	"github.com/z8r-project/z8r/zfsexec"
)

// streamMagic opens every fake send stream. The format is the fake's own:
// the magic line, a JSON header line (what a resumable receive must know
// even of a stream cut short), a gob body, and the body's SHA-256, so a
// truncated or corrupted stream is detected as ZFS detects it.
const streamMagic = "FAKEZFS-STREAM-1\n"

// header is what a receiver learns from the first bytes of a stream.
type header struct {
	ToName   string `json:"toname"`
	ToGUID   uint64 `json:"toguid"`
	FromGUID uint64 `json:"fromguid"`
	Resume   bool   `json:"resume,omitempty"`
}

// body is the rest of a stream: one step per snapshot.
type body struct {
	Props map[string]string // the filesystem's properties, with -p
	Steps []step
}

// step is one snapshot's worth of changes.
type step struct {
	Name      string
	GUID      uint64
	FromGUID  uint64
	Creation  int64
	SnapProps map[string]string
	Files     map[string][]byte // new or changed files (all, for a full step)
	Deleted   []string
}

// sendArgs is a parsed `zfs send`.
type sendArgs struct {
	snap, from, token string
	intermediates     bool
	props             bool
	dryRun            bool // -n -P: print the size, send nothing
}

func (n *Node) parseSend(argv []string) (sendArgs, error) {
	var a sendArgs
	args := argv[2:]
	if len(args) == 2 && args[0] == "-t" {
		if !n.openZFS() {
			return a, cmdErr(argv, 2, "invalid option 't'\nusage:\n\tsend [-RDp] [-[iI] snapshot] <snapshot>")
		}
		a.token = args[1]
		return a, nil
	}
	for len(args) > 1 {
		switch f := args[0]; f {
		case "-w", "-c", "-L":
			// Encodings only: the fake's stream is the same.
			if !n.openZFS() {
				return a, cmdErr(argv, 2, "invalid option '%c'\nusage:\n\tsend [-RDp] [-[iI] snapshot] <snapshot>", f[1])
			}
			args = args[1:]
		case "-p":
			a.props = true
			args = args[1:]
		case "-n", "-P":
			if !n.openZFS() {
				return a, cmdErr(argv, 2, "invalid option '%c'\nusage:\n\tsend [-RDp] [-[iI] snapshot] <snapshot>", f[1])
			}
			a.dryRun = true
			args = args[1:]
		case "-i", "-I":
			if len(args) < 3 || a.from != "" {
				return a, &NotModelledError{Argv: argv}
			}
			a.from, a.intermediates = args[1], f == "-I"
			args = args[2:]
		default:
			// -R, -D, -n, -v, -e ...: not modelled.
			return a, &NotModelledError{Argv: argv}
		}
	}
	if len(args) != 1 || !strings.Contains(args[0], "@") {
		return a, &NotModelledError{Argv: argv}
	}
	a.snap = args[0]
	return a, nil
}

// send models `zfs send`: builds the stream under the lock, then writes it.
func (n *Node) send(ctx context.Context, argv []string, c zfsexec.Command) error {
	a, err := n.parseSend(argv)
	if err != nil {
		return err
	}
	n.mu.Lock()
	stream, err := n.buildStream(argv, a)
	n.mu.Unlock()
	if err != nil {
		return err
	}
	if a.dryRun {
		// OpenZFS's parsable estimate (what ParseSendSize reads).
		if a.from != "" {
			return writeOut(c, fmt.Sprintf("incremental\t%s\t%s\t%d\nsize\t%d\n", a.from, a.snap, len(stream), len(stream)))
		}
		return writeOut(c, fmt.Sprintf("full\t%s\t%d\nsize\t%d\n", a.snap, len(stream), len(stream)))
	}
	if c.Stdout == nil {
		return nil
	}
	// Write in chunks so a receiver that stops reading, or a cancelled
	// context, stops the sender as it would a real one.
	for off := 0; off < len(stream); off += 64 << 10 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("fakezfs: %s: %w", strings.Join(argv, " "), err)
		}
		end := min(off+64<<10, len(stream))
		if _, err := c.Stdout.Write(stream[off:end]); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("fakezfs: %s: %w", strings.Join(argv, " "), ctx.Err())
			}
			return cmdErr(argv, 1, "warning: cannot send '%s': Broken pipe", a.snap)
		}
	}
	return nil
}

// buildStream resolves what a send names and encodes it; n.mu is held.
func (n *Node) buildStream(argv []string, a sendArgs) ([]byte, error) {
	resume := false
	if a.token != "" {
		tok, err := zfsexec.DecodeResumeToken(a.token)
		if err != nil {
			return nil, cmdErr(argv, 255, "cannot resume send: resume token is corrupt (%v)", err)
		}
		s := n.snapshot(tok.ToName)
		if s == nil || s.guid != tok.ToGUID {
			return nil, cmdErr(argv, 255, "cannot resume send: '%s' used in the initial send no longer exists", tok.ToName)
		}
		a = sendArgs{snap: tok.ToName}
		if tok.FromGUID != 0 {
			from := n.byGUID(s.fs, tok.FromGUID)
			if from == "" {
				return nil, cmdErr(argv, 255, "cannot resume send: incremental source %d no longer exists", tok.FromGUID)
			}
			a.from = from
		}
		resume = true
	}
	s := n.snapshot(a.snap)
	if s == nil {
		return nil, notExist(argv, a.snap)
	}
	d := s.fs
	var h header
	var b body
	h.ToName, h.ToGUID, h.Resume = s.fullName(), s.guid, resume
	prevFiles := map[string][]byte{}
	var prevGUID, prevTXG uint64
	chain := []*snapshot{s}
	if a.from != "" {
		from := a.from
		if strings.HasPrefix(from, "@") || strings.HasPrefix(from, "#") {
			from = d.name + from
		}
		var bm *bookmark
		if strings.Contains(from, "#") {
			if !n.openZFS() {
				return nil, cmdErr(argv, 1, "cannot open '%s': invalid dataset name", from)
			}
			bm = n.bookmarkNamed(from)
			if bm == nil {
				return nil, cmdErr(argv, 1, "warning: cannot send '%s': incremental source (%s) does not exist", a.snap, a.from)
			}
		} else if fs := n.snapshot(from); fs != nil {
			bm = &bookmark{fs: fs.fs, name: fs.name, guid: fs.guid, createtxg: fs.createtxg, files: fs.files}
		} else if n.openZFS() {
			return nil, notExist(argv, from)
		} else {
			return nil, cmdErr(argv, 1, "warning: cannot send '%s': incremental source (%s) does not exist", a.snap, a.from)
		}
		if bm.fs != d || bm.createtxg >= s.createtxg {
			return nil, cmdErr(argv, 1, "warning: cannot send '%s': not an earlier snapshot from the same fs", a.snap)
		}
		prevFiles, prevGUID, prevTXG = bm.files, bm.guid, bm.createtxg
		h.FromGUID = prevGUID
		if a.intermediates {
			chain = nil
			for _, x := range d.snaps {
				if x.createtxg > prevTXG && x.createtxg <= s.createtxg {
					chain = append(chain, x)
				}
			}
		}
	}
	if a.props {
		b.Props = map[string]string{}
		for k, v := range d.local {
			b.Props[k] = v
		}
	}
	for _, x := range chain {
		st := step{Name: x.name, GUID: x.guid, FromGUID: prevGUID, Creation: x.creation.Unix(), Files: map[string][]byte{}}
		if a.props {
			st.SnapProps = maps.Clone(x.local)
		}
		for p, data := range x.files {
			if old, ok := prevFiles[p]; !ok || !bytes.Equal(old, data) {
				st.Files[p] = data
			}
		}
		for p := range prevFiles {
			if _, ok := x.files[p]; !ok {
				st.Deleted = append(st.Deleted, p)
			}
		}
		slices.Sort(st.Deleted)
		b.Steps = append(b.Steps, st)
		prevFiles, prevGUID = x.files, x.guid
	}
	return encodeStream(h, b)
}

// byGUID names the snapshot, or else the bookmark, of d with guid g ("" if
// none).
func (n *Node) byGUID(d *dataset, g uint64) string {
	for _, s := range d.snaps {
		if s.guid == g {
			return s.fullName()
		}
	}
	for _, b := range d.bookmarks {
		if b.guid == g {
			return b.fullName()
		}
	}
	return ""
}

func encodeStream(h header, b body) ([]byte, error) {
	var out bytes.Buffer
	out.WriteString(streamMagic)
	hj, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("fakezfs: encode stream header: %w", err)
	}
	out.Write(hj)
	out.WriteByte('\n')
	var gb bytes.Buffer
	if err := gob.NewEncoder(&gb).Encode(b); err != nil {
		return nil, fmt.Errorf("fakezfs: encode stream: %w", err)
	}
	sum := sha256.Sum256(gb.Bytes())
	out.Write(gb.Bytes())
	out.Write(sum[:])
	return out.Bytes(), nil
}

// streamState is how much of a stream arrived.
type streamState int

const (
	streamBadMagic streamState = iota
	streamNoHeader
	streamTruncated
	streamComplete
)

func decodeStream(data []byte) (header, body, streamState) {
	var h header
	var b body
	if !bytes.HasPrefix(data, []byte(streamMagic)) {
		if len(data) < len(streamMagic) && bytes.HasPrefix([]byte(streamMagic), data) {
			return h, b, streamNoHeader
		}
		return h, b, streamBadMagic
	}
	rest := data[len(streamMagic):]
	line, err := bufio.NewReader(bytes.NewReader(rest)).ReadBytes('\n')
	if err != nil || json.Unmarshal(line, &h) != nil {
		return h, b, streamNoHeader
	}
	rest = rest[len(line):]
	if len(rest) < sha256.Size {
		return h, b, streamTruncated
	}
	gb, sum := rest[:len(rest)-sha256.Size], rest[len(rest)-sha256.Size:]
	if s := sha256.Sum256(gb); !bytes.Equal(s[:], sum) {
		return h, b, streamTruncated
	}
	if gob.NewDecoder(bytes.NewReader(gb)).Decode(&b) != nil || len(b.Steps) == 0 {
		return h, b, streamTruncated
	}
	return h, b, streamComplete
}

// recvArgs is a parsed `zfs recv`.
type recvArgs struct {
	target                      string
	unmounted, force, resumable bool
	abort                       bool
	setProps                    []string
	excluded                    []string
}

func (n *Node) parseRecv(argv []string) (recvArgs, error) {
	var a recvArgs
	args := argv[2:]
	usage := "\nusage:\n\treceive [-vnFu] <filesystem|volume|snapshot>\n\treceive [-vnFu] [-d | -e] <filesystem>"
	if len(args) == 2 && args[0] == "-A" {
		if !n.openZFS() {
			return a, cmdErr(argv, 2, "invalid option 'A'%s", usage)
		}
		a.abort, a.target = true, args[1]
		return a, nil
	}
	for len(args) > 1 {
		switch f := args[0]; f {
		case "-u":
			a.unmounted = true
			args = args[1:]
		case "-F":
			a.force = true
			args = args[1:]
		case "-s":
			if !n.openZFS() {
				return a, cmdErr(argv, 2, "invalid option 's'%s", usage)
			}
			a.resumable = true
			args = args[1:]
		case "-o", "-x":
			if !n.openZFS() {
				return a, cmdErr(argv, 2, "invalid option '%c'%s", f[1], usage)
			}
			if len(args) < 3 {
				return a, &NotModelledError{Argv: argv}
			}
			if f == "-o" {
				a.setProps = append(a.setProps, args[1])
			} else {
				a.excluded = append(a.excluded, args[1])
			}
			args = args[2:]
		default:
			return a, &NotModelledError{Argv: argv}
		}
	}
	if len(args) != 1 || strings.ContainsAny(args[0], "@#") || strings.HasPrefix(args[0], "-") {
		return a, &NotModelledError{Argv: argv}
	}
	a.target = args[0]
	return a, nil
}

// recv models `zfs recv`: reads the whole stream, then applies it.
func (n *Node) recv(ctx context.Context, argv []string, c zfsexec.Command) error {
	a, err := n.parseRecv(argv)
	if err != nil {
		return err
	}
	if a.abort {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.abortRecv(argv, a.target)
	}
	if c.Stdin == nil {
		return cmdErr(argv, 1, "cannot receive: failed to read from stream")
	}
	data, rerr := drain(c.Stdin)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fakezfs: %s: %w", strings.Join(argv, " "), err)
	}
	h, b, state := decodeStream(data)
	if rerr != nil && state == streamComplete {
		state = streamTruncated
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch state {
	case streamBadMagic:
		if len(data) == 0 {
			return cmdErr(argv, 1, "cannot receive: failed to read from stream")
		}
		return cmdErr(argv, 1, "cannot receive: invalid stream (bad magic number)")
	case streamNoHeader:
		return cmdErr(argv, 1, "cannot receive: failed to read from stream")
	}
	kind := "new filesystem"
	if h.FromGUID != 0 {
		kind = "incremental"
	}
	d := n.ds[a.target]
	// Checks a real receive makes on the stream's first record.
	if err := n.checkRecvBegin(argv, a, h, kind, d); err != nil {
		return err
	}
	if state == streamTruncated {
		msg := fmt.Sprintf("cannot receive %s stream: checksum mismatch or incomplete stream.", kind)
		if a.resumable && !h.Resume {
			p := &partialRecv{toName: h.ToName, toGUID: h.ToGUID, fromGUID: h.FromGUID}
			p.token = resumetok.Encode(h.ToName, h.ToGUID, h.FromGUID)
			if d == nil {
				d = n.newDataset(a.target, zfsexec.TypeFilesystem)
				p.created = true
				n.ds[a.target] = d
			}
			d.partial = p
			msg += "\nPartially received snapshot is saved.\nA resuming stream can be generated on the sending system by running:\n    zfs send -t " + p.token
		}
		return cmdErr(argv, 1, "%s", msg)
	}
	return n.applyStream(argv, a, h, b, kind, d)
}

func (n *Node) checkRecvBegin(argv []string, a recvArgs, h header, kind string, d *dataset) error {
	if h.Resume {
		if d == nil || d.partial == nil || d.partial.toGUID != h.ToGUID {
			return cmdErr(argv, 1, "cannot receive resume stream: destination %s does not contain the partially-received state of %s", a.target, h.ToName)
		}
		return nil
	}
	parent := parentOf(a.target)
	if h.FromGUID == 0 {
		switch {
		case d == nil && (parent == "" || n.ds[parent] == nil):
			return cmdErr(argv, 1, "cannot receive new filesystem stream: destination '%s' does not exist", a.target)
		case d == nil:
			return nil
		case d.partial != nil || !a.force:
			return cmdErr(argv, 1, "cannot receive new filesystem stream: destination '%s' exists\nmust specify -F to overwrite it", a.target)
		case len(d.snaps) > 0:
			return cmdErr(argv, 1, "cannot receive new filesystem stream: destination has snapshots (eg. %s)\nmust destroy them to overwrite it", d.snaps[0].fullName())
		}
		return nil
	}
	switch {
	case d == nil || d.partial != nil && d.partial.created:
		return cmdErr(argv, 1, "cannot receive incremental stream: destination '%s' does not exist", a.target)
	case d.partial != nil:
		return cmdErr(argv, 1, "cannot receive incremental stream: destination %s contains partially-complete state from \"zfs receive -s\".", a.target)
	}
	last := d.latest()
	if last == nil || last.guid != h.FromGUID {
		return cmdErr(argv, 1, "cannot receive incremental stream: most recent snapshot of %s does not\nmatch incremental source", a.target)
	}
	if d.written > 0 && !a.force {
		return cmdErr(argv, 1, "cannot receive incremental stream: destination %s has been modified\nsince most recent snapshot", a.target)
	}
	return nil
}

// applyStream lands a complete stream; n.mu is held.
func (n *Node) applyStream(argv []string, a recvArgs, h header, b body, kind string, d *dataset) error {
	for _, st := range b.Steps {
		if d != nil {
			for _, s := range d.snaps {
				if s.name == st.Name {
					return cmdErr(argv, 1, "cannot receive %s stream: destination snapshot %s already exists", kind, s.fullName())
				}
			}
		}
	}
	if h.Resume {
		created := d.partial.created
		d.partial = nil
		if created {
			delete(n.ds, d.name)
			d = nil
		}
	}
	if d == nil {
		d = n.newDataset(a.target, zfsexec.TypeFilesystem)
		n.ds[a.target] = d
		// A full receive replaces the mount state of a new filesystem.
		d.mounted = false
	} else if a.force || b.Steps[0].FromGUID == 0 {
		// -F: roll back to the most recent snapshot first.
		if last := d.latest(); last != nil {
			d.files = copyFiles(last.files)
		} else {
			d.files = map[string][]byte{}
		}
		d.written = 0
	}
	for k, v := range b.Props {
		if slices.Contains(a.excluded, k) {
			continue
		}
		if strings.Contains(k, ":") || k == "readonly" || k == "canmount" {
			d.received[k] = v
		}
	}
	for _, kv := range a.setProps {
		if err := n.setProp(argv, object{name: d.name, typ: d.typ, ds: d}, kv, "local"); err != nil {
			return err
		}
	}
	for _, st := range b.Steps {
		for p, data := range st.Files {
			d.files[p] = data
		}
		for _, p := range st.Deleted {
			delete(d.files, p)
		}
		s := n.takeSnapshot(d, st.Name, st.GUID, time.Unix(st.Creation, 0), map[string]string{})
		for k, v := range st.SnapProps {
			s.received[k] = v
		}
	}
	if !a.unmounted && d.typ == zfsexec.TypeFilesystem && d.local["canmount"] != "noauto" && d.local["canmount"] != "off" {
		d.mounted = true
	}
	return nil
}

func (n *Node) abortRecv(argv []string, target string) error {
	d := n.ds[target]
	if d == nil {
		return notExist(argv, target)
	}
	if d.partial == nil {
		return cmdErr(argv, 1, "'%s' does not have any resumable receive state to abort", target)
	}
	if d.partial.created {
		delete(n.ds, target)
		return nil
	}
	d.partial = nil
	return nil
}
