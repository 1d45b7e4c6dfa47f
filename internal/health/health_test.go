package health

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// get serves one request and returns the status and body.
func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Code, string(b)
}

func TestHandler_Endpoints(t *testing.T) {
	zfsDown := errors.New("zfs: pool tank is not imported")
	for _, tc := range []struct {
		name     string
		check    error
		path     string
		wantCode int
		wantBody string
	}{
		{name: "liveness ignores readiness", check: zfsDown, path: "/healthz", wantCode: 200, wantBody: "ok"},
		{name: "ready", check: nil, path: "/readyz", wantCode: 200, wantBody: "ok"},
		{name: "not ready says why", check: zfsDown, path: "/readyz", wantCode: 503, wantBody: "not ready: zfs: pool tank is not imported"},
		{name: "metrics has the ready gauge", check: nil, path: "/metrics", wantCode: 200, wantBody: "z8r_agent_ready 1"},
		{name: "metrics when not ready", check: zfsDown, path: "/metrics", wantCode: 200, wantBody: "z8r_agent_ready 0"},
		{name: "unknown path", path: "/debug", wantCode: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Check: func(context.Context) error { return tc.check }}
			reg := prometheus.NewRegistry()
			reg.MustRegister(s.ReadyCollector())
			s.Gatherer = reg
			code, body := get(t, s.Handler(), tc.path)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestHandler_NoGathererNoMetrics(t *testing.T) {
	s := &Server{Check: func(context.Context) error { return nil }}
	if code, _ := get(t, s.Handler(), "/metrics"); code != http.StatusNotFound {
		t.Errorf("GET /metrics without a Gatherer = %d, want 404", code)
	}
}

func TestReady_CachesForCacheFor(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	calls := 0
	var result error
	s := &Server{CacheFor: 10 * time.Second, Now: clock.now, Check: func(context.Context) error {
		calls++
		return result
	}}
	ctx := context.Background()
	if err := s.Ready(ctx); err != nil || calls != 1 {
		t.Fatalf("first Ready = %v after %d checks, want nil after 1", err, calls)
	}
	result = errors.New("down")
	clock.advance(9 * time.Second)
	if err := s.Ready(ctx); err != nil || calls != 1 {
		t.Errorf("Ready within CacheFor = %v after %d checks, want the cached nil after 1", err, calls)
	}
	clock.advance(time.Second)
	if err := s.Ready(ctx); err == nil || calls != 2 {
		t.Errorf("Ready after CacheFor = %v after %d checks, want the new error after 2", err, calls)
	}
}

func TestReady_CheckGetsTimeout(t *testing.T) {
	s := &Server{Timeout: 20 * time.Millisecond, Check: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	start := time.Now()
	if err := s.Ready(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ready of a hanging check = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Ready took %s, want about the 20ms timeout", d)
	}
}

func TestReady_NoCheckIsNotReady(t *testing.T) {
	if err := (&Server{}).Ready(context.Background()); !errors.Is(err, ErrNoCheck) {
		t.Errorf("Ready without Check = %v, want ErrNoCheck", err)
	}
}
