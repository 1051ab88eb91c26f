package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix is the prefix of every environment variable that sets a key.
const EnvPrefix = "SW_"

// EnvName returns the environment variable of a key: EnvPrefix followed by
// the key upper-cased with "." as "_", e.g. SW_KAFKA_BROKERS for kafka.brokers.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// KeyDoc documents one configuration key.
type KeyDoc struct {
	Key     string // e.g. "kafka.brokers"; also the flag name, --kafka.brokers
	Env     string // e.g. "SW_KAFKA_BROKERS"
	Type    string // duration, string, int, float, bool, bytes, list of strings, list of ints
	Default string // in the environment syntax; "" for none
	Doc     string
	Secret  bool // the value is never printed
}

// Keys returns every configuration key in the order of Config's fields.
func Keys() []KeyDoc {
	var docs []KeyDoc
	def := Default()
	walk(reflect.ValueOf(&def).Elem(), "", func(key string, f reflect.StructField, v reflect.Value) {
		docs = append(docs, KeyDoc{
			Key:     key,
			Env:     EnvName(key),
			Type:    typeName(f.Type),
			Default: formatValue(v.Interface()),
			Doc:     f.Tag.Get("doc"),
			Secret:  f.Type == secretType,
		})
	})
	return docs
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
	secretType   = reflect.TypeFor[Secret]()
)

// walk calls fn for every leaf field of the struct v with its dotted key.
func walk(v reflect.Value, prefix string, fn func(key string, f reflect.StructField, v reflect.Value)) {
	for i := range v.NumField() {
		f := v.Type().Field(i)
		key := prefix + strings.Split(f.Tag.Get("yaml"), ",")[0]
		if f.Type.Kind() == reflect.Struct {
			walk(v.Field(i), key+".", fn)
			continue
		}
		fn(key, f, v.Field(i))
	}
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t == byteSizeType:
		return "bytes"
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem()) + "s"
	case t.Kind() == reflect.Float64:
		return "float"
	}
	return t.Kind().String()
}

// formatValue prints a value in the syntax of the environment: lists
// comma-separated, durations as 30s or 24h, sizes as 64MiB, secrets masked.
func formatValue(x any) string {
	switch x := x.(type) {
	case time.Duration:
		return formatDuration(x)
	case []string:
		return strings.Join(x, ",")
	case []int:
		s := make([]string, len(x))
		for i, n := range x {
			s[i] = fmt.Sprint(n)
		}
		return strings.Join(s, ",")
	case []any:
		s := make([]string, len(x))
		for i, e := range x {
			s[i] = fmt.Sprint(e)
		}
		return strings.Join(s, ",")
	}
	return fmt.Sprint(x)
}

// formatDuration is time.Duration.String without zero trailing units:
// 24h rather than 24h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Redacted returns a copy of c with every set secret replaced by "***"; its
// lists are copies too.
func (c Config) Redacted() Config {
	walk(reflect.ValueOf(&c).Elem(), "", func(_ string, f reflect.StructField, v reflect.Value) {
		switch {
		case f.Type == secretType && v.String() != "":
			v.SetString(masked)
		case f.Type.Kind() == reflect.Slice && !v.IsNil():
			v.Set(reflect.AppendSlice(reflect.MakeSlice(f.Type, 0, v.Len()), v))
		}
	})
	return c
}

// YAML returns the configuration as a YAML file that Load accepts, in the
// order of Config's fields, with secrets masked as "***".
func (c Config) YAML() ([]byte, error) {
	r := c.Redacted()
	root := &yaml.Node{Kind: yaml.MappingNode}
	var errs []error
	walk(reflect.ValueOf(&r).Elem(), "", func(key string, _ reflect.StructField, v reflect.Value) {
		m := root
		path := strings.Split(key, ".")
		for _, name := range path[:len(path)-1] {
			m = child(m, name)
		}
		var val yaml.Node
		switch x := v.Interface().(type) {
		case time.Duration:
			errs = append(errs, val.Encode(formatDuration(x)))
		case fmt.Stringer: // Secret, ByteSize
			errs = append(errs, val.Encode(x.String()))
		default:
			errs = append(errs, val.Encode(x))
		}
		if val.Kind == yaml.SequenceNode {
			val.Style = yaml.FlowStyle
		}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: path[len(path)-1]}, &val)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("config: encode yaml: %w", err)
	}
	return yaml.Marshal(root)
}

// child returns the mapping under name in m, adding it if it is not the last.
func child(m *yaml.Node, name string) *yaml.Node {
	if n := len(m.Content); n > 0 && m.Content[n-2].Value == name {
		return m.Content[n-1]
	}
	c := &yaml.Node{Kind: yaml.MappingNode}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, c)
	return c
}
