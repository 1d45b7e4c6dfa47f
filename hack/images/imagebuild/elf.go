package imagebuild

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
)

// ErrNotStatic is returned for an executable that needs a dynamic loader
// or shared libraries.
var ErrNotStatic = errors.New("not a static executable")

// CheckStaticELF returns nil when b is a statically linked ELF executable
// for machine (no PT_INTERP program header, no DT_NEEDED library).
func CheckStaticELF(b []byte, machine elf.Machine) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not an ELF file: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("ELF type %s, want an executable", f.Type)
	}
	if f.Machine != machine {
		return fmt.Errorf("ELF machine %s, want %s", f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: it has a program interpreter", ErrNotStatic)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("ELF libraries: %w", err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("%w: it needs %v", ErrNotStatic, libs)
	}
	return nil
}

// ELFMachine is the ELF machine of a GOARCH z8r's images are built for.
func ELFMachine(goarch string) (elf.Machine, error) {
	switch goarch {
	case "amd64":
		return elf.EM_X86_64, nil
	case "arm64":
		return elf.EM_AARCH64, nil
	default:
		return 0, fmt.Errorf("GOARCH %s: no image support", goarch)
	}
}
