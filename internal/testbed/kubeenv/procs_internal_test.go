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
