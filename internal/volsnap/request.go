package volsnap

import "fmt"

// Annotated is an object that may carry a replicate-to annotation, for
// error messages and events: "VolumeSnapshot ns/name".
type Annotated struct {
	Kind        string
	Name        string
	Annotations map[string]string
}

func (a Annotated) String() string { return a.Kind + " " + a.Name }

// Request is the replicate-to value in force for a snapshot and where it
// was found.
type Request struct {
	Value string
	From  Annotated
}

// Requested returns the replicate-to value of the most specific object
// that has the annotation key, in the order given (z8r passes the
// content, its VolumeSnapshot, the PVC, then the class). ok is false when
// none has it. An empty value counts: it turns replication off for a
// snapshot whose PVC or class asks for it.
func Requested(key string, objs ...Annotated) (Request, bool) {
	for _, o := range objs {
		if v, ok := o.Annotations[key]; ok {
			return Request{Value: v, From: o}, true
		}
	}
	return Request{}, false
}

// Targets parses and resolves the request for a source.
func (r Request) Targets(srcNode, srcDataset string) ([]Target, error) {
	ts, err := ResolveTargets(r.Value, srcNode, srcDataset)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.From, err)
	}
	return ts, nil
}
