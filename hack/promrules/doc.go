// Package promrules checks z8r's monitoring files against Prometheus itself.
// It is a module of its own (hack/promrules/go.mod) so that
// github.com/prometheus/prometheus, whose dependency graph would move the
// main module's Kubernetes modules, never enters z8r's go.mod. It uses z8r
// through `replace github.com/z8r-project/z8r => ../..`: after a change to
// z8r's go.mod, run `go mod tidy` here too.
//
// The tests (make test-promrules, part of make test):
//   - config/prometheus/prometheusrule.yaml is parsed with Prometheus's rule
//     parser (model/rulefmt, which also parses every expression and
//     annotation template), every alert has a severity, a summary, a
//     description and a runbook_url naming a section of docs/metrics.md;
//   - every metric an expression selects, and every label it matches on, is
//     one the controller registers (controllers.NewMetrics, read from a
//     recording prometheus.Registerer);
//   - each alert fires on the synthetic series it is meant for, and not on
//     healthy ones (Prometheus's PromQL engine over promqltest storage);
//   - config/grafana/z8r-dashboard.json parses, and every panel query and
//     template-variable query uses only registered metrics and labels.
package promrules
