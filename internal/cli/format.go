package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/snapname"
)

// none is what an empty cell shows.
const none = "-"

// errorWidth is how much of an error the narrow status table shows.
const errorWidth = 60

// Location is "node:dataset".
func Location(node, dataset string) string { return node + ":" + dataset }

// targetDataset is the dataset a target receives into: its own, or the
// source's name.
func targetDataset(dr *z8rv1.DatasetReplication, t z8rv1.ReplicationTarget) string {
	if t.Dataset != "" {
		return t.Dataset
	}
	return dr.Spec.Source.Dataset
}

// TargetRow is one target of a DatasetReplication, as the status table
// shows it.
type TargetRow struct {
	Target  string // node:dataset
	Node    string
	Dataset string
	State   string
	// LastSync is the time of the last successful transfer (zero: never).
	LastSync time.Time
	// Behind counts source snapshots the target lacks.
	Behind int
	// NewestTime is when the target's newest snapshot was taken, read from
	// z8r's snapshot name (zero: unknown). now - NewestTime is the lag: the
	// most recent data a failover to this target would lose.
	NewestTime time.Time
	Newest     string
	Base       string
	Kind       string
	Bytes      int64
	Duration   time.Duration
	Failures   int
	Error      string
	// Removed: the target is in status but no longer in spec (the
	// controller is releasing it).
	Removed bool
	// Transfer is the sync running now (nil: none).
	Transfer *z8rv1.TransferProgress
}

// TargetRows lists the targets of dr in spec order, each with its status
// (Pending when the controller has not reported it yet), then targets that
// are only in status (being removed).
func TargetRows(dr *z8rv1.DatasetReplication) []TargetRow {
	byKey := map[string]*z8rv1.TargetStatus{}
	for i := range dr.Status.Targets {
		ts := &dr.Status.Targets[i]
		byKey[Location(ts.Node, ts.Dataset)] = ts
	}
	var rows []TargetRow
	seen := map[string]bool{}
	for _, t := range dr.Spec.Targets {
		key := Location(t.Node, targetDataset(dr, t))
		seen[key] = true
		rows = append(rows, targetRow(t.Node, targetDataset(dr, t), byKey[key]))
	}
	for i := range dr.Status.Targets {
		ts := &dr.Status.Targets[i]
		if key := Location(ts.Node, ts.Dataset); !seen[key] {
			r := targetRow(ts.Node, ts.Dataset, ts)
			r.Removed = true
			rows = append(rows, r)
		}
	}
	return rows
}

func targetRow(node, dataset string, ts *z8rv1.TargetStatus) TargetRow {
	r := TargetRow{Target: Location(node, dataset), Node: node, Dataset: dataset, State: z8rv1.TargetPending}
	if ts == nil {
		return r
	}
	if ts.State != "" {
		r.State = ts.State
	}
	if ts.LastSyncTime != nil {
		r.LastSync = ts.LastSyncTime.Time
	}
	r.Behind = ts.SnapshotsBehind
	r.Newest = ts.LastSnapshot
	if _, t, ok := snapname.Parse(ts.LastSnapshot); ok {
		r.NewestTime = t
	}
	r.Base = ts.ProtectedBase
	r.Kind = ts.LastSyncKind
	r.Bytes = ts.LastSyncBytes
	if ts.LastSyncDuration != nil {
		r.Duration = ts.LastSyncDuration.Duration
	}
	r.Failures = ts.ConsecutiveFailures
	r.Error = ts.LastError
	r.Transfer = ts.Transfer
	return r
}

// WriteStatus writes one block per DatasetReplication: a line about the
// source, then a table of its targets with state, last sync, snapshots
// behind, lag and error. wide adds the newest snapshot, the protected base,
// the last transfer and the whole error.
func WriteStatus(w io.Writer, reps []z8rv1.DatasetReplication, now time.Time, wide bool) error {
	if len(reps) == 0 {
		_, err := fmt.Fprintln(w, "No DatasetReplications found.")
		return err
	}
	sortReplications(reps)
	for i := range reps {
		dr := &reps[i]
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s  %s  %s\n", Clean(dr.Name), Clean(Location(dr.Spec.Source.Node, dr.Spec.Source.Dataset)), Clean(sourceSummary(dr, now)))
		tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		header := "  TARGET\tSTATE\tLAST SYNC\tBEHIND\tLAG\tERROR"
		if wide {
			header = "  TARGET\tSTATE\tLAST SYNC\tBEHIND\tLAG\tNEWEST\tBASE\tLAST TRANSFER\tFAILURES\tERROR"
		}
		fmt.Fprintln(tw, header)
		rows := TargetRows(dr)
		if len(rows) == 0 {
			fmt.Fprintln(tw, "  (no targets)")
		}
		for _, r := range rows {
			state := r.State
			if r.Removed {
				state += " (removed from spec)"
			}
			if p := progressCell(r.Transfer, now, wide); p != "" {
				state += " " + p
			}
			cells := []string{"  " + r.Target, state, ago(r.LastSync, now), strconv.Itoa(r.Behind), since(r.NewestTime, now)}
			if wide {
				cells = append(cells, orNone(r.Newest), orNone(r.Base), transfer(r), strconv.Itoa(r.Failures), orNone(oneLine(r.Error)))
			} else {
				cells = append(cells, orNone(truncate(oneLine(r.Error), errorWidth)))
			}
			writeRow(tw, cells...)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if line := promotionLine(dr); line != "" {
			fmt.Fprintf(w, "  %s\n", Clean(line))
		}
	}
	return nil
}

// promotionLine describes dr's last promotion (docs/failover.md), or ""
// when it never had one.
func promotionLine(dr *z8rv1.DatasetReplication) string {
	p := dr.Status.Promotion
	if p == nil {
		return ""
	}
	s := fmt.Sprintf("promotion %s -> %s: %s", Location(p.From.Node, p.From.Dataset), Location(p.To.Node, p.To.Dataset), p.Phase)
	if p.Kind != "" {
		s += " (" + p.Kind + ")"
	}
	if p.RecoveryPoint != "" {
		s += ", recovery point " + p.RecoveryPoint
		if p.RecoveryPointTime != nil {
			s += " taken " + p.RecoveryPointTime.UTC().Format(time.RFC3339)
		}
	}
	if p.Rejoin != "" && p.Rejoin != z8rv1.RejoinDone {
		s += ", old source rejoin " + p.Rejoin
	}
	if p.TailAside != "" {
		s += ", its tail kept in " + p.TailAside
	}
	if p.Message != "" {
		s += ": " + oneLine(p.Message)
	}
	return s
}

// sourceSummary is the source line after name and location: overall state,
// targets synced, schedule, newest snapshot and next snapshot.
func sourceSummary(dr *z8rv1.DatasetReplication, now time.Time) string {
	st := dr.Status
	state := orNone(st.State)
	if dr.Spec.Suspend {
		state = "Suspended"
	}
	parts := []string{"state " + state}
	if st.TargetsSummary != "" {
		parts = append(parts, "synced "+st.TargetsSummary)
	}
	parts = append(parts, "schedule "+orDefault(dr.Spec.Schedule, "6h"))
	if st.LastSnapshot != "" {
		s := "last snapshot " + st.LastSnapshot
		if st.LastSnapshotTime != nil {
			s += " (" + ago(st.LastSnapshotTime.Time, now) + ")"
		}
		parts = append(parts, s)
	} else {
		parts = append(parts, "no snapshot yet")
	}
	if st.NextSnapshotTime != nil && !dr.Spec.Suspend {
		parts = append(parts, "next "+until(st.NextSnapshotTime.Time, now))
	}
	if c := meta(st.Conditions, "Ready"); c != nil && c.Status == metav1.ConditionFalse && c.Message != "" {
		parts = append(parts, "not ready: "+truncate(oneLine(c.Message), errorWidth))
	}
	return strings.Join(parts, ", ")
}

func transfer(r TargetRow) string {
	if r.Kind == "" && r.Bytes == 0 {
		return none
	}
	s := orNone(r.Kind) + " " + bytesIEC(r.Bytes)
	if r.Duration > 0 {
		s += " in " + r.Duration.Round(time.Millisecond).String()
	}
	return s
}

// progressCell is a running transfer in a few words, after the state:
// "(35% of 512 MiB, 40 MiB/s, 8s left)", or "(120 MiB, 40 MiB/s)" when
// the size is not known; wide adds the step. "" without a transfer.
func progressCell(p *z8rv1.TransferProgress, now time.Time, wide bool) string {
	if p == nil {
		return ""
	}
	var parts []string
	if p.BytesExpected > 0 {
		pct := min(100*p.BytesDone/p.BytesExpected, 100)
		parts = append(parts, fmt.Sprintf("%d%% of %s", pct, bytesIEC(p.BytesExpected)))
	} else {
		parts = append(parts, bytesIEC(p.BytesDone))
	}
	if p.BytesPerSecond > 0 {
		parts = append(parts, bytesIEC(p.BytesPerSecond)+"/s")
	}
	if p.EstimatedCompletion != nil {
		left := "0s"
		if p.EstimatedCompletion.After(now) {
			left = duration.HumanDuration(p.EstimatedCompletion.Sub(now))
		}
		parts = append(parts, left+" left")
	}
	if wide && p.Steps > 0 {
		parts = append(parts, fmt.Sprintf("step %d/%d", p.Step, p.Steps))
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// SnapshotCell says what status reports about one snapshot at one location.
type SnapshotCell struct {
	Newest bool
	// HeldFor lists the target nodes whose incremental base this snapshot
	// is (held on the source).
	HeldFor []string
}

func (c SnapshotCell) String() string {
	var parts []string
	if c.Newest {
		parts = append(parts, "newest")
	}
	if len(c.HeldFor) > 0 {
		parts = append(parts, "base of "+strings.Join(c.HeldFor, ","))
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, ", ")
}

// SnapshotMatrix is what a DatasetReplication's status says about which
// snapshot is where: Locations[0] is the source, then the targets;
// Cells[snapshot][i] is the snapshot at Locations[i]. Status reports each
// location's newest snapshot and the bases held on the source, not a full
// listing: an empty cell means "not reported", not "absent".
type SnapshotMatrix struct {
	Locations []string
	Snapshots []string // newest first
	Cells     map[string][]SnapshotCell
}

// Snapshots builds the SnapshotMatrix of dr.
func Snapshots(dr *z8rv1.DatasetReplication) SnapshotMatrix {
	rows := TargetRows(dr)
	m := SnapshotMatrix{Locations: []string{Location(dr.Spec.Source.Node, dr.Spec.Source.Dataset)}, Cells: map[string][]SnapshotCell{}}
	for _, r := range rows {
		m.Locations = append(m.Locations, r.Target)
	}
	cell := func(snap string, loc int) *SnapshotCell {
		if _, ok := m.Cells[snap]; !ok {
			m.Cells[snap] = make([]SnapshotCell, len(m.Locations))
			m.Snapshots = append(m.Snapshots, snap)
		}
		return &m.Cells[snap][loc]
	}
	if s := dr.Status.LastSnapshot; s != "" {
		cell(s, 0).Newest = true
	}
	for i, r := range rows {
		if r.Base != "" {
			c := cell(r.Base, 0)
			c.HeldFor = append(c.HeldFor, r.Node)
		}
		if r.Newest != "" {
			cell(r.Newest, i+1).Newest = true
		}
	}
	slices.SortStableFunc(m.Snapshots, func(a, b string) int { return compareSnapshots(b, a) })
	return m
}

// compareSnapshots orders z8r names by their time (then suffix as a
// number), and other names after them by name.
func compareSnapshots(a, b string) int {
	_, ta, oka := snapname.Parse(a)
	_, tb, okb := snapname.Parse(b)
	switch {
	case oka && okb && !ta.Equal(tb):
		return ta.Compare(tb)
	case oka && okb:
		return suffix(a) - suffix(b)
	case oka != okb:
		if oka {
			return 1 // z8r's time-named snapshots sort as newer than unknown names
		}
		return -1
	}
	return strings.Compare(a, b)
}

// suffix is the collision suffix N of a z8r name "...Z-N" (0 without).
func suffix(name string) int {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || !strings.HasSuffix(name[:i], "Z") {
		return 0
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil {
		return 0
	}
	return n
}

// WriteSnapshots writes, per DatasetReplication, a table with a row per
// snapshot the status names and a column per location (source first).
func WriteSnapshots(w io.Writer, reps []z8rv1.DatasetReplication, now time.Time) error {
	if len(reps) == 0 {
		_, err := fmt.Fprintln(w, "No DatasetReplications found.")
		return err
	}
	sortReplications(reps)
	for i := range reps {
		dr := &reps[i]
		if i > 0 {
			fmt.Fprintln(w)
		}
		m := Snapshots(dr)
		fmt.Fprintf(w, "%s  %s\n", Clean(dr.Name), Clean(Location(dr.Spec.Source.Node, dr.Spec.Source.Dataset)))
		tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		header := []string{"  SNAPSHOT", "AGE", m.Locations[0] + " (source)"}
		header = append(header, m.Locations[1:]...)
		writeRow(tw, header...)
		if len(m.Snapshots) == 0 {
			fmt.Fprintln(tw, "  (no snapshot reported yet)")
		}
		for _, s := range m.Snapshots {
			age := none
			if _, t, ok := snapname.Parse(s); ok {
				age = duration.HumanDuration(now.Sub(t))
			}
			cells := []string{"  " + s, age}
			for _, c := range m.Cells[s] {
				cells = append(cells, orNone(c.String()))
			}
			writeRow(tw, cells...)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(w, "\n(from status: the newest snapshot at each location and the incremental bases held on the source; \"-\" means not reported, not absent)")
	return err
}

// Trust states of a node's host key.
const (
	TrustPinned   = "pinned"
	TrustUnpinned = "not pinned"
	TrustChanged  = "CHANGED"
	TrustNoKey    = "no key"
)

// Trust says whether the host key a node's agent publishes is the pinned
// one.
func Trust(zn *z8rv1.Z8RNode) string {
	switch {
	case zn.Status.HostKey == "":
		return TrustNoKey
	case zn.Spec.PinnedHostKey == "":
		return TrustUnpinned
	case sameKey(zn.Spec.PinnedHostKey, zn.Status.HostKey):
		return TrustPinned
	}
	return TrustChanged
}

// WriteNodes writes a table of Z8RNodes: address, pools, ZFS, capabilities,
// readiness, heartbeat, host key fingerprint and whether it is pinned.
func WriteNodes(w io.Writer, nodes []z8rv1.Z8RNode, now time.Time, wide bool) error {
	if len(nodes) == 0 {
		_, err := fmt.Fprintln(w, "No Z8RNodes found (no z8r agent has started).")
		return err
	}
	slices.SortFunc(nodes, func(a, b z8rv1.Z8RNode) int { return strings.Compare(a.Name, b.Name) })
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	header := "NAME\tADDRESS\tPOOLS\tZFS\tCAPABILITIES\tREADY\tHEARTBEAT\tHOST KEY\tTRUST"
	if wide {
		header += "\tPINNED KEY\tMESSAGE"
	}
	fmt.Fprintln(tw, header)
	for i := range nodes {
		zn := &nodes[i]
		st := zn.Status
		zfs := strings.TrimSpace(st.Implementation + " " + st.ZFSVersion)
		heartbeat := none
		if st.LastHeartbeatTime != nil {
			heartbeat = ago(st.LastHeartbeatTime.Time, now)
		}
		trust := Trust(zn)
		if trust == TrustChanged && !wide {
			trust += " (kubectl z8r approve-hostkey " + zn.Name + ")"
		}
		cells := []string{zn.Name, orNone(st.Address), orNone(strings.Join(st.Pools, ",")), orNone(zfs),
			orNone(strings.Join(st.Capabilities, ",")), strconv.FormatBool(st.Ready), heartbeat, orNone(st.HostKeyFingerprint), trust}
		if wide {
			cells = append(cells, orNone(fingerprint(zn.Spec.PinnedHostKey)), orNone(oneLine(st.Message)))
		}
		writeRow(tw, cells...)
	}
	return tw.Flush()
}

// HostKeyReview is what approve-hostkey shows before it pins.
type HostKeyReview struct {
	Node string
	// Pinned is the fingerprint of spec.pinnedHostKey ("" when none).
	Pinned string
	// Presented is the fingerprint of status.hostKey, the key to approve.
	Presented string
	// PresentedKey is status.hostKey, what approving writes to the pin.
	PresentedKey string
	// AlreadyPinned: the presented key is the pinned one; nothing to do.
	AlreadyPinned bool
	Address       string
	Heartbeat     *metav1.Time
}

// ReviewHostKey checks the key zn's agent publishes and returns what
// approving it would change. It fails when no key is published or the
// published key does not parse.
func ReviewHostKey(zn *z8rv1.Z8RNode) (HostKeyReview, error) {
	r := HostKeyReview{Node: zn.Name, PresentedKey: zn.Status.HostKey, Address: zn.Status.Address, Heartbeat: zn.Status.LastHeartbeatTime}
	if zn.Status.HostKey == "" {
		return r, fmt.Errorf("Z8RNode %s: its agent has published no host key", zn.Name)
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(zn.Status.HostKey))
	if err != nil {
		return r, fmt.Errorf("Z8RNode %s: published host key: %w", zn.Name, err)
	}
	r.Presented = ssh.FingerprintSHA256(pk)
	if zn.Spec.PinnedHostKey != "" {
		r.Pinned = fingerprint(zn.Spec.PinnedHostKey)
		r.AlreadyPinned = sameKey(zn.Spec.PinnedHostKey, zn.Status.HostKey)
	}
	return r, nil
}

// WriteReview writes the fingerprints an administrator compares before
// approving.
func WriteReview(w io.Writer, r HostKeyReview, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node\t%s\n", Clean(r.Node))
	fmt.Fprintf(tw, "pinned key\t%s\n", Clean(orDefault(r.Pinned, "(none)")))
	presented := r.Presented
	if r.Address != "" {
		presented += "  published by the agent at " + r.Address
		if r.Heartbeat != nil {
			presented += ", " + ago(r.Heartbeat.Time, now)
		}
	}
	fmt.Fprintf(tw, "presented key\t%s\n", Clean(presented))
	return tw.Flush()
}

// sameKey compares a pinned and a presented key as the controller does
// (controllers.AgentPool, the Z8RNode reconciler): as authorized_keys
// strings, so a key that differs only in its comment counts as changed, and
// approving it pins the exact string.
func sameKey(pinned, presented string) bool { return pinned == presented }

// fingerprint is the SHA256 fingerprint of an authorized_keys line, or
// "(unparsable)".
func fingerprint(key string) string {
	if key == "" {
		return ""
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return "(unparsable)"
	}
	return ssh.FingerprintSHA256(pk)
}

func meta(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

func sortReplications(reps []z8rv1.DatasetReplication) {
	slices.SortFunc(reps, func(a, b z8rv1.DatasetReplication) int { return strings.Compare(a.Name, b.Name) })
}

// ago is "5m ago", or "never" for the zero time.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	if t.After(now) {
		return "just now"
	}
	return duration.HumanDuration(now.Sub(t)) + " ago"
}

// since is the age of t, or "-" for the zero time.
func since(t, now time.Time) string {
	if t.IsZero() {
		return none
	}
	if t.After(now) {
		return "0s"
	}
	return duration.HumanDuration(now.Sub(t))
}

// until is "in 4h", or "due" when t has passed.
func until(t, now time.Time) string {
	if !t.After(now) {
		return "due"
	}
	return "in " + duration.HumanDuration(t.Sub(now))
}

func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func orNone(s string) string { return orDefault(s, none) }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
