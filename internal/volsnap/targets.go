package volsnap

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/z8r-project/z8r/zfsexec"
)

// ErrSyntax is matched by every error ParseTargets returns.
var ErrSyntax = errors.New("invalid replicate-to")

// ErrSelfTarget: a target resolves to the source dataset on the source node.
var ErrSelfTarget = errors.New("target is the source itself")

// TargetSpec is one entry of a replicate-to value.
type TargetSpec struct {
	Node string
	// Dataset is the exact target dataset; empty means the source's name,
	// or, with Prefix, the pool or parent to receive under.
	Dataset string
	// Prefix: Dataset is a pool or parent ("NODE:backup/"); the target is
	// Dataset/<source dataset without its pool>.
	Prefix bool
}

func (s TargetSpec) String() string {
	switch {
	case s.Dataset == "":
		return s.Node
	case s.Prefix:
		return s.Node + ":" + s.Dataset + "/"
	}
	return s.Node + ":" + s.Dataset
}

// Target is a resolved replica location.
type Target struct {
	Node    string
	Dataset string
}

func (t Target) String() string { return t.Node + ":" + t.Dataset }

// ParseTargets reads a replicate-to value (see the package documentation
// for the grammar). An empty value (or one of blanks and commas) is valid
// and asks for no replication.
func ParseTargets(v string) ([]TargetSpec, error) {
	var out []TargetSpec
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		s, err := parseEntry(e)
		if err != nil {
			return nil, fmt.Errorf("%w %q: entry %q: %w", ErrSyntax, v, e, err)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func parseEntry(e string) (TargetSpec, error) {
	node, dest, hasDest := strings.Cut(e, ":")
	node = strings.TrimSpace(node)
	if node == "" {
		return TargetSpec{}, errors.New("no node name")
	}
	if errs := validation.IsDNS1123Subdomain(node); len(errs) > 0 {
		return TargetSpec{}, fmt.Errorf("node name %q: %s", node, strings.Join(errs, "; "))
	}
	s := TargetSpec{Node: node}
	if !hasDest {
		return s, nil
	}
	dest = strings.TrimSpace(dest)
	if dest == "" {
		return TargetSpec{}, errors.New("empty dataset after ':' (write NODE, NODE:DATASET or NODE:PARENT/)")
	}
	if strings.Contains(dest, ":") {
		return TargetSpec{}, errors.New("more than one ':' (write NODE, NODE:DATASET or NODE:PARENT/)")
	}
	if p, ok := strings.CutSuffix(dest, "/"); ok {
		s.Prefix, dest = true, p
	}
	if err := zfsexec.ValidateDataset(dest); err != nil {
		return TargetSpec{}, err
	}
	s.Dataset = dest
	return s, nil
}

// Resolve returns where s puts a replica of srcDataset from srcNode.
func (s TargetSpec) Resolve(srcNode, srcDataset string) (Target, error) {
	t := Target{Node: s.Node, Dataset: s.Dataset}
	switch {
	case s.Dataset == "":
		t.Dataset = srcDataset
	case s.Prefix:
		rest := srcDataset
		if _, after, ok := strings.Cut(srcDataset, "/"); ok {
			rest = after
		}
		t.Dataset = s.Dataset + "/" + rest
	}
	if err := zfsexec.ValidateDataset(t.Dataset); err != nil {
		return Target{}, fmt.Errorf("%w: target %s: %w", ErrSyntax, s, err)
	}
	if t.Node == srcNode && t.Dataset == srcDataset {
		return Target{}, fmt.Errorf("%w: %s would replicate %s onto itself", ErrSelfTarget, s, srcDataset)
	}
	return t, nil
}

// ResolveTargets parses v and resolves every entry for a source; repeats
// that resolve to the same target are dropped.
func ResolveTargets(v, srcNode, srcDataset string) ([]Target, error) {
	specs, err := ParseTargets(v)
	if err != nil {
		return nil, err
	}
	var out []Target
	for _, s := range specs {
		t, err := s.Resolve(srcNode, srcDataset)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}
