// Reading the configuration keys from the environment: SW_ variables, each
// naming a key, an empty one refused where it would not mean a value, and
// any other SW_ variable refused as a typo.
package config

import (
	"regexp"
	"strings"
)

// envMap returns the keys set in the environment of l as nested maps, and a
// problem for each variable that is set but empty where an empty value means
// nothing (a number, a duration, a size, a boolean). An empty string or list
// is kept as such: validation then refuses it where a value is required
// (SW_KAFKA_BROKERS= is an error, not localhost:9092).
func (l Loader) envMap() (map[string]any, []error) {
	m := map[string]any{}
	if l.LookupEnv == nil {
		return m, nil
	}
	var problems []error
	for _, k := range Keys() {
		val, ok := l.LookupEnv(k.Env)
		if !ok {
			continue
		}
		if strings.TrimSpace(val) == "" && k.Type != "string" && !strings.HasPrefix(k.Type, "list") {
			problems = append(problems, &FieldError{Key: k.Key,
				Reason: k.Env + " is set but empty: unset it for the default (" + k.Default + ") or give a " + k.Type})
			continue
		}
		path := strings.Split(k.Key, ".")
		sub := m
		for _, name := range path[:len(path)-1] {
			if _, ok := sub[name]; !ok {
				sub[name] = map[string]any{}
			}
			sub = sub[name].(map[string]any)
		}
		sub[path[len(path)-1]] = val
	}
	return m, problems
}

// ignoredEnv matches SW_ variables that are not configuration keys and are
// not typos: SW_TEST_* (the test suite's own settings) and the variables
// Kubernetes sets for a Service whose name starts with "sw"
// (SW_SERVICE_HOST, SW_PORT_9464_TCP_ADDR, ...). No key ends like those.
var ignoredEnv = regexp.MustCompile(`^SW_(TEST_.*|(.*_)?(SERVICE_HOST|SERVICE_PORT(_.*)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?))$`)

// unknownEnv reports every SW_ variable of l's environment that names no
// key, in any case (sw_kafka_brokers names none), with the closest
// variable that does when it looks like a typo.
func (l Loader) unknownEnv() []error {
	if l.Environ == nil {
		return nil
	}
	known := map[string]bool{}
	for _, k := range Keys() {
		known[k.Env] = true
	}
	var errs []error
	reported := map[string]bool{}
	for _, kv := range l.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		// Names are case-sensitive: sw_kafka_brokers sets nothing, so it
		// is refused like a typo rather than ignored.
		upper := strings.ToUpper(name)
		if !strings.HasPrefix(upper, EnvPrefix) || known[name] || reported[name] || ignoredEnv.MatchString(upper) {
			continue
		}
		reported[name] = true
		reason := "unknown environment variable: " + EnvPrefix + " variables must name a configuration key"
		if s := closest(upper, func(k KeyDoc) string { return k.Env }); s != "" {
			reason += "; did you mean " + s + "?"
		}
		// The value is not shown: it may be a misspelled secret.
		errs = append(errs, &FieldError{Key: name, Reason: reason})
	}
	return errs
}
