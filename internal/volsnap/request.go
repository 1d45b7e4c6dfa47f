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

// Request is a replicate-to value and the object it was found on.
type Request struct {
	Value string
	From  Annotated
}

// Targets parses and resolves the request for a source.
func (r Request) Targets(srcNode, srcDataset string) ([]Target, error) {
	ts, err := ResolveTargets(r.Value, srcNode, srcDataset)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.From, err)
	}
	return ts, nil
}
