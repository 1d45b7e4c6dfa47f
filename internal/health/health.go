package health

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults of Server.
const (
	DefaultTimeout  = 5 * time.Second
	DefaultCacheFor = 5 * time.Second
)

// ErrNoCheck is the readiness error of a Server without a Check.
var ErrNoCheck = errors.New("health: no readiness check configured")

// Server answers the probe and metrics endpoints. Its fields must be set
// before the first request and not changed after.
type Server struct {
	// Check is the readiness check.
	Check func(ctx context.Context) error
	// Timeout bounds one run of Check (default DefaultTimeout).
	Timeout time.Duration
	// CacheFor is how long a result is reused (default DefaultCacheFor).
	CacheFor time.Duration
	// Gatherer serves /metrics; nil leaves /metrics out.
	Gatherer prometheus.Gatherer
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu      sync.Mutex
	checked time.Time
	lastErr error
}

// Ready returns the readiness check's result, from the cache when it is
// younger than CacheFor.
func (s *Server) Ready(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if !s.checked.IsZero() && now.Sub(s.checked) < s.cacheFor() {
		return s.lastErr
	}
	err := ErrNoCheck
	if s.Check != nil {
		timeout := s.Timeout
		if timeout <= 0 {
			timeout = DefaultTimeout
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err = s.Check(cctx)
		cancel()
	}
	s.checked, s.lastErr = now, err
	return err
}

// ReadyCollector returns the gauge z8r_agent_ready, read from Ready.
func (s *Server) ReadyCollector() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "z8r_agent_ready",
		Help: "1 when the agent's readiness check passes (zfs answers, every allowed pool exists), else 0.",
	}, func() float64 {
		if s.Ready(context.Background()) != nil {
			return 0
		}
		return 1
	})
}

// Handler returns the HTTP handler of /healthz, /readyz and /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Ready(r.Context()); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		writeText(w, http.StatusOK, "ok")
	})
	if s.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg + "\n"))
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) cacheFor() time.Duration {
	if s.CacheFor <= 0 {
		return DefaultCacheFor
	}
	return s.CacheFor
}
