package kubeenv

import (
	"bytes"
	"fmt"
	"strings"
)

// controllerManagerSyncPeriod is kube-controller-manager's --pvclaimbinder-sync-period:
// how often the PV controller resyncs every PV and PVC. Binding is event-driven, but a
// claim created before its volume waits for this resync, which is 15 s by default.
const controllerManagerSyncPeriod = "1s"

// startControllerManager runs kube-controller-manager with exactly controllers, as a
// system:masters user, without leader election or any port of its own, and waits until
// each controller has started.
func (e *Env) startControllerManager(controllers []string) error {
	for _, c := range controllers {
		if !isControllerName(c) {
			return fmt.Errorf("controller %q: want a controller's canonical name, no list syntax", c)
		}
	}
	kubeconfig, err := e.userKubeconfig(BinControllerManager)
	if err != nil {
		return err
	}
	return e.startProcess(BinControllerManager, []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + strings.Join(controllers, ","),
		"--leader-elect=false",
		// Each controller uses the manager's own (admin) credentials rather than a
		// service account token, which would need the token controller and a signing key.
		"--use-service-account-credentials=false",
		"--pvclaimbinder-sync-period=" + controllerManagerSyncPeriod,
		// No HTTPS endpoint (healthz, metrics): no port to pick or collide on, and no
		// delegated authentication against the API server.
		"--secure-port=0",
		"--kube-api-qps=100",
		"--kube-api-burst=200",
		// -v=1 logs "Controller starting..." for each controller, which readiness waits for.
		"--v=2",
	}, func(log []byte) bool { return controllersStarted(log, controllers) },
		fmt.Sprintf("%q line for each of %v", controllerStartingMsg, controllers))
}

// controllerStartingMsg is what kube-controller-manager logs (at -v=1) as it runs each
// controller, followed by controller="<name>".
const controllerStartingMsg = "Controller starting..."

// controllersStarted reports whether log shows every one of controllers starting.
func controllersStarted(log []byte, controllers []string) bool {
	for _, c := range controllers {
		found := false
		for line := range bytes.SplitSeq(log, []byte("\n")) {
			if bytes.Contains(line, []byte(controllerStartingMsg)) && bytes.Contains(line, []byte(`controller="`+c+`"`)) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// isControllerName reports whether c looks like a controller's canonical name: lower-case
// words joined by single hyphens, such as persistentvolume-binder-controller. It rules
// out kube-controller-manager's list syntax ("*", "-name", "a,b").
func isControllerName(c string) bool {
	if c == "" || strings.HasPrefix(c, "-") || strings.HasSuffix(c, "-") || strings.Contains(c, "--") {
		return false
	}
	for _, r := range c {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}
