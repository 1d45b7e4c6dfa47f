package promrules

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"go.yaml.in/yaml/v3"

	"github.com/z8r-project/z8r/controllers"
)

var (
	root          = filepath.Join("..", "..")
	ruleFile      = filepath.Join(root, "config", "prometheus", "prometheusrule.yaml")
	dashboardFile = filepath.Join(root, "config", "grafana", "z8r-dashboard.json")
	metricsDoc    = filepath.Join(root, "docs", "metrics.md")
)

const runbookBase = "https://github.com/z8r-project/z8r/blob/main/docs/metrics.md#"

// metric is what the controller registers under one name: its labels.
type metric struct{ labels []string }

// recorder is a prometheus.Registerer that keeps the names and labels of
// what is registered with it (from the collectors' descriptions).
type recorder struct {
	metrics map[string]metric
	errs    []string
}

var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*variableLabels: \{([^}]*)\}\}$`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	_, hist := c.(*prometheus.HistogramVec)
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			r.errs = append(r.errs, "cannot read the name of "+d.String())
			continue
		}
		var labels []string
		if m[2] != "" {
			labels = strings.Split(m[2], ",")
		}
		if !hist {
			r.metrics[m[1]] = metric{labels: labels}
			continue
		}
		r.metrics[m[1]+"_bucket"] = metric{labels: append(slices.Clone(labels), "le")}
		r.metrics[m[1]+"_sum"] = metric{labels: labels}
		r.metrics[m[1]+"_count"] = metric{labels: labels}
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return false }

// registered returns the metrics controllers.NewMetrics registers.
func registered(t *testing.T) map[string]metric {
	t.Helper()
	r := &recorder{metrics: map[string]metric{}}
	controllers.NewMetrics(r)
	if len(r.errs) > 0 {
		t.Fatal(strings.Join(r.errs, "\n"))
	}
	for _, name := range []string{"z8r_last_sync_timestamp_seconds", "z8r_sync_duration_seconds_bucket"} {
		if _, ok := r.metrics[name]; !ok {
			t.Fatalf("%s not among the registered metrics %v: the recorder misreads them", name, r.metrics)
		}
	}
	return r.metrics
}

// checkExpr parses expr with Prometheus's parser and checks that every
// vector selector names a registered metric and matches only its labels.
func checkExpr(t *testing.T, where, expr string, reg map[string]metric) {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", where, expr, err)
		return
	}
	selectors := 0
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		selectors++
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel {
				name = m.Value
			}
		}
		met, ok := reg[name]
		if !ok {
			t.Errorf("%s: %s is not a metric the controller registers", where, name)
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name != model.MetricNameLabel && !slices.Contains(met.labels, m.Name) {
				t.Errorf("%s: %s has no label %q (it has %v)", where, name, m.Name, met.labels)
			}
		}
		return nil
	})
	if selectors == 0 {
		t.Errorf("%s: %q selects no metric", where, expr)
	}
}

// ruleGroups reads the PrometheusRule and parses its spec with
// Prometheus's rule parser, strictly (unknown fields are errors).
func ruleGroups(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	b, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	var obj struct {
		APIVersion string    `yaml:"apiVersion"`
		Kind       string    `yaml:"kind"`
		Spec       yaml.Node `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &obj); err != nil {
		t.Fatalf("%s: %v", ruleFile, err)
	}
	if obj.APIVersion != "monitoring.coreos.com/v1" || obj.Kind != "PrometheusRule" {
		t.Fatalf("%s is a %s %s, want a monitoring.coreos.com/v1 PrometheusRule", ruleFile, obj.APIVersion, obj.Kind)
	}
	spec, err := yaml.Marshal(&obj.Spec)
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(spec, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.Default())
	if len(errs) > 0 {
		t.Fatalf("%s: Prometheus's rule parser: %v", ruleFile, errs)
	}
	return groups
}

// anchors are the GitHub anchors of docs/metrics.md's headings.
func anchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		out[strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-")] = true
	}
	return out
}

func TestRules_ParseAndUseRegisteredMetrics(t *testing.T) {
	reg := registered(t)
	docs := anchors(t)
	groups := ruleGroups(t)
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			where := g.Name + "/" + r.Alert + r.Record
			checkExpr(t, where, r.Expr, reg)
			if r.Alert == "" {
				continue
			}
			alerts++
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", where, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookBase)
			if !ok || !docs[anchor] {
				t.Errorf("%s: runbook_url %q is not a section of docs/metrics.md", where, r.Annotations["runbook_url"])
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts in the rule file")
	}
}

// alertCases feed each alert synthetic series (promqltest's load syntax,
// one sample a minute) and name the series it must return at the given
// time: exactly those, so the healthy series must not fire.
var alertCases = map[string]struct {
	load string
	at   string
	want string
}{
	"Z8rReplicaBehind": {
		load: `z8r_missed_intervals{replication="r",target="n2:tank/a"} 3+0x20
  z8r_missed_intervals{replication="r",target="n3:tank/a"} 2+0x20`,
		at:   "10m",
		want: `{replication="r",target="n2:tank/a"} 3`,
	},
	"Z8rSyncFailing": {
		load: `z8r_target_consecutive_failures{replication="r",target="n2:tank/a"} 3+0x20
  z8r_target_consecutive_failures{replication="r",target="n3:tank/a"} 2+0x20`,
		at:   "10m",
		want: `{replication="r",target="n2:tank/a"} 3`,
	},
	"Z8rTargetOutOfSync": {
		load: `z8r_target_out_of_sync{replication="r",target="n2:tank/a"} 1+0x20
  z8r_target_out_of_sync{replication="r",target="n3:tank/a"} 0+0x20`,
		at:   "10m",
		want: `{replication="r",target="n2:tank/a"} 1`,
	},
	"Z8rTransferStalled": {
		// n2 has moved nothing since time 0; n3 moves every minute; n4 is
		// not transferring; n5 last moved 4 minutes before 30m.
		load: `z8r_transfer_active{replication="r",target="n2:tank/a"} 1+0x40
  z8r_transfer_active{replication="r",target="n5:tank/a"} 1+0x40
  z8r_transfer_last_progress_timestamp_seconds{replication="r",target="n5:tank/a"} 1560+0x40
  z8r_transfer_last_progress_timestamp_seconds{replication="r",target="n2:tank/a"} 0+0x40
  z8r_transfer_active{replication="r",target="n3:tank/a"} 1+0x40
  z8r_transfer_last_progress_timestamp_seconds{replication="r",target="n3:tank/a"} 0+60x40
  z8r_transfer_active{replication="r",target="n4:tank/a"} 0+0x40
  z8r_transfer_last_progress_timestamp_seconds{replication="r",target="n4:tank/a"} 0+0x40`,
		at:   "30m",
		want: `{replication="r",target="n2:tank/a"} 1800`,
	},
	"Z8rAgentDown": {
		// n1 is fine; n2's heartbeat stopped at time 0; n3 beats but is not ready.
		load: `z8r_node_last_heartbeat_timestamp_seconds{node="n1"} 0+60x20
  z8r_node_ready{node="n1"} 1+0x20
  z8r_node_last_heartbeat_timestamp_seconds{node="n2"} 0+0x20
  z8r_node_ready{node="n2"} 1+0x20
  z8r_node_last_heartbeat_timestamp_seconds{node="n3"} 0+60x20
  z8r_node_ready{node="n3"} 0+0x20`,
		at: "10m",
		want: `{node="n2"} 600
  {node="n3"} 0`,
	},
	"Z8rHostKeyChanged": {
		load: `z8r_node_host_key_changed{node="n1"} 0+0x20
  z8r_node_host_key_changed{node="n2"} 1+0x20`,
		at:   "10m",
		want: `{node="n2"} 1`,
	},
	"Z8rVolumeSnapshotReplicationFailing": {
		// n2 fails once a minute; n3 failed long ago and now succeeds.
		load: `z8r_volumesnapshot_replications_total{node="n2",outcome="Failed"} 0+1x40
  z8r_volumesnapshot_replications_total{node="n2",outcome="Synced"} 0+1x40
  z8r_volumesnapshot_replications_total{node="n3",outcome="Failed"} 5+0x40
  z8r_volumesnapshot_replications_total{node="n3",outcome="Synced"} 0+1x40`,
		at:   "40m",
		want: `{node="n2"} 30`,
	},
}

func TestRules_AlertsFireOnlyWhenMeant(t *testing.T) {
	groups := ruleGroups(t)
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			seen[r.Alert] = true
			c, ok := alertCases[r.Alert]
			if !ok {
				t.Errorf("alert %s has no case in alertCases", r.Alert)
				continue
			}
			t.Run(r.Alert, func(t *testing.T) {
				script := fmt.Sprintf("load 1m\n  %s\n\neval instant at %s %s\n  %s\n", c.load, c.at, r.Expr, c.want)
				promqltest.RunTest(t, script, engine)
			})
		}
	}
	for name := range alertCases {
		if !seen[name] {
			t.Errorf("alertCases has %s, which the rule file lacks", name)
		}
	}
}

// grafanaVar matches Grafana's variables: $name, ${name}, ${name:format}.
var grafanaVar = regexp.MustCompile(`\$\{?(\w+)(:\w+)?\}?`)

// expand replaces Grafana's variables the way Grafana would before the
// query reaches Prometheus: interval variables by a duration, the others
// (used in label matchers) by a regexp matching anything.
func expand(q string) string {
	return grafanaVar.ReplaceAllStringFunc(q, func(v string) string {
		if strings.Contains(v, "__") && strings.Contains(v, "interval") || strings.Contains(v, "__range") {
			return "5m"
		}
		return ".*"
	})
}

var labelValues = regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`)

func TestDashboard_ParsesAndUsesRegisteredMetrics(t *testing.T) {
	reg := registered(t)
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	}
	type panel struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			Type string `json:"type"`
		} `json:"datasource"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		UID        string  `json:"uid"`
		Title      string  `json:"title"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard has no uid or title")
	}
	ids := map[int]bool{}
	queries := 0
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" {
				t.Errorf("panel %q: datasource is not Prometheus", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				queries++
				checkExpr(t, fmt.Sprintf("panel %q query %s", p.Title, tg.RefID), expand(tg.Expr), reg)
			}
		}
	}
	walk(d.Panels)
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(metric, label)", v.Name, s)
			continue
		}
		if met, ok := reg[m[1]]; !ok || !slices.Contains(met.labels, m[2]) {
			t.Errorf("variable %s: %s is not a registered metric with label %s", v.Name, m[1], m[2])
		}
	}
}
