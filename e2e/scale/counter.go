//go:build scale

package scale

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// Call is one kind of API request: verb (GET, LIST, WATCH, CREATE, UPDATE,
// PATCH, DELETE) and resource (with its subresource, e.g.
// "datasetreplications/status").
type Call struct {
	Verb     string
	Resource string
}

// Counts are requests by kind.
type Counts map[Call]int

// Counter is an http.RoundTripper wrapper that counts the API requests
// passing through it.
type Counter struct {
	mu     sync.Mutex
	counts Counts
}

// NewCounter returns an empty Counter.
func NewCounter() *Counter { return &Counter{counts: Counts{}} }

// Wrap is a rest.Config WrapTransport function.
func (c *Counter) Wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		call := Classify(req.Method, req.URL.Path, req.URL.Query().Get("watch") == "true")
		c.mu.Lock()
		c.counts[call]++
		c.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

// Snapshot returns a copy of the counts so far.
func (c *Counter) Snapshot() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := Counts{}
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Classify names an API request by verb and resource from its method and
// path (/api/v1/..., /apis/group/version/...).
func Classify(method, path string, watch bool) Call {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var rest []string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		rest = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		rest = parts[3:]
	default:
		return Call{Verb: method, Resource: path}
	}
	if len(rest) >= 2 && rest[0] == "namespaces" && len(rest) != 2 {
		rest = rest[2:] // namespaced resource (not GET of a namespace)
	}
	resource, named := "", false
	if len(rest) > 0 {
		resource = rest[0]
	}
	if len(rest) > 1 {
		named = true
	}
	if len(rest) > 2 {
		resource += "/" + rest[2]
	}
	verb := method
	switch method {
	case http.MethodGet:
		switch {
		case watch:
			verb = "WATCH"
		case named:
			verb = "GET"
		default:
			verb = "LIST"
		}
	case http.MethodPost:
		verb = "CREATE"
	case http.MethodPut:
		verb = "UPDATE"
	case http.MethodPatch:
		verb = "PATCH"
	case http.MethodDelete:
		verb = "DELETE"
	}
	return Call{Verb: verb, Resource: resource}
}

// Sub returns c minus base.
func (c Counts) Sub(base Counts) Counts {
	out := Counts{}
	for k, v := range c {
		if d := v - base[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// Verb sums the requests of one verb.
func (c Counts) Verb(verb string) int {
	n := 0
	for k, v := range c {
		if k.Verb == verb {
			n += v
		}
	}
	return n
}

// Writes sums CREATE, UPDATE, PATCH and DELETE requests.
func (c Counts) Writes() int {
	return c.Verb("CREATE") + c.Verb("UPDATE") + c.Verb("PATCH") + c.Verb("DELETE")
}

// Total sums every request.
func (c Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// Table formats the counts as Markdown rows, "| verb | resource | n | n/per |",
// sorted by verb and resource.
func (c Counts) Table(per int) string {
	keys := make([]Call, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Verb != keys[j].Verb {
			return keys[i].Verb < keys[j].Verb
		}
		return keys[i].Resource < keys[j].Resource
	})
	var b strings.Builder
	fmt.Fprintf(&b, "| verb | resource | requests | per reconcile (%d) |\n| --- | --- | --- | --- |\n", per)
	for _, k := range keys {
		fmt.Fprintf(&b, "| %s | %s | %d | %.2f |\n", k.Verb, k.Resource, c[k], ratio(c[k], per))
	}
	return b.String()
}

func ratio(n, d int) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}
