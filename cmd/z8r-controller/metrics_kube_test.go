//go:build kube

package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/z8r-project/z8r/controllers"
	"github.com/z8r-project/z8r/internal/manifests"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// controllerUser is the identity deploy/z8r.yaml gives the controller.
const controllerUser = "system:serviceaccount:z8r-system:z8r-controller"

// TestMetrics_RequiresAuthentication runs the controller's metrics endpoint
// exactly as main configures it (metricsOptions), under the controller's
// service account with the RBAC of deploy/z8r.yaml, against a real API
// server: without a token or with a bad one it answers 401, with a service
// account token (TokenRequest) lacking z8r-metrics-reader 403, with one
// bound to z8r-metrics-reader (deploy/z8r.yaml's ClusterRole) 200 and z8r's
// metrics; plain HTTP is not served.
func TestMetrics_RequiresAuthentication(t *testing.T) {
	log.SetLogger(logr.Discard())
	env := kubeenv.Start(t, kubeenv.Options{})
	ctx := context.Background()
	applyClusterRBAC(t, env)

	// The manager runs as the controller's service account: its TokenReviews
	// and SubjectAccessReviews need deploy/z8r.yaml's ClusterRole.
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: controllerUser,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:z8r-system", "system:authenticated"}}
	addr := freeAddr(t)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: env.Scheme, Metrics: metricsOptions(addr, ""), HealthProbeBindAddress: "0"})
	if err != nil {
		t.Fatal(err)
	}
	m := controllers.NewMetrics(nil)
	m.Snapshots.WithLabelValues("metrics-test").Inc()
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})

	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	reader := serviceAccountToken(t, cs, "prometheus")
	stranger := serviceAccountToken(t, cs, "stranger")
	if err := env.Client.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-z8r-metrics"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "z8r-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "prometheus", Namespace: "monitoring"}},
	}); err != nil {
		t.Fatal(err)
	}

	// The certificate is self-signed (no --metrics-cert-dir), so the client
	// does not verify it; what is under test is who gets the metrics.
	httpc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(scheme, token string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+"/metrics", nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := httpc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		_, _, err := get("https", "")
		return err == nil, nil
	}); err != nil {
		t.Fatalf("metrics endpoint never served: %v", err)
	}

	for _, tc := range []struct {
		name   string
		scheme string
		token  string
		want   int
		body   []string
	}{
		{name: "no token", scheme: "https", want: http.StatusUnauthorized},
		// controller-runtime's filter answers 500 "Authentication failed"
		// when the TokenReview of a malformed token ends in an error.
		{name: "a token the API server cannot review", scheme: "https", token: "not-a-token", want: http.StatusInternalServerError},
		{name: "service account without z8r-metrics-reader", scheme: "https", token: stranger, want: http.StatusForbidden},
		{name: "service account bound to z8r-metrics-reader", scheme: "https", token: reader, want: http.StatusOK,
			body: []string{`z8r_snapshots_created_total{replication="metrics-test"} 1`, "controller_runtime_"}},
		// Go's TLS server answers plain HTTP with 400 and closes; the
		// client may see the reset first.
		{name: "plain HTTP is not served", scheme: "http", token: reader, want: http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, err := get(tc.scheme, tc.token)
			if err != nil && tc.scheme == "http" {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.want {
				t.Errorf("GET %s /metrics = %d %.200q, want %d", tc.scheme, code, body, tc.want)
			}
			for _, s := range tc.body {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q:\n%.2000s", s, body)
				}
			}
			if tc.want != http.StatusOK && strings.Contains(body, "z8r_") {
				t.Errorf("refused request got metrics:\n%.500s", body)
			}
		})
	}
}

// applyClusterRBAC creates the ClusterRoles and ClusterRoleBindings of
// deploy/z8r.yaml (the controller's, z8r-metrics-reader, ...).
func applyClusterRBAC(t *testing.T, env *kubeenv.Env) {
	t.Helper()
	root, err := kubeenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifests.Load(filepath.Join(root, "deploy", "z8r.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var reader bool
	for _, o := range objs {
		if k := o.GetKind(); k != "ClusterRole" && k != "ClusterRoleBinding" {
			continue
		}
		reader = reader || o.GetName() == "z8r-metrics-reader"
		if err := env.Client.Create(context.Background(), o); err != nil {
			t.Fatalf("create %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	if !reader {
		t.Fatal("deploy/z8r.yaml has no ClusterRole z8r-metrics-reader")
	}
}

// serviceAccountToken creates service account name in namespace monitoring
// and returns a token the API server issued for it (TokenRequest).
func serviceAccountToken(t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("monitoring").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts("monitoring").CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
