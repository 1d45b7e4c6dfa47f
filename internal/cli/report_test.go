package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	z8rv1 "github.com/z8r-project/z8r/api/v1alpha1"
	"github.com/z8r-project/z8r/internal/volsnap"
)

func TestVolumeSnapshotReplications_Fixture(t *testing.T) {
	db := VolumeSnapshotReplication{
		Content: "snapcontent-db", VolumeSnapshot: "app/db-snap", Namespace: "app", Driver: z8rv1.DriverName,
		Source: Place{Node: "node-a", Dataset: "tank/db"}, Snapshot: "snapshot-uid-db-snap",
		RequestedTargets: "node-b:backup/db,node-c:tank/db",
		Targets: []VolumeSnapshotTarget{
			{Place: Place{Node: "node-b", Dataset: "backup/db"}, State: volsnap.StateReplicated, GUID: "1234567890",
				ReplicaContent: "snapcontent-db-replica", Time: now.Add(-10 * time.Minute).Format(time.RFC3339)},
			{Place: Place{Node: "node-c", Dataset: "tank/db"}, State: volsnap.StatePending},
		},
	}
	web := VolumeSnapshotReplication{
		Content: "snapcontent-web", VolumeSnapshot: "other/web-snap", Namespace: "other", Driver: "zfs.csi.openebs.io",
		Source: Place{Node: "node-a", Dataset: "zfspv-pool/pvc-web"}, Snapshot: "snapshot-uid-web-snap",
		RequestedTargets: "node-b:backup/pvc-web",
		Targets: []VolumeSnapshotTarget{{Place: Place{Node: "node-b", Dataset: "backup/pvc-web"}, State: volsnap.StateFailed,
			Error: "recv: dataset is busy", Attempts: 2, Time: now.Add(-3 * time.Minute).Format(time.RFC3339)}},
	}
	for _, tc := range []struct {
		namespace string
		want      []VolumeSnapshotReplication
	}{
		{"", []VolumeSnapshotReplication{db, web}},
		{"app", []VolumeSnapshotReplication{db}},
		{"other", []VolumeSnapshotReplication{web}},
		{"nosuch", nil},
	} {
		got := VolumeSnapshotReplications(fixtureContents(), tc.namespace)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("namespace %q:\n got %+v\nwant %+v", tc.namespace, got, tc.want)
		}
	}
}

func TestVolumeSnapshotReplications_UnreadableOrUnlocatedStatus(t *testing.T) {
	broken := content("c1", "app", "s1", z8rv1.DriverName, "tank/a@snapshot-x", map[string]string{
		z8rv1.AnnotationNode: "node-a", z8rv1.AnnotationDataset: "tank/a",
		z8rv1.AnnotationReplicateTo: "node-b", z8rv1.AnnotationReplicationStatus: "{not json",
	})
	// Asked on the content itself, not located yet: no node, so the
	// requested targets do not resolve; nothing is invented.
	unlocated := content("c2", "app", "s2", "other.csi", "weird-handle", map[string]string{z8rv1.AnnotationReplicateTo: "node-b"})
	got := VolumeSnapshotReplications([]snapshotv1.VolumeSnapshotContent{broken, unlocated}, "")
	if len(got) != 2 {
		t.Fatalf("got %d replications, want 2: %+v", len(got), got)
	}
	if got[0].StatusError == "" || len(got[0].Targets) != 1 || got[0].Targets[0].State != volsnap.StatePending ||
		got[0].Targets[0].Node != "node-b" || got[0].Targets[0].Dataset != "tank/a" {
		t.Errorf("unreadable status: %+v, want a status error and node-b:tank/a Pending", got[0])
	}
	if got[1].StatusError != "" || len(got[1].Targets) != 0 || got[1].Snapshot != "" || got[1].Source != (Place{}) {
		t.Errorf("unlocated content: %+v, want no targets, source or snapshot", got[1])
	}
}

func TestWriteVolumeSnapshotStatus_Fixture(t *testing.T) {
	vs := VolumeSnapshotReplications(fixtureContents(), "")
	var b bytes.Buffer
	if err := WriteVolumeSnapshotStatus(&b, vs, "", now, false); err != nil {
		t.Fatal(err)
	}
	want := `VolumeSnapshot replications (all namespaces)
  VOLUMESNAPSHOT   SOURCE                                            TARGET                  STATE        UPDATED   ERROR
  app/db-snap      node-a:tank/db@snapshot-uid-db-snap               node-b:backup/db        Replicated   10m ago   -
  app/db-snap      node-a:tank/db@snapshot-uid-db-snap               node-c:tank/db          Pending      -         -
  other/web-snap   node-a:zfspv-pool/pvc-web@snapshot-uid-web-snap   node-b:backup/pvc-web   Failed       3m ago    recv: dataset is busy
`
	if got := b.String(); got != want {
		t.Errorf("VolumeSnapshot status:\n%s\nwant:\n%s", got, want)
	}

	b.Reset()
	if err := WriteVolumeSnapshotStatus(&b, vs[:1], "app", now, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"(namespace app)", "CONTENT", "GUID", "REPLICA", "ATTEMPTS", "snapcontent-db ", "1234567890", "snapcontent-db-replica"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("wide VolumeSnapshot status lacks %q:\n%s", want, b.String())
		}
	}

	b.Reset()
	if err := WriteVolumeSnapshotStatus(&b, nil, "app", now, false); err != nil || b.Len() != 0 {
		t.Errorf("no replications wrote %q (%v), want nothing", b.String(), err)
	}
}

// TestStatusReport_JSONRoundTrip: -o json is a StatusReport that decodes
// back to what was printed, with the fields the table shows.
func TestStatusReport_JSONRoundTrip(t *testing.T) {
	report := NewStatusReport(fixtureReplications(), VolumeSnapshotReplications(fixtureContents(), ""), "", now)
	var b bytes.Buffer
	if err := PrintObject(&b, OutputJSON, report); err != nil {
		t.Fatal(err)
	}
	var got StatusReport
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("-o json does not parse: %v\n%s", err, b.String())
	}
	assertSameJSON(t, "-o json round trip", &got, report)
	if got.APIVersion != "cli.z8r.dev/v1alpha1" || got.Kind != KindStatusReport {
		t.Errorf("apiVersion %q kind %q", got.APIVersion, got.Kind)
	}
	if len(got.DatasetReplications) != 2 || got.DatasetReplications[0].Name != "data" {
		t.Fatalf("datasetReplications: %+v", got.DatasetReplications)
	}
	c := got.DatasetReplications[0].Targets[1]
	if c.Node != "node-c" || c.Dataset != "backup/data" || c.State != z8rv1.TargetFailed || c.SnapshotsBehind != 2 ||
		c.LagSeconds == nil || *c.LagSeconds != int64(14*time.Hour/time.Second) || c.ConsecutiveFailures != 3 {
		t.Errorf("node-c target: %+v", c)
	}
	if logs := got.DatasetReplications[1]; logs.NotReady == "" || logs.Targets[0].State != z8rv1.TargetPending || logs.Targets[0].LagSeconds != nil {
		t.Errorf("logs: %+v", logs)
	}
	if len(got.VolumeSnapshotReplications) != 2 || got.VolumeSnapshotReplications[0].Targets[0].GUID != "1234567890" {
		t.Errorf("volumeSnapshotReplications: %+v", got.VolumeSnapshotReplications)
	}
}

func TestStatusReport_YAMLParses(t *testing.T) {
	report := NewStatusReport(fixtureReplications(), VolumeSnapshotReplications(fixtureContents(), ""), "app", now)
	var b bytes.Buffer
	if err := PrintObject(&b, OutputYAML, report); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "apiVersion: cli.z8r.dev/v1alpha1\n") {
		t.Errorf("-o yaml does not start with its apiVersion:\n%s", b.String())
	}
	var got StatusReport
	if err := yaml.UnmarshalStrict(b.Bytes(), &got); err != nil {
		t.Fatalf("-o yaml does not parse: %v\n%s", err, b.String())
	}
	assertSameJSON(t, "-o yaml round trip", &got, report)
}

func TestStatusReport_EmptyListsNotNull(t *testing.T) {
	var b bytes.Buffer
	if err := PrintObject(&b, OutputJSON, NewStatusReport(nil, nil, "default", now)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"datasetReplications": []`, `"volumeSnapshotReplications": []`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("empty report lacks %s:\n%s", want, b.String())
		}
	}
}

// TestPrintObject_HostileStringsEscapedLosslessly: JSON and YAML of objects
// whose strings (values and map keys) carry terminal controls hold no raw
// control character, and decode to the same object.
func TestPrintObject_HostileStringsEscapedLosslessly(t *testing.T) {
	nasty := hostile + "\x7f\u0085\u2066"
	report := NewStatusReport(
		[]z8rv1.DatasetReplication{replication("data"+nasty, "node-a", "tank/"+nasty, withTarget("node-b", ""),
			withTargetStatus(z8rv1.TargetStatus{Node: "node-b", Dataset: "tank/" + nasty, State: z8rv1.TargetFailed, LastError: nasty}))},
		[]VolumeSnapshotReplication{{Content: nasty, VolumeSnapshot: nasty, Targets: []VolumeSnapshotTarget{{State: nasty, Error: nasty}}}},
		nasty, now)
	node := &z8rv1.Z8RNode{
		TypeMeta: metav1.TypeMeta{APIVersion: z8rv1.GroupVersion.String(), Kind: "Z8RNode"},
		ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{"k": nasty},
			Annotations: map[string]string{"key" + nasty: nasty}},
		Status: z8rv1.Z8RNodeStatus{Message: nasty, Pools: []string{nasty}},
	}
	for _, tc := range []struct {
		name   string
		obj    runtime.Object
		decode func() any
	}{
		{"report", report, func() any { return &StatusReport{} }},
		{"node", node, func() any { return &z8rv1.Z8RNode{} }},
	} {
		for _, format := range []string{OutputJSON, OutputYAML} {
			t.Run(tc.name+" "+format, func(t *testing.T) {
				var b bytes.Buffer
				if err := PrintObject(&b, format, tc.obj); err != nil {
					t.Fatal(err)
				}
				for i, r := range b.String() {
					if r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || isBidiControl(r)) {
						t.Fatalf("control character %U at byte %d:\n%q", r, i, b.String())
					}
				}
				got := tc.decode()
				var err error
				if format == OutputJSON {
					err = json.Unmarshal(b.Bytes(), got)
				} else {
					err = yaml.Unmarshal(b.Bytes(), got)
				}
				if err != nil {
					t.Fatalf("output does not parse: %v\n%s", err, b.String())
				}
				assertSameJSON(t, "decoded from\n"+b.String(), got, tc.obj)
			})
		}
	}
}

func TestSafeJSON_UnchangedWithoutControls(t *testing.T) {
	in := []byte("{\n    \"a\": \"ünïcödé — 日本\"\n}\n")
	if got := SafeJSON(in); !bytes.Equal(got, in) {
		t.Errorf("SafeJSON changed %q to %q", in, got)
	}
	if got, err := SafeYAML([]byte("a: ünïcödé\n")); err != nil || string(got) != "a: ünïcödé\n" {
		t.Errorf("SafeYAML = %q, %v", got, err)
	}
}

func TestParseOutput_Cases(t *testing.T) {
	for _, tc := range []struct {
		in        string
		supported []string
		wantErr   bool
	}{
		{"", []string{OutputTable, OutputWide, OutputJSON, OutputYAML}, false},
		{"wide", []string{OutputTable, OutputWide, OutputJSON, OutputYAML}, false},
		{"json", []string{OutputTable, OutputWide, OutputJSON, OutputYAML}, false},
		{"yaml", []string{OutputTable, OutputJSON, OutputYAML}, false},
		{"wide", []string{OutputTable, OutputJSON, OutputYAML}, true},
		{"jsonpath={.x}", []string{OutputTable, OutputJSON}, true},
		{"JSON", []string{OutputTable, OutputJSON}, true},
	} {
		got, err := parseOutput(tc.in, tc.supported...)
		if tc.wantErr {
			if !errors.Is(err, ErrOutputFormat) {
				t.Errorf("parseOutput(%q, %v) = %q, %v; want ErrOutputFormat", tc.in, tc.supported, got, err)
			}
			continue
		}
		if err != nil || got != tc.in {
			t.Errorf("parseOutput(%q, %v) = %q, %v", tc.in, tc.supported, got, err)
		}
	}
}

// TestPrintObjects_KindsAndSingle: objects read through the typed client
// have no apiVersion and kind; printObjects sets them on the list and its
// items, and prints the item alone when one NAME was asked for.
func TestPrintObjects_KindsAndSingle(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := z8rv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r := &runner{opts: Options{Out: &out}, scheme: scheme}
	if err := r.printObjects(OutputJSON, false, &z8rv1.Z8RNodeList{Items: fixtureNodes()}); err != nil {
		t.Fatal(err)
	}
	var list z8rv1.Z8RNodeList
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "Z8RNodeList" || list.APIVersion != z8rv1.GroupVersion.String() || len(list.Items) != len(fixtureNodes()) ||
		list.Items[0].Kind != "Z8RNode" || list.Items[0].APIVersion != z8rv1.GroupVersion.String() {
		t.Errorf("list printed as %s %s with items %+v", list.APIVersion, list.Kind, list.Items)
	}

	out.Reset()
	if err := r.printObjects(OutputYAML, true, &z8rv1.DatasetReplicationList{Items: fixtureReplications()[:1]}); err != nil {
		t.Fatal(err)
	}
	var dr z8rv1.DatasetReplication
	if err := yaml.UnmarshalStrict(out.Bytes(), &dr); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if dr.Kind != "DatasetReplication" || dr.Name != "logs" {
		t.Errorf("single object printed as %s %s:\n%s", dr.Kind, dr.Name, out.String())
	}
}

// assertSameJSON fails unless got and want encode alike (metav1.Time
// decodes in the local zone, so values are compared, not structs).
func assertSameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}
