package zfsexec

import (
	"bufio"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// PropRow is one line of `zfs get -H -p -o name,property,value,source`.
type PropRow struct {
	Name string
	Prop string
	Property
}

// ParseGet parses `zfs get -H -p -o name,property,value,source` output.
// Every line must have at least four tab-separated fields; a user property
// value may itself contain tabs, so the value is everything between the
// property and the last field (the source, which never contains a tab).
func ParseGet(argv []string, out string) ([]PropRow, error) {
	var rows []PropRow
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 4 {
			return nil, &ParseError{Argv: argv, Line: n, Text: line, Reason: fmt.Sprintf("want 4 tab-separated fields, got %d", len(f))}
		}
		rows = append(rows, PropRow{
			Name:     f[0],
			Prop:     f[1],
			Property: Property{Value: strings.Join(f[2:len(f)-1], "\t"), Source: f[len(f)-1]},
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("zfsexec: read output of %v: %w", argv, err)
	}
	return rows, nil
}

// listProps are the native properties ParseDatasets needs for every object.
var listProps = []string{"type", "guid", "createtxg", "creation", "userrefs"}

// ParseDatasets folds `zfs get` rows of listProps (plus any user properties)
// into Datasets, in the order names first appear. Every object must have a
// type, guid, createtxg and creation; numeric values must parse (which is
// why callers ask for -p: zfs-fuse's `zfs list -o guid` prints "9.92E").
func ParseDatasets(argv []string, rows []PropRow) ([]Dataset, error) {
	byName := map[string]*Dataset{}
	seen := map[string]map[string]bool{}
	var order []string
	for i, r := range rows {
		d, ok := byName[r.Name]
		if !ok {
			d = &Dataset{Name: r.Name}
			byName[r.Name] = d
			seen[r.Name] = map[string]bool{}
			order = append(order, r.Name)
		}
		seen[r.Name][r.Prop] = true
		bad := func(reason string) error {
			return &ParseError{Argv: argv, Line: i + 1, Text: r.Name + "\t" + r.Prop + "\t" + r.Value, Reason: reason}
		}
		switch r.Prop {
		case "type":
			d.Type = Type(r.Value)
		case "guid":
			v, err := strconv.ParseUint(r.Value, 10, 64)
			if err != nil {
				return nil, bad("guid is not an unsigned integer")
			}
			d.GUID = v
		case "createtxg":
			v, err := strconv.ParseUint(r.Value, 10, 64)
			if err != nil {
				return nil, bad("createtxg is not an unsigned integer")
			}
			d.CreateTXG = v
		case "creation":
			v, err := strconv.ParseInt(r.Value, 10, 64)
			if err != nil {
				return nil, bad("creation is not a Unix time")
			}
			d.Creation = time.Unix(v, 0).UTC()
		case "userrefs":
			if r.Value == "-" {
				continue
			}
			v, err := strconv.ParseUint(r.Value, 10, 64)
			if err != nil {
				return nil, bad("userrefs is not an unsigned integer")
			}
			d.UserRefs = v
		default:
			if strings.Contains(r.Prop, ":") && r.IsSet() {
				if d.UserProps == nil {
					d.UserProps = map[string]string{}
				}
				d.UserProps[r.Prop] = r.Value
				if r.Source == "local" {
					if d.LocalProps == nil {
						d.LocalProps = map[string]string{}
					}
					d.LocalProps[r.Prop] = r.Value
				}
			}
		}
	}
	out := make([]Dataset, 0, len(order))
	for _, name := range order {
		for _, p := range []string{"type", "guid", "createtxg", "creation"} {
			if !seen[name][p] {
				return nil, &ParseError{Argv: argv, Text: name, Reason: "missing property " + p}
			}
		}
		out = append(out, *byName[name])
	}
	return out, nil
}

// SortByCreateTXG orders snapshots and bookmarks oldest first: createtxg is
// ZFS's own order of creation, unlike names or one-second creation times.
func SortByCreateTXG(ds []Dataset) {
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].CreateTXG < ds[j].CreateTXG })
}

var (
	openZFSVersion = regexp.MustCompile(`(?m)^zfs-(\d+)\.(\d+)\.(\d+)`)
	poolVersion    = regexp.MustCompile(`running ZFS pool version (\d+)`)
)

// ParseOpenZFSVersion reads `zfs version` output ("zfs-2.3.2-1~bpo12+1").
func ParseOpenZFSVersion(out string) (major, minor, patch int, ok bool) {
	m := openZFSVersion.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, 0, false
	}
	major, _ = strconv.Atoi(m[1])
	minor, _ = strconv.Atoi(m[2])
	patch, _ = strconv.Atoi(m[3])
	return major, minor, patch, true
}

// ParsePoolVersion reads the legacy pool version from `zpool upgrade -v`
// ("This system is currently running ZFS pool version 23.").
func ParsePoolVersion(out string) (int, bool) {
	m := poolVersion.FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	v, err := strconv.Atoi(m[1])
	return v, err == nil
}

// ParseHolds parses `zfs holds -H` output (OpenZFS): name, tag, timestamp.
func ParseHolds(argv []string, out string) (map[string][]string, error) {
	holds := map[string][]string{}
	for n, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			return nil, &ParseError{Argv: argv, Line: n + 1, Text: line, Reason: fmt.Sprintf("want 3 tab-separated fields, got %d", len(f))}
		}
		holds[f[0]] = append(holds[f[0]], f[1])
	}
	return holds, nil
}
