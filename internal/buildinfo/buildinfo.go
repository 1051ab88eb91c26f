// Package buildinfo reports the version the binary was built from.
package buildinfo

import "runtime/debug"

// Version is set at build time with
// -ldflags "-X github.com/streamworker/streamworker/internal/buildinfo.Version=v1.2.3".
var Version = ""

// String returns the version: the stamped one, else the module version or
// VCS revision recorded by the Go toolchain, else "dev".
func String() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	return "dev"
}
