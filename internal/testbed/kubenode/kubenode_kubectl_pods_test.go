//go:build pods

package kubenode_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/z8r-project/z8r/hack/images/imagebuild"
	"github.com/z8r-project/z8r/internal/testbed/kubeenv"
	"github.com/z8r-project/z8r/internal/testbed/kubenode"
	"github.com/z8r-project/z8r/internal/testbed/netns"
)

// TestNode_KubectlLogsAndExec shows the API server reaching a kubelet in
// its node's namespaces as in a real cluster (kubeenv.Options.KubeletAccess):
// `kubectl logs` of a pod shows the line it printed; `kubectl exec` runs a
// command in it (the node's pool listed through nsenter, as an operator
// would in an agent pod), carries stdin and returns the command's exit
// code. The kubelet's own API, dialled directly with the CA the API server
// checks it against, refuses an anonymous request (401) and a valid token
// of a ServiceAccount with no kubelet rights (403): its authentication and
// Webhook authorization are on, and only the API server's client
// certificate, bound to system:kubelet-api-admin, gets through.
func TestNode_KubectlLogsAndExec(t *testing.T) {
	ctx := context.Background()
	imgs := buildImages(t)
	env := kubeenv.Start(t, kubeenv.Options{
		KubeletAccess:     true,
		ControllerManager: []string{"serviceaccount-controller", "node-lifecycle-controller"},
	})
	kubenode.StartScheduler(t, env)
	network := netns.New(t, nodeName)
	api := kubenode.ForwardAPIServer(t, network, env)
	node := kubenode.Start(t, kubenode.Options{
		Env: env, Network: network, APIServer: api, Images: imgs, ZFSPools: []string{"tank"},
	}, nodeName)
	waitNodeReady(t, env, nodeName)
	if err := node.Import(ctx, imgs.Archives[imagebuild.Agent.Ref]); err != nil {
		t.Fatal(err)
	}
	ns := env.CreateNamespace(t, "kubectl")
	waitDefaultServiceAccount(t, env, ns)

	// The agent image has no shell: a hostPID pod enters the node's mount
	// namespace for one, prints a marker and waits.
	var b [6]byte
	_, _ = rand.Read(b[:])
	marker := "kubectl-logs-" + hex.EncodeToString(b[:])
	const pod = "shell"
	env.Create(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pod},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  ptr.To(false),
			HostPID:                       true,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "shell", Image: imagebuild.Agent.Ref, ImagePullPolicy: corev1.PullNever,
				Command:         []string{"nsenter", "-t", "1", "-m", "--", "sh", "-c", "echo " + marker + "; exec sleep 3600"},
				SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
			}},
		},
	})
	waitPod(t, env, ns, client.MatchingFields{"metadata.name": pod}, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })

	// kubectl logs: the container's output, through the API server and the
	// kubelet. The line may reach the log just after Running.
	var logs string
	began := time.Now()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		out, stderr, err := kubectl(t, env, nil, "logs", "-n", ns, pod)
		if err != nil {
			logs = err.Error() + ": " + stderr
			return false, nil
		}
		logs = out
		return logs == marker+"\n", nil
	})
	if err != nil {
		t.Fatalf("kubectl logs %s = %q, want exactly %q", pod, logs, marker+"\n")
	}
	t.Logf("kubectl logs: %q in %s", strings.TrimSpace(logs), time.Since(began).Round(time.Millisecond))

	// kubectl exec: the node's pool, listed in the pod.
	began = time.Now()
	out, stderr, err := kubectl(t, env, nil, "exec", "-n", ns, pod, "--", "nsenter", "-t", "1", "-m", "--", "zfs", "list", "-H", "-o", "name")
	if err != nil {
		t.Fatalf("kubectl exec zfs list: %v: %s", err, stderr)
	}
	t.Logf("kubectl exec zfs list in %s: %q", time.Since(began).Round(time.Millisecond), out)
	if out != "tank\n" {
		t.Errorf("kubectl exec zfs list = %q, want %q (the node's one pool)", out, "tank\n")
	}

	// stdin goes in, stdout comes back.
	in := "stdin " + marker + "\n"
	out, stderr, err = kubectl(t, env, strings.NewReader(in), "exec", "-i", "-n", ns, pod, "--", "nsenter", "-t", "1", "-m", "--", "cat")
	if err != nil {
		t.Fatalf("kubectl exec -i cat: %v: %s", err, stderr)
	}
	if out != in {
		t.Errorf("kubectl exec -i cat = %q, want its stdin %q", out, in)
	}

	// The command's exit code is kubectl's.
	_, stderr, err = kubectl(t, env, nil, "exec", "-n", ns, pod, "--", "nsenter", "-t", "1", "-m", "--", "sh", "-c", "exit 7")
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 7 {
		t.Errorf("kubectl exec of `exit 7`: %v (stderr %q), want exit code 7", err, stderr)
	}

	// The kubelet's API itself, dialled from the nodes' network and
	// verified with the CA the API server uses: no anonymous access, and
	// an authenticated caller needs the rights the API server's client has.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(env.KubeletCA()) {
		t.Fatal("no certificate in env.KubeletCA()")
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:     network.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	podsURL := "https://" + net.JoinHostPort(node.IP, "10250") + "/pods"
	if code := kubeletGet(t, hc, podsURL, ""); code != http.StatusUnauthorized {
		t.Errorf("anonymous GET %s: HTTP %d, want 401", podsURL, code)
	}
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if code := kubeletGet(t, hc, podsURL, tr.Status.Token); code != http.StatusForbidden {
		t.Errorf("GET %s as %s/default: HTTP %d, want 403", podsURL, ns, code)
	}
}

// kubeletGet returns the HTTP status of GET url, with token as the bearer
// token when not empty.
func kubeletGet(t *testing.T, hc *http.Client, url, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// kubectl runs the kubectl built here with env's admin kubeconfig and
// returns its stdout and stderr.
func kubectl(t *testing.T, env *kubeenv.Env, stdin io.Reader, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(env.BinDir, kubeenv.BinKubectl), append([]string{"--kubeconfig", env.Kubeconfig}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if stdin != nil {
		cmd.Stdin = stdin
	}
	err := cmd.Run()
	return out.String(), errOut.String(), err
}
