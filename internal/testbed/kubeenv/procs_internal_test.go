package kubeenv

import (
	"os"
	"testing"
)

func TestAlive_SelfAndMissing(t *testing.T) {
	if alive, err := Alive(os.Getpid()); err != nil || !alive {
		t.Errorf("Alive(self) = %v, %v; want true", alive, err)
	}
	// PIDs never reach this value (pid_max is at most 2^22).
	if alive, err := Alive(1 << 30); err != nil || alive {
		t.Errorf("Alive(absent) = %v, %v; want false", alive, err)
	}
}

func TestModuleLine_Forms(t *testing.T) {
	for in, want := range map[string]string{
		"module github.com/z8r-project/z8r\n\ngo 1.26\n": "github.com/z8r-project/z8r",
		"// c\nmodule \"example.com/x\"\n":               "example.com/x",
		"go 1.26\n":                                      "",
	} {
		if got := moduleLine([]byte(in)); got != want {
			t.Errorf("moduleLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestShellQuote_Quotes(t *testing.T) {
	if got, want := shellQuote("/a b/it's"), `'/a b/it'\''s'`; got != want {
		t.Errorf("shellQuote = %s, want %s", got, want)
	}
}

func TestControllersStarted_EveryControllerNeeded(t *testing.T) {
	log := []byte(`I1130 23:10:00.000001 1 controllermanager.go:100] "Controller starting..." controller="persistentvolume-binder-controller"
I1130 23:10:00.000002 1 controllermanager.go:100] "Warning: controller is disabled" controller="persistentvolume-protection-controller"
`)
	if !controllersStarted(log, []string{"persistentvolume-binder-controller"}) {
		t.Errorf("binder started, want true")
	}
	if controllersStarted(log, []string{"persistentvolume-binder-controller", "persistentvolume-protection-controller"}) {
		t.Errorf("protection controller only disabled, want false")
	}
	if controllersStarted(log, []string{"persistentvolume-binder"}) {
		t.Errorf("a prefix of a started name, want false")
	}
}

func TestIsControllerName_RejectsListSyntax(t *testing.T) {
	for c, want := range map[string]bool{
		"persistentvolume-binder-controller": true,
		"ttl-after-finished-controller":      true,
		"":                                   false,
		"*":                                  false,
		"-garbage-collector-controller":      false,
		"a,b":                                false,
		"a--b":                               false,
		"Upper":                              false,
	} {
		if got := isControllerName(c); got != want {
			t.Errorf("isControllerName(%q) = %v, want %v", c, got, want)
		}
	}
}
