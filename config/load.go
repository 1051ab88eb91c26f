package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// ConfigFlag is the name of the flag that gives the configuration file.
const ConfigFlag = "config"

// fileTypes are the accepted configuration file extensions.
var fileTypes = []string{"yaml", "yml", "json", "toml"}

// RegisterFlags adds to fs the --config flag and one flag per key, named as
// the key (--kafka.brokers) with its documentation as usage and its default.
// A flag overrides the environment and the file only when it is given on the
// command line. It panics, as pflag does, if fs already has one of the flags.
func RegisterFlags(fs *pflag.FlagSet) {
	fs.String(ConfigFlag, "", "Configuration file: YAML, or JSON or TOML by extension.")
	def := Default()
	walk(reflect.ValueOf(&def).Elem(), "", func(key string, f reflect.StructField, v reflect.Value) {
		usage := f.Tag.Get("doc")
		switch x := v.Interface().(type) {
		case time.Duration:
			fs.Duration(key, x, usage)
		case []string:
			fs.StringSlice(key, x, usage)
		case []int:
			fs.IntSlice(key, x, usage)
		case int:
			fs.Int(key, x, usage)
		case float64:
			fs.Float64(key, x, usage)
		case bool:
			fs.Bool(key, x, usage)
		default: // string, Secret, ByteSize
			fs.String(key, formatValue(x), usage)
		}
	})
}

// Load loads the configuration from the file named by --config in fs (none
// if unset), the process environment and the flags of fs given on the
// command line, then validates it. fs may be nil.
func Load(fs *pflag.FlagSet) (Config, error) {
	return Loader{LookupEnv: os.LookupEnv, Environ: os.Environ}.Load("", fs)
}

// LoadFile loads the configuration from the file path (none if empty) and
// env, a list of KEY=value entries like os.Environ (later ones win), without
// flags, then validates it.
func LoadFile(path string, env []string) (Config, error) {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return Loader{
		LookupEnv: func(k string) (string, bool) { v, ok := m[k]; return v, ok },
		Environ:   func() []string { return env },
	}.Load(path, nil)
}

// Loader loads a Config from a file, an environment and flags. A Loader is
// safe for concurrent use if its LookupEnv is.
type Loader struct {
	// LookupEnv returns the value of an environment variable and whether it
	// is set, like os.LookupEnv. Nil means an empty environment.
	LookupEnv func(name string) (string, bool)
	// Environ lists the environment as KEY=value entries, like os.Environ,
	// to refuse SW_ variables that name no key. Nil skips that check.
	Environ func() []string
}

// Load loads the configuration from the file path (if path is empty, the
// file named by --config in fs, if any), the environment of l and the flags
// of fs given on the command line, then validates it. fs may be nil.
//
// Every problem is reported at once, joined with errors.Join, each as a
// *FieldError naming the key: unknown keys in the file, values that do not
// parse, and what Validate rejects. The secret of a password_file is read
// into the matching password, and the password_file is cleared.
func (l Loader) Load(path string, fs *pflag.FlagSet) (Config, error) {
	if path == "" && fs != nil {
		if f := fs.Lookup(ConfigFlag); f != nil {
			path = f.Value.String()
		}
	}
	v := viper.New()
	var problems []error
	if path != "" {
		if ext := strings.TrimPrefix(filepath.Ext(path), "."); !slices.Contains(fileTypes, ext) {
			return Config{}, fmt.Errorf("config: %s: unsupported file type %q: use .yaml, .yml, .json or .toml", path, ext)
		}
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("config: read %s: %w", path, err)
		}
		problems = append(problems, unknownKeys(v)...)
	}
	// viper reads only the process environment, so the environment of l is
	// merged over the file instead: viper's own order (flags that were given,
	// then this merged layer, then nothing) gives flags > env > file, and
	// cfg starts from Default().
	env, envProblems := l.envMap()
	problems = append(problems, envProblems...)
	problems = append(problems, l.unknownEnv()...)
	if err := v.MergeConfigMap(env); err != nil {
		return Config{}, fmt.Errorf("config: environment: %w", err)
	}

	cfg := Default()
	bad := map[string]bool{}
	walk(reflect.ValueOf(&cfg).Elem(), "", func(key string, f reflect.StructField, fv reflect.Value) {
		if fs != nil {
			if flag := fs.Lookup(key); flag != nil {
				_ = v.BindPFlag(key, flag) // fails only for a nil flag
			}
		}
		if !v.IsSet(key) {
			return
		}
		raw := v.Get(key)
		if decode(raw, fv) != nil {
			bad[key] = true
			value := formatValue(raw)
			if f.Type == secretType {
				value = Secret(value).String()
			}
			problems = append(problems, &FieldError{Key: key, Value: value, Reason: parseReason(f.Type)})
		}
	})
	for _, p := range cfg.validate() {
		if !bad[p.Key] { // a value that did not parse is reported once
			problems = append(problems, p)
		}
	}
	if len(problems) == 0 {
		problems = append(problems, cfg.readSecretFiles()...)
	}
	if len(problems) > 0 {
		return Config{}, errors.Join(problems...)
	}
	return cfg, nil
}

// unknownKeys reports the keys of the file that are not configuration keys.
func unknownKeys(v *viper.Viper) []error {
	known, sections := map[string]bool{}, map[string]bool{}
	for _, k := range Keys() {
		known[k.Key] = true
		for i, c := range k.Key {
			if c == '.' {
				sections[k.Key[:i]] = true
			}
		}
	}
	keys := v.AllKeys()
	sort.Strings(keys)
	var errs []error
	for _, key := range keys {
		if known[key] || v.Get(key) == nil {
			continue
		}
		reason := "unknown key"
		if sections[key] {
			reason = "is a section, not a value"
		} else if s := suggest(key); s != "" {
			reason += "; did you mean " + s + "?"
		}
		// The value is not shown: it may be a misspelled secret.
		errs = append(errs, &FieldError{Key: key, Reason: reason})
	}
	return errs
}

// suggest returns the key closest to an unknown one, if it is close enough
// to be a typo.
func suggest(unknown string) string {
	return closest(unknown, func(k KeyDoc) string { return k.Key })
}

// closest returns the name of a key (as name gives it) nearest to unknown,
// if it is close enough to be a typo.
func closest(unknown string, name func(KeyDoc) string) string {
	best, bestDist := "", 3
	for _, k := range Keys() {
		if d := editDistance(unknown, name(k)); d < bestDist {
			best, bestDist = name(k), d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// decode converts a raw value from the file, the environment or a flag into
// the field fv.
func decode(raw any, fv reflect.Value) error {
	out := reflect.New(fv.Type())
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           out.Interface(),
		WeaklyTypedInput: true, // "5000" from the environment is an int
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			splitListHook, mapstructure.TextUnmarshallerHookFunc(), durationHook, wholeNumberHook),
	})
	if err != nil {
		return err
	}
	if err := d.Decode(raw); err != nil {
		return err
	}
	fv.Set(out.Elem())
	return nil
}

// splitListHook splits a comma-separated string into a list.
func splitListHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Slice {
		return data, nil
	}
	list := []string{}
	for s := range strings.SplitSeq(data.(string), ",") {
		if s = strings.TrimSpace(s); s != "" {
			list = append(list, s)
		}
	}
	return list, nil
}

// durationHook parses durations and rejects bare numbers, which would
// otherwise be taken as nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch from.Kind() {
	case reflect.String:
		return time.ParseDuration(strings.TrimSpace(data.(string)))
	case reflect.Int, reflect.Int64, reflect.Float64, reflect.Uint64:
		return nil, errors.New("a duration needs a unit")
	}
	return data, nil
}

// wholeNumberHook rejects a fractional number for an integer, which would
// otherwise be truncated.
func wholeNumberHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() == reflect.Float64 && to.Kind() >= reflect.Int && to.Kind() <= reflect.Uint64 {
		if f := data.(float64); f != math.Trunc(f) {
			return nil, errors.New("not a whole number")
		}
	}
	return data, nil
}

// parseReason says what a value of type t must look like.
func parseReason(t reflect.Type) string {
	switch {
	case t == durationType:
		return "must be a duration with a unit, e.g. 500ms, 30s, 5m or 24h"
	case t == byteSizeType:
		return "must be a byte count or a size with B, KiB, MiB or GiB, e.g. 64MiB"
	case t.Kind() == reflect.Int:
		return "must be an integer"
	case t.Kind() == reflect.Float64:
		return "must be a number"
	case t.Kind() == reflect.Bool:
		return "must be true or false"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Int:
		return "must be a list of integers"
	case t.Kind() == reflect.Slice:
		return "must be a list of strings"
	}
	return "must be a string"
}

// readSecretFiles reads each password_file into its password.
func (c *Config) readSecretFiles() []error {
	var errs []error
	for _, s := range []struct {
		key      string
		file     *string
		password *Secret
	}{
		{"kafka.sasl.password_file", &c.Kafka.SASL.PasswordFile, &c.Kafka.SASL.Password},
		{"redis.password_file", &c.Redis.PasswordFile, &c.Redis.Password},
	} {
		if *s.file == "" {
			continue
		}
		b, err := os.ReadFile(*s.file)
		if err != nil {
			errs = append(errs, &FieldError{Key: s.key, Value: *s.file, Reason: "cannot read: " + pathReason(err)})
			continue
		}
		*s.password, *s.file = Secret(strings.TrimRight(string(b), "\r\n")), ""
	}
	return errs
}
