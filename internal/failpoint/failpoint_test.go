package failpoint

import (
	"reflect"
	"testing"
)

func TestParse_Forms(t *testing.T) {
	got := Parse(" a, b=3 ,c=0,d=x,,e=1")
	want := map[string]int{"a": 1, "b": 3, "e": 1}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Parse = %v, want %v", got, want)
	}
}
