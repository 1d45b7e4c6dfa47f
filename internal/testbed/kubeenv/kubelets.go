package kubeenv

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubeletClientUser is the user name in the client certificate the API server presents
// to kubelets (--kubelet-client-certificate) with Options.KubeletAccess. It is bound to
// the ClusterRole system:kubelet-api-admin, which a kubelet in Webhook authorization
// mode checks through a SubjectAccessReview.
const KubeletClientUser = "kube-apiserver-kubelet-client"

// kubeletAPIAdminBinding is the ClusterRoleBinding of KubeletClientUser to
// system:kubelet-api-admin. Its name has no "z8r" in it: the uninstall test takes
// every cluster-wide object named so for z8r's.
const kubeletAPIAdminBinding = "testbed:kube-apiserver-kubelet-client"

// Files written into the API server's certificate folder with Options.KubeletAccess.
const (
	kubeletCAFile         = "kubelet-ca.crt"
	kubeletClientCertFile = "kubelet-client.crt"
	kubeletClientKeyFile  = "kubelet-client.key"
	egressConfigFile      = "egress-selector.yaml"
)

// kubeletAccess is what the API server needs to reach kubelets: a CA that signs both
// its kubelet client certificate and the kubelets' serving certificates, and the
// HTTP CONNECT proxy its "cluster" egress goes through.
type kubeletAccess struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	caPEM []byte
	proxy *egressProxy
}

// prepareKubeletAccess makes a kubelet CA and the API server's kubelet client
// certificate, starts the egress proxy on a unix socket in a folder of its own (a
// socket path must stay under 108 bytes; the test's folder may be longer) and points
// the API server at them:
//
//	--kubelet-client-certificate/--kubelet-client-key  the client certificate
//	--kubelet-certificate-authority                    the CA, for kubelets' serving certificates
//	--kubelet-preferred-address-types=InternalIP       the address kubelet registers with --node-ip
//	--egress-selector-config-file                      cluster traffic through the proxy
func prepareKubeletAccess(api *envtest.APIServer) (*kubeletAccess, error) {
	ca, caKey, caPEM, err := newCA("z8r-testbed-kubelet-ca")
	if err != nil {
		return nil, err
	}
	k := &kubeletAccess{ca: ca, caKey: caKey, caPEM: caPEM}
	certPEM, keyPEM, err := k.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: KubeletClientUser},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("kubelet client certificate: %w", err)
	}
	sockDir, err := os.MkdirTemp("", "z8r-egress-")
	if err != nil {
		return nil, fmt.Errorf("egress proxy folder: %w", err)
	}
	sock := filepath.Join(sockDir, "cluster.sock")
	k.proxy, err = startEgressProxy(sock)
	if err != nil {
		_ = os.RemoveAll(sockDir)
		return nil, err
	}
	k.proxy.dir = sockDir
	egress := `apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: ` + sock + `
`
	files := map[string][]byte{
		kubeletCAFile:         caPEM,
		kubeletClientCertFile: certPEM,
		kubeletClientKeyFile:  keyPEM,
		egressConfigFile:      []byte(egress),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(api.CertDir, name), b, 0o600); err != nil {
			k.proxy.close()
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
	}
	args := api.Configure()
	args.Set("kubelet-client-certificate", filepath.Join(api.CertDir, kubeletClientCertFile))
	args.Set("kubelet-client-key", filepath.Join(api.CertDir, kubeletClientKeyFile))
	args.Set("kubelet-certificate-authority", filepath.Join(api.CertDir, kubeletCAFile))
	args.Set("kubelet-preferred-address-types", "InternalIP")
	args.Set("egress-selector-config-file", filepath.Join(api.CertDir, egressConfigFile))
	return k, nil
}

// bindKubeletClient lets KubeletClientUser use every kubelet API
// (system:kubelet-api-admin, one of the API server's bootstrap ClusterRoles).
func (e *Env) bindKubeletClient(ctx context.Context) error {
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: kubeletAPIAdminBinding},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: KubeletClientUser}},
	}
	if err := e.Client.Create(ctx, crb); err != nil {
		return fmt.Errorf("bind %s to system:kubelet-api-admin: %w", KubeletClientUser, err)
	}
	return nil
}

// KubeletCA returns the PEM certificate of the CA a kubelet trusts for client
// certificates (the API server's is signed by it) and that signs kubelets' serving
// certificates (KubeletServingCert), which the API server verifies. It is nil unless the
// Env was started with Options.KubeletAccess.
func (e *Env) KubeletCA() []byte {
	if e.kubelets == nil {
		return nil
	}
	return e.kubelets.caPEM
}

// KubeletServingCert returns a serving certificate and its key, PEM, for the kubelet of
// node at ip, signed by KubeletCA: the API server checks it when it connects to ip.
func (e *Env) KubeletServingCert(node string, ip net.IP) (certPEM, keyPEM []byte, err error) {
	if e.kubelets == nil {
		return nil, nil, errors.New("kubeenv: kubelet serving certificate: the Env was started without Options.KubeletAccess")
	}
	return e.kubelets.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		DNSNames:    []string{node},
		IPAddresses: []net.IP{ip},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}

// DialFunc dials addr (host:port) on network ("tcp").
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// SetClusterDialer sets how the API server's cluster traffic (its connections to
// kubelets: logs, exec, port-forward, the proxy subresources) is dialled: the egress
// proxy dials each CONNECT target with dial. Until it is set, every such connection is
// refused. It does nothing unless the Env was started with Options.KubeletAccess.
func (e *Env) SetClusterDialer(dial DialFunc) {
	if e.kubelets == nil {
		return
	}
	e.kubelets.proxy.setDialer(dial)
}

// sign issues a certificate of tmpl (its subject, names and extended key usages) for a
// new P-256 key, signed by the kubelet CA and valid for a week.
func (k *kubeletAccess) sign(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	return signCert(k.ca, k.caKey, tmpl)
}

// signCert issues tmpl (subject, names, extended key usage) with a new
// P-256 key, signed by ca for a week.
func signCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("serial: %w", err)
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(7 * 24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// newCA makes a self-signed P-256 CA valid for a week.
func newCA(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	return ca, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// egressProxy is the API server's "cluster" egress: an HTTP CONNECT proxy on a unix
// socket, the protocol kube-apiserver speaks to a konnectivity server
// (proxyProtocol HTTPConnect, transport uds). Each CONNECT target is dialled with the
// dialer SetClusterDialer set; the test bed's kubelets live in network namespaces the
// API server's own network cannot route to.
type egressProxy struct {
	l   net.Listener
	dir string // the socket's folder, removed by close

	mu     sync.Mutex
	dial   DialFunc
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// egressDialTimeout bounds one dial of a CONNECT target.
const egressDialTimeout = 10 * time.Second

func startEgressProxy(sock string) (*egressProxy, error) {
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("egress proxy: %w", err)
	}
	p := &egressProxy{l: l, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *egressProxy) setDialer(dial DialFunc) {
	p.mu.Lock()
	p.dial = dial
	p.mu.Unlock()
}

func (p *egressProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			_ = c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.handle(c)
		}()
	}
}

// handle answers one CONNECT request on c and then copies bytes both ways between c
// and the target until either side closes.
func (p *egressProxy) handle(c net.Conn) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		_, _ = io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	p.mu.Lock()
	dial := p.dial
	p.mu.Unlock()
	if dial == nil {
		_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\n\r\n")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), egressDialTimeout)
	u, err := dial(ctx, "tcp", req.Host)
	cancel()
	if err != nil {
		_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	if !p.track(u) {
		_ = u.Close()
		return
	}
	defer p.untrack(u)
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	// br first: anything the client sent after its request is already buffered there.
	go func() { _, _ = io.Copy(u, br); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
}

func (p *egressProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *egressProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

// close stops the proxy, closes every connection through it and removes its socket.
func (p *egressProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.l.Close()
	p.wg.Wait()
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}
