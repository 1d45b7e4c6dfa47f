package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/z8r-project/z8r/internal/agent"
	"github.com/z8r-project/z8r/internal/snapname"
	"github.com/z8r-project/z8r/internal/testbed/resumetok"
	"github.com/z8r-project/z8r/zfsexec"
)

// fakeSnap is one snapshot or bookmark of a fake node.
type fakeSnap struct {
	name  string // full name
	guid  uint64
	txg   uint64
	props map[string]string // local user properties
	holds map[string]bool
}

// fakeNode is a tiny OpenZFS node for resume's unit tests: it answers the
// commands resume runs (version, get, hold, release, set, recv -A,
// bookmark) from an in-memory model and logs every argv in order.
type fakeNode struct {
	mu       sync.Mutex
	name     string
	datasets map[string]bool
	snaps    []*fakeSnap
	token    map[string]string // dataset -> receive_resume_token
	dsProps  map[string]map[string]string
	events   *[]string
}

func newFakeNode(name string, events *[]string, datasets ...string) *fakeNode {
	n := &fakeNode{name: name, datasets: map[string]bool{}, token: map[string]string{}, dsProps: map[string]map[string]string{}, events: events}
	for _, d := range datasets {
		n.datasets[d] = true
	}
	return n
}

func (n *fakeNode) add(name string, guid, txg uint64, props map[string]string) {
	n.snaps = append(n.snaps, &fakeSnap{name: name, guid: guid, txg: txg, props: props, holds: map[string]bool{}})
}

func (n *fakeNode) find(name string) *fakeSnap {
	for _, s := range n.snaps {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (n *fakeNode) holds(tag string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, s := range n.snaps {
		if s.holds[tag] {
			out = append(out, s.name)
		}
	}
	sort.Strings(out)
	return out
}

func cmdErr(argv []string, code int, stderr string) error {
	return &zfsexec.CommandError{Argv: argv, ExitCode: code, Stderr: stderr}
}

func (n *fakeNode) Run(_ context.Context, c zfsexec.Command) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := c.Argv
	*n.events = append(*n.events, n.name+": "+strings.Join(a, " "))
	out := func(s string) error {
		if c.Stdout != nil {
			_, _ = io.WriteString(c.Stdout, s)
		}
		return nil
	}
	notExist := func(name string) error {
		return cmdErr(a, 1, fmt.Sprintf("cannot open '%s': dataset does not exist\n", name))
	}
	switch {
	case len(a) == 2 && a[1] == "version":
		return out("zfs-2.3.2-2~bpo12+2\nzfs-kmod-2.3.2-2~bpo12+2\n")
	case len(a) > 2 && a[1] == "get":
		name := a[len(a)-1]
		props := strings.Split(a[len(a)-2], ",")
		if props[0] == "receive_resume_token" {
			if !n.datasets[name] {
				return notExist(name)
			}
			tok := n.token[name]
			if tok == "" {
				tok = "-"
			}
			return out(fmt.Sprintf("%s\treceive_resume_token\t%s\t-\n", name, tok))
		}
		if strings.Contains(name, "@") {
			s := n.find(name)
			if s == nil {
				return notExist(name)
			}
			return out(fmt.Sprintf("%s\tguid\t%d\t-\n", name, s.guid))
		}
		if !n.datasets[name] {
			return notExist(name)
		}
		var b strings.Builder
		if !strings.Contains(strings.Join(a, " "), " -d ") {
			// Properties of the dataset itself.
			defaults := map[string]string{"type": "filesystem", "mounted": "no", "readonly": "off", "guid": "1"}
			for _, p := range props {
				if v, ok := n.dsProps[name][p]; ok {
					fmt.Fprintf(&b, "%s\t%s\t%s\tlocal\n", name, p, v)
				} else if v, ok := defaults[p]; ok {
					fmt.Fprintf(&b, "%s\t%s\t%s\tdefault\n", name, p, v)
				} else {
					fmt.Fprintf(&b, "%s\t%s\t-\t-\n", name, p)
				}
			}
			return out(b.String())
		}
		row := func(obj, typ string, guid, txg uint64, refs int, local map[string]string) {
			fmt.Fprintf(&b, "%s\ttype\t%s\t-\n%s\tguid\t%d\t-\n%s\tcreatetxg\t%d\t-\n%s\tcreation\t%d\t-\n%s\tuserrefs\t%d\t-\n",
				obj, typ, obj, guid, obj, txg, obj, 1700000000+txg, obj, refs)
			for _, p := range props {
				if strings.Contains(p, ":") {
					if v, ok := local[p]; ok {
						fmt.Fprintf(&b, "%s\t%s\t%s\tlocal\n", obj, p, v)
					} else {
						fmt.Fprintf(&b, "%s\t%s\t-\t-\n", obj, p)
					}
				}
			}
		}
		row(name, "filesystem", 1, 1, 0, nil)
		for _, s := range n.snaps {
			if fs, _ := zfsexec.SplitSnapshot(s.name); fs == name {
				typ := "snapshot"
				if strings.Contains(s.name, "#") {
					typ = "bookmark"
				}
				row(s.name, typ, s.guid, s.txg, len(s.holds), s.props)
			}
		}
		return out(b.String())
	case len(a) == 4 && (a[1] == "hold" || a[1] == "release"):
		s := n.find(a[3])
		if s == nil {
			return notExist(a[3])
		}
		if a[1] == "hold" {
			if s.holds[a[2]] {
				return cmdErr(a, 1, "cannot hold '"+a[3]+"': tag already exists on this dataset\n")
			}
			s.holds[a[2]] = true
			return nil
		}
		if !s.holds[a[2]] {
			return cmdErr(a, 1, "cannot release '"+a[2]+"' from '"+a[3]+"': no such tag on this dataset\n")
		}
		delete(s.holds, a[2])
		return nil
	case len(a) == 4 && a[1] == "recv" && a[2] == "-A":
		if n.token[a[3]] == "" {
			return cmdErr(a, 1, "'"+a[3]+"' does not have any resumable receive state to abort\n")
		}
		delete(n.token, a[3])
		return nil
	case len(a) == 4 && a[1] == "set":
		k, v, _ := strings.Cut(a[2], "=")
		if s := n.find(a[3]); s != nil {
			if s.props == nil {
				s.props = map[string]string{}
			}
			s.props[k] = v
			return nil
		}
		if !n.datasets[a[3]] {
			return notExist(a[3])
		}
		if n.dsProps[a[3]] == nil {
			n.dsProps[a[3]] = map[string]string{}
		}
		n.dsProps[a[3]][k] = v
		return nil
	case len(a) == 4 && a[1] == "bookmark":
		s := n.find(a[2])
		if s == nil {
			return notExist(a[2])
		}
		if n.find(a[3]) == nil {
			n.add(a[3], s.guid, s.txg, nil)
		}
		return nil
	}
	return cmdErr(a, 2, "fakeNode: unexpected command")
}

// fakeEndpoint is a node whose Transfer is scripted.
type fakeEndpoint struct {
	node     *fakeNode
	transfer func(req agent.TransferRequest) (agent.Result, error)
	reqs     []agent.TransferRequest
}

func (e *fakeEndpoint) ZFS() *zfsexec.ZFS { return zfsexec.New(e.node) }

func (e *fakeEndpoint) Transfer(_ context.Context, req agent.TransferRequest, _ func(agent.Progress)) (agent.Result, error) {
	e.node.mu.Lock()
	*e.node.events = append(*e.node.events, "transfer")
	e.node.mu.Unlock()
	e.reqs = append(e.reqs, req)
	return e.transfer(req)
}

// testToken builds a real-format receive_resume_token for toname/toguid,
// incremental from fromguid when non-zero.
func testToken(toname string, toguid, fromguid uint64) string {
	return resumetok.Encode(toname, toguid, fromguid)
}

var owned = map[string]string{snapname.OwnerProp: snapname.OwnerValue, snapname.PolicyProp: "p1"}

// resumeWorld is a source with tank/d@a (guid 10) and @b (guid 20), both
// z8r's, and a target tank/r with an interrupted receive.
type resumeWorld struct {
	events   []string
	src, dst *fakeNode
	srcEP    *fakeEndpoint
	target   Target
}

func newResumeWorld(incremental bool) *resumeWorld {
	w := &resumeWorld{}
	w.src = newFakeNode("src", &w.events, "tank/d")
	w.src.add("tank/d@a", 10, 5, owned)
	w.src.add("tank/d@b", 20, 6, owned)
	w.dst = newFakeNode("dst", &w.events, "tank/r")
	if incremental {
		w.dst.add("tank/r@a", 10, 3, nil)
		w.dst.token["tank/r"] = testToken("tank/d@b", 20, 10)
	} else {
		w.dst.token["tank/r"] = testToken("tank/d@a", 10, 0)
	}
	w.srcEP = &fakeEndpoint{node: w.src, transfer: func(req agent.TransferRequest) (agent.Result, error) {
		// A successful resume completes the receive.
		tok, _ := zfsexec.DecodeResumeToken(req.Send.ResumeToken)
		_, short := zfsexec.SplitSnapshot(tok.ToName)
		w.dst.mu.Lock()
		delete(w.dst.token, "tank/r")
		w.dst.snaps = append(w.dst.snaps, &fakeSnap{name: "tank/r@" + short, guid: tok.ToGUID, txg: 9, holds: map[string]bool{}})
		w.dst.mu.Unlock()
		return agent.Result{Bytes: 1 << 20}, nil
	}}
	w.target = Target{ID: "t1", PolicyID: "p1", Endpoint: &fakeEndpoint{node: w.dst}, Addr: "dst:2022", HostKey: "key", Dataset: "tank/r"}
	return w
}

// logCtx records log lines into the world's event log, so tests can check
// the report came before the abort.
func (w *resumeWorld) logCtx() context.Context {
	return logr.NewContext(context.Background(), funcr.New(func(prefix, args string) {
		w.src.mu.Lock()
		w.events = append(w.events, "log: "+args)
		w.src.mu.Unlock()
	}, funcr.Options{}))
}

// resume runs one session's resume step against the world.
func (w *resumeWorld) resume() (*StepResult, error) {
	ctx := w.logCtx()
	s, err := newSession(ctx, w.srcEP, "tank/d", w.target, Options{})
	if err != nil {
		return nil, err
	}
	return s.resume(ctx)
}

func (w *resumeWorld) index(prefix string) int {
	for i, e := range w.events {
		if strings.HasPrefix(e, prefix) {
			return i
		}
	}
	return -1
}

func TestResume_MatchingTokenResumes(t *testing.T) {
	for _, incremental := range []bool{false, true} {
		t.Run(fmt.Sprint("incremental=", incremental), func(t *testing.T) {
			w := newResumeWorld(incremental)
			step, err := w.resume()
			if err != nil {
				t.Fatal(err)
			}
			wantTo := "a"
			if incremental {
				wantTo = "b"
			}
			if step == nil || !step.Resumed || step.To != wantTo || step.Bytes != 1<<20 {
				t.Fatalf("step = %+v", step)
			}
			if len(w.srcEP.reqs) != 1 {
				t.Fatalf("%d transfers", len(w.srcEP.reqs))
			}
			req := w.srcEP.reqs[0]
			if req.Send.ResumeToken == "" || !req.Recv.Resumable || !req.Recv.Unmounted || req.Recv.Target != "tank/r" {
				t.Errorf("request %+v", req)
			}
			if incremental && (req.Recv.BaseGUID != 10 || step.From != "a") {
				t.Errorf("incremental resume: base guid %d, from %q", req.Recv.BaseGUID, step.From)
			}
			if w.index("dst: zfs recv -A") >= 0 {
				t.Error("a matching token was aborted")
			}
			// The step hold covered the transfer and is gone; the base
			// hold moved to the resumed snapshot.
			hold := w.index("src: zfs hold " + snapname.StepHoldTag("t1") + " tank/d@" + wantTo)
			if hold < 0 || hold > w.index("transfer") {
				t.Errorf("no step hold on @%s before the transfer: %q", wantTo, w.events)
			}
			if h := w.src.holds(snapname.StepHoldTag("t1")); len(h) != 0 {
				t.Errorf("step holds left: %v", h)
			}
			if h := w.src.holds(snapname.HoldTag("t1")); len(h) != 1 || h[0] != "tank/d@"+wantTo {
				t.Errorf("base holds %v, want tank/d@%s", h, wantTo)
			}
			if got := w.dst.find("tank/r@" + wantTo).props[snapname.OwnerProp]; got != snapname.OwnerValue {
				t.Errorf("resumed snapshot not marked owned: %v", w.dst.find("tank/r@"+wantTo).props)
			}
			if !incremental && w.dst.dsProps["tank/r"]["readonly"] != "on" {
				t.Errorf("resumed full target not readonly: %v", w.dst.dsProps)
			}
		})
	}
}

func TestResume_MismatchReportedThenAborted(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(w *resumeWorld)
		reason string
	}{
		{"token of another dataset", func(w *resumeWorld) {
			w.src.add("tank/other@a", 10, 5, nil)
			w.dst.token["tank/r"] = testToken("tank/other@a", 10, 0)
		}, "not a snapshot of tank/d"},
		{"source snapshot destroyed", func(w *resumeWorld) {
			w.dst.token["tank/r"] = testToken("tank/d@gone", 99, 0)
		}, "no snapshot with guid 99"},
		{"source snapshot recreated under the same name", func(w *resumeWorld) {
			w.src.find("tank/d@a").guid = 11
		}, "no snapshot with guid 10"},
		{"incremental source gone on the source", func(w *resumeWorld) {
			w.dst.add("tank/r@x", 5, 2, nil)
			w.dst.token["tank/r"] = testToken("tank/d@b", 20, 5)
		}, "incremental source's guid 5"},
		{"incremental from a snapshot that is not the target's newest", func(w *resumeWorld) {
			w.dst.add("tank/r@a", 10, 3, nil)
			w.dst.add("tank/r@local", 77, 4, nil)
			w.dst.token["tank/r"] = testToken("tank/d@b", 20, 10)
		}, "newest snapshot tank/r@local"},
		{"incremental token into a target without snapshots", func(w *resumeWorld) {
			w.dst.token["tank/r"] = testToken("tank/d@b", 20, 10)
		}, "has no snapshot"},
		{"full token into a target with snapshots", func(w *resumeWorld) {
			w.dst.add("tank/r@a", 10, 3, nil)
		}, "full stream token"},
		{"undecodable token", func(w *resumeWorld) {
			w.dst.token["tank/r"] = "1-abc-12-789c0123456789abcdef"
		}, "invalid resume token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newResumeWorld(false)
			c.setup(w)
			_, err := w.resume()
			var me *ResumeMismatchError
			if !errors.As(err, &me) || !errors.Is(err, ErrResumeAbandoned) {
				t.Fatalf("err = %v, want *ResumeMismatchError", err)
			}
			if !me.Aborted || !strings.Contains(me.Reason, c.reason) || me.Target != "tank/r" {
				t.Errorf("mismatch %+v, want reason containing %q", me, c.reason)
			}
			if len(w.srcEP.reqs) != 0 {
				t.Errorf("a mismatched token was sent: %+v", w.srcEP.reqs)
			}
			logged, aborted := w.index("log: "), w.index("dst: zfs recv -A tank/r")
			if logged < 0 || aborted < 0 || logged > aborted {
				t.Errorf("want the report logged before recv -A: %q", w.events)
			}
			if w.dst.token["tank/r"] != "" {
				t.Error("partial state still there")
			}
			if h := w.src.holds(snapname.StepHoldTag("t1")); len(h) != 0 {
				t.Errorf("step holds placed for a mismatched token: %v", h)
			}
		})
	}
}

func TestResume_TransientFailureKeepsPartialState(t *testing.T) {
	cases := []struct {
		name string
		err  error
	}{
		{"agent unreachable", fmt.Errorf("agent src: open transfer: %w", agent.ErrUnreachable)},
		{"connection dropped mid-stream", cmdErr([]string{"zfs", "recv", "-u", "-s", "tank/r"}, 1,
			"cannot receive resume stream: checksum mismatch or incomplete stream.\nPartially received snapshot is saved.\n")},
		{"context cancelled", context.Canceled},
		{"refused by the agent", &agent.RefusedError{Reason: "pool not allowed"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newResumeWorld(true)
			tok := w.dst.token["tank/r"]
			w.srcEP.transfer = func(agent.TransferRequest) (agent.Result, error) { return agent.Result{}, c.err }
			_, err := w.resume()
			if err == nil || errors.Is(err, ErrResumeAbandoned) || !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want the transfer's error, not abandoned", err)
			}
			if w.index("dst: zfs recv -A") >= 0 || w.dst.token["tank/r"] != tok {
				t.Errorf("partial state discarded after a transient failure: %q", w.events)
			}
			// The step holds stay: the transfer is still in flight.
			if h := w.src.holds(snapname.StepHoldTag("t1")); len(h) != 2 {
				t.Errorf("step holds %v, want @a and @b kept", h)
			}
		})
	}
}

func TestResume_FailureThatVoidsTokenAborts(t *testing.T) {
	cases := []struct {
		name  string
		fail  func(w *resumeWorld) error
		where string
	}{
		{"zfs calls the token corrupt", func(w *resumeWorld) error {
			return cmdErr([]string{"zfs", "send", "-t", "x"}, 255, "cannot resume send: resume token is corrupt (incorrect checksum)\n")
		}, "refused the token"},
		{"source snapshot destroyed during the transfer", func(w *resumeWorld) error {
			// An operator released the step hold and destroyed @b.
			w.src.snaps = w.src.snaps[:1]
			return cmdErr([]string{"zfs", "send", "-t", "x"}, 1, "cannot open 'tank/d@b': dataset does not exist\n")
		}, "no snapshot with guid 20"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newResumeWorld(true)
			w.srcEP.transfer = func(agent.TransferRequest) (agent.Result, error) { return agent.Result{}, c.fail(w) }
			_, err := w.resume()
			var me *ResumeMismatchError
			if !errors.As(err, &me) || !me.Aborted || !strings.Contains(me.Reason, c.where) {
				t.Fatalf("err = %v, want an aborted mismatch about %q", err, c.where)
			}
			if w.dst.token["tank/r"] != "" {
				t.Error("partial state kept")
			}
		})
	}
}

func TestResume_SourceDatasetMissingDecidesNothing(t *testing.T) {
	w := newResumeWorld(false)
	delete(w.src.datasets, "tank/d") // a pool not imported yet
	_, err := w.resume()
	if err == nil || errors.Is(err, ErrResumeAbandoned) || !errors.Is(err, zfsexec.ErrDatasetNotExist) {
		t.Fatalf("err = %v, want the listing error", err)
	}
	if w.index("dst: zfs recv -A") >= 0 || len(w.srcEP.reqs) != 0 {
		t.Errorf("acted without a source: %q", w.events)
	}
}

func TestResume_NoTokenDoesNothing(t *testing.T) {
	w := newResumeWorld(false)
	delete(w.dst.token, "tank/r")
	step, err := w.resume()
	if step != nil || err != nil || len(w.srcEP.reqs) != 0 {
		t.Fatalf("step %+v err %v reqs %d", step, err, len(w.srcEP.reqs))
	}
}

// A full receive execute forced into an existing pristine target resumes
// only with -F (OpenZFS refuses otherwise); a target no longer pristine
// is never forced: its partial state is abandoned instead.
func TestResume_ForcedFullReceive(t *testing.T) {
	pristine := func(w *resumeWorld) {
		w.dst.dsProps["tank/r"] = map[string]string{ReplicaOfProp: "tank/d", "readonly": "on"}
	}
	t.Run("pristine target resumes with -F", func(t *testing.T) {
		w := newResumeWorld(false)
		pristine(w)
		if _, err := w.resume(); err != nil {
			t.Fatal(err)
		}
		if len(w.srcEP.reqs) != 1 || !w.srcEP.reqs[0].Recv.Force {
			t.Fatalf("requests %+v, want one forced resume", w.srcEP.reqs)
		}
	})
	t.Run("new file system resumes without -F", func(t *testing.T) {
		w := newResumeWorld(false)
		if _, err := w.resume(); err != nil {
			t.Fatal(err)
		}
		if len(w.srcEP.reqs) != 1 || w.srcEP.reqs[0].Recv.Force {
			t.Fatalf("requests %+v, want one resume without -F", w.srcEP.reqs)
		}
	})
	t.Run("target written since is abandoned, not forced", func(t *testing.T) {
		w := newResumeWorld(false)
		pristine(w)
		w.dst.dsProps["tank/r"]["readonly"] = "off"
		w.srcEP.transfer = func(req agent.TransferRequest) (agent.Result, error) {
			return agent.Result{}, cmdErr([]string{"zfs", "recv", "-u", "-s", "tank/r"}, 1,
				"cannot receive resume stream: Resuming recv on existing destination 'tank/r' must specify -F to overwrite it\n")
		}
		_, err := w.resume()
		var me *ResumeMismatchError
		if !errors.As(err, &me) || !me.Aborted || w.srcEP.reqs[0].Recv.Force {
			t.Fatalf("err %v, forced %v; want an unforced try, then abandoned", err, w.srcEP.reqs[0].Recv.Force)
		}
	})
}
