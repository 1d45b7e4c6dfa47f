package controllers

import (
	"testing"
	"time"
)

// TestBackoff_DoublesToBound: the one backoff both replication paths use
// starts at backoffMin, doubles per further failure and stops at
// backoffMax.
func TestBackoff_DoublesToBound(t *testing.T) {
	tests := []struct {
		failures int
		want     time.Duration
	}{
		{0, backoffMin},
		{1, backoffMin},
		{2, 2 * backoffMin},
		{3, 4 * backoffMin},
		{7, 64 * backoffMin},
		{8, backoffMax}, // 128 × 5 s is past 10 min
		{100, backoffMax},
		{1 << 30, backoffMax},
	}
	for _, tt := range tests {
		if got := backoff(tt.failures); got != tt.want {
			t.Errorf("backoff(%d) = %v, want %v", tt.failures, got, tt.want)
		}
	}
}
