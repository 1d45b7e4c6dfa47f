package volsnap

import "testing"

func TestStatus_RoundTripAndSet(t *testing.T) {
	var s Status
	s = s.Set(TargetState{Node: "n3", Dataset: "backup/a", State: StateFailed, Error: "x\ty", Attempts: 2})
	s = s.Set(TargetState{Node: "n2", Dataset: "tank/a", State: StatePending})
	s = s.Set(TargetState{Node: "n2", Dataset: "tank/a", State: StateSynced, GUID: "123"})
	if len(s) != 2 || s[0].Node != "n2" || s[0].State != StateSynced {
		t.Fatalf("got %+v", s)
	}
	back, err := ParseStatus(s.String())
	if err != nil || len(back) != 2 || back[1].Error != "x\ty" || back[0].GUID != "123" {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	if got, ok := back.Get(Target{"n3", "backup/a"}); !ok || got.Attempts != 2 || got.Done() {
		t.Errorf("Get: %+v %v", got, ok)
	}
	if got, ok := back.Get(Target{"n4", "x"}); ok || got.State != StatePending {
		t.Errorf("missing target: %+v %v", got, ok)
	}
	if s, err := ParseStatus(""); err != nil || s != nil {
		t.Errorf("empty: %v %v", s, err)
	}
	if _, err := ParseStatus("{"); err == nil {
		t.Error("garbage: want an error")
	}
}

// TestTargetState_Synced: a target has the snapshot in the state written
// now (Synced) and in the one earlier versions wrote (Replicated); both
// are done, as Skipped is; the others are not.
func TestTargetState_Synced(t *testing.T) {
	tests := []struct {
		state        string
		synced, done bool
	}{
		{StateSynced, true, true},
		{StateReplicated, true, true},
		{StateSkipped, false, true},
		{StatePending, false, false},
		{StateFailed, false, false},
		{StateDiverged, false, false},
		{StateRefused, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			ts := TargetState{Node: "n2", Dataset: "tank/a", State: tt.state}
			if ts.Synced() != tt.synced || ts.Done() != tt.done {
				t.Errorf("Synced %v Done %v, want %v %v", ts.Synced(), ts.Done(), tt.synced, tt.done)
			}
		})
	}
}
