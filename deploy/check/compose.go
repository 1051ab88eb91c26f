package check

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// LoadCompose loads a compose file with the Compose specification's
// reference loader (the one docker compose uses): it validates the file
// against the specification's schema (an unknown key is an error),
// interpolates variables from env (NAME=value entries, not the process
// environment, so the result does not depend on the machine), and resolves
// services, dependencies and paths.
func LoadCompose(ctx context.Context, path string, env []string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions([]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithEnv(env),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, err
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// CheckCompose checks what the loader does not: every bind-mounted file or
// directory and every build context exists, and every service another one
// waits for can reach the awaited state (a health check for
// service_healthy; a service that exits, not restarted, for
// service_completed_successfully). All problems are reported, joined.
func CheckCompose(p *types.Project) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				fail("service %s: bind mount %s: %v", name, v.Source, err)
			}
		}
		if s.Build != nil {
			dockerfile := s.Build.Dockerfile
			if dockerfile == "" {
				dockerfile = "Dockerfile"
			}
			if _, err := os.Stat(filepath.Join(s.Build.Context, dockerfile)); err != nil {
				fail("service %s: build: %v", name, err)
			}
		}
		for dep, d := range s.DependsOn {
			target, ok := p.Services[dep]
			if !ok {
				fail("service %s depends on unknown service %s", name, dep)
				continue
			}
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if target.HealthCheck == nil || target.HealthCheck.Disable || len(target.HealthCheck.Test) == 0 {
					fail("service %s waits for %s to be healthy, but %s has no health check", name, dep, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if target.Restart != "" && target.Restart != types.RestartPolicyNo {
					fail("service %s waits for %s to complete, but %s restarts (%s)", name, dep, dep, target.Restart)
				}
			}
		}
	}
	return errors.Join(errs...)
}
