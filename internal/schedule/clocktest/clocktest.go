// Package clocktest provides a settable Clock for tests of code that takes
// a schedule.Clock.
package clocktest

import (
	"sync"
	"time"
)

// Fake is a Clock that moves only when told. It is safe for concurrent use.
// The zero Fake reads the zero time.
type Fake struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a Fake reading t.
func New(t time.Time) *Fake { return &Fake{now: t} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Set moves the clock to t (backwards too, to simulate clock steps).
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t
}

// Advance moves the clock by d and returns the new time.
func (f *Fake) Advance(d time.Duration) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	return f.now
}
