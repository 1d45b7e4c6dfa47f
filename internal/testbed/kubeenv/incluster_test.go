//go:build kube

package kubeenv_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
)

// TestInClusterAPI_CertificateTokensAndTokenVolume starts a control plane with
// Options.InClusterAPI and checks what a pod's client-go in-cluster
// configuration relies on: the API server's certificate verifies, against
// the CA the Env's clients trust, for the kubernetes Service's address and
// DNS name (as a pod dials it); a service account token from the
// TokenRequest API (what the kubelet asks for) authenticates as that
// service account over such a connection; and the ServiceAccount admission
// plugin gives a new pod its projected token volume. Without the option the
// certificate names only localhost and 127.0.0.1 and pods get no token.
func TestInClusterAPI_CertificateTokensAndTokenVolume(t *testing.T) {
	e := kubeenv.Start(t, kubeenv.Options{InClusterAPI: true})
	ctx := t.Context()

	_, port, err := net.SplitHostPort(strings.TrimSuffix(strings.TrimPrefix(e.Config.Host, "https://"), "/"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(e.Config.CAData) {
		t.Fatal("the Env's REST config has no CA")
	}
	for _, name := range []string{kubeenv.KubernetesServiceIP, "kubernetes.default.svc"} {
		conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", port), &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Errorf("TLS to the API server as %s: %v", name, err)
			continue
		}
		_ = conn.Close()
	}

	ns := e.CreateNamespace(t, "incluster")
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"}}
	e.Create(t, sa)
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "probe", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest: %v", err)
	}
	podCfg := &rest.Config{
		Host:            e.Config.Host,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: e.Config.CAData, ServerName: kubeenv.KubernetesServiceIP},
	}
	podCS, err := kubernetes.NewForConfig(podCfg)
	if err != nil {
		t.Fatal(err)
	}
	review, err := podCS.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview with the service account token: %v", err)
	}
	if got, want := review.Status.UserInfo.Username, "system:serviceaccount:"+ns+":probe"; got != want {
		t.Errorf("the token authenticates as %q, want %q", got, want)
	}

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"},
		Spec: corev1.PodSpec{
			ServiceAccountName: "probe",
			Containers:         []corev1.Container{{Name: "c", Image: "localhost/z8r-testbed/none:v1"}},
		},
	}
	e.Create(t, pod)
	if !slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Projected != nil && slices.ContainsFunc(v.Projected.Sources, func(s corev1.VolumeProjection) bool { return s.ServiceAccountToken != nil })
	}) {
		t.Errorf("pod created without a projected service account token volume: %+v", pod.Spec.Volumes)
	}
}
