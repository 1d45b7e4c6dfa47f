package kubeenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubernetesServiceIP is the ClusterIP of the default/kubernetes Service: the first
// address of envtest's --service-cluster-ip-range (10.0.0.0/24). The kubelet gives
// every container KUBERNETES_SERVICE_HOST=KubernetesServiceIP and
// KUBERNETES_SERVICE_PORT=KubernetesServicePort, which is where client-go's in-cluster
// configuration connects.
const (
	KubernetesServiceIP   = "10.0.0.1"
	KubernetesServicePort = 443
)

// inClusterNames are the names and addresses the API server's serving certificate
// carries with Options.InClusterAPI: envtest's own (localhost, 127.0.0.1) plus those a
// pod uses to reach the API server (the kubernetes Service's address and DNS names),
// as kube-apiserver's own self-signed certificate does.
var inClusterNames = []string{
	"localhost", "127.0.0.1", KubernetesServiceIP,
	"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
}

// Files envtest reads from the API server's certificate folder; when apiserver.crt is
// there already, envtest generates none of them.
const (
	servingCertFile = "apiserver.crt"
	servingKeyFile  = "apiserver.key"
	saCertFile      = "sa-signer.crt"
	saKeyFile       = "sa-signer.key"
)

// prepareInClusterAPI sets up api for pods that call the API server the way a pod in a
// real cluster does: a serving certificate that also names the kubernetes Service
// (written into api.CertDir before envtest would write its own, with the CA envtest's
// clients trust set to ours), a service account signing key, and the ServiceAccount
// admission plugin on, so that pods get their projected token, the kube-root-ca.crt
// ConfigMap's CA and their namespace mounted (envtest turns the plugin off by default).
func prepareInClusterAPI(api *envtest.APIServer) error {
	ca, caKey, caPEM, err := newCA("z8r-testbed-apiserver-ca")
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range inClusterNames {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	certPEM, keyPEM, err := signCert(ca, caKey, tmpl)
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	// Service account tokens are signed with RS256 by default: an RSA key.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("service account key: %w", err)
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return fmt.Errorf("service account key: %w", err)
	}
	files := map[string][]byte{
		servingCertFile: certPEM,
		servingKeyFile:  keyPEM,
		saCertFile:      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
		saKeyFile:       pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(api.CertDir, name), b, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	api.SecureServing.CA = caPEM
	// envtest passes --disable-admission-plugins=ServiceAccount unless told otherwise.
	api.Configure().Disable("disable-admission-plugins")
	return nil
}
