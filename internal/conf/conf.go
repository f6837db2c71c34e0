// Package conf loads kinlog's configuration: a YAML file, then KINLOG_* environment
// variables, then --set key=value overrides, with errors that name the dotted key. Every
// command of the kinlog binary and the Lambda function (cmd/kinlog-lambda) load theirs
// through it, so a key means the same everywhere.
package conf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as "10s", "1m30s" in the config file.
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration such as 10s or 1m: %w", err)
	}
	if v < 0 {
		return fmt.Errorf("duration %s is negative", v)
	}
	*d = Duration(v)
	return nil
}

// MarshalText prints the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// ByteSize is a size written as "5MiB", "128KiB", "1MB" or a plain number of bytes.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}

// UnmarshalText parses a size.
func (s *ByteSize) UnmarshalText(b []byte) error {
	str := strings.TrimSpace(string(b))
	mult := int64(1)
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(str, u.suffix); ok {
			str, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("want a size such as 5MiB, 512KiB or 1048576, got %q", string(b))
	}
	*s = ByteSize(n * mult)
	return nil
}

// MarshalText prints the size in the largest binary unit that divides it.
func (s ByteSize) MarshalText() ([]byte, error) {
	for i := 2; i >= 0; i-- {
		u := byteUnits[i]
		if s != 0 && int64(s)%u.mult == 0 && int64(s) >= u.mult {
			return fmt.Appendf(nil, "%d%s", int64(s)/u.mult, u.suffix), nil
		}
	}
	return fmt.Appendf(nil, "%d", int64(s)), nil
}

// HTTP is the http section of the long-running commands' configuration.
type HTTP struct {
	// Listen is the address of the probes and metrics; "-" turns the server off.
	Listen string `yaml:"listen"`
}

// Shutdown is the shutdown section of the long-running commands' configuration.
type Shutdown struct {
	// Timeout bounds the graceful shutdown on SIGTERM/SIGINT. Default: 30s.
	Timeout Duration `yaml:"timeout"`
}

// Log is the log section of the long-running commands' configuration.
type Log struct {
	// Format is json or text. Default: text on a terminal, json otherwise.
	Format string `yaml:"format"`
	// Level is debug, info, warn or error. Default: info.
	Level string `yaml:"level"`
}

// Error names the config key that is wrong.
type Error struct {
	Key    string
	Source string // "file", "env KINLOG_…", "flag --set"
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("config %s (%s): %v", e.Key, e.Source, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Load fills cfg (which holds the defaults) from the YAML file at path (if not empty),
// then from KINLOG_* environment variables, then from --set key=value overrides. Unknown keys
// in the file are errors.
func Load(cfg any, path string, environ []string, sets []string) error {
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading config: %w", err)
		}
		var doc yaml.Node
		// An empty file decodes to io.EOF: all defaults.
		if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("config file %s: %w", path, err)
		}
		if len(doc.Content) > 0 {
			if err := checkNode(doc.Content[0], reflect.TypeOf(cfg).Elem(), ""); err != nil {
				err.Source = "file " + path + err.Source
				return err
			}
			dec := yaml.NewDecoder(bytes.NewReader(data))
			dec.KnownFields(true)
			if err := dec.Decode(cfg); err != nil {
				return fmt.Errorf("config file %s: %w", path, err)
			}
		}
	}
	leaves := configLeaves(reflect.ValueOf(cfg).Elem(), "")
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "KINLOG_") {
			env[k] = v
		}
	}
	for _, key := range slices.Sorted(maps.Keys(leaves)) {
		name := envName(key)
		if v, ok := env[name]; ok {
			if err := setLeaf(leaves[key], v); err != nil {
				return &Error{Key: key, Source: "env " + name, Err: err}
			}
		}
	}
	for _, kv := range sets {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return &Error{Key: kv, Source: "flag --set", Err: errors.New("want key=value")}
		}
		leaf, ok := leaves[k]
		if !ok {
			hint := ""
			if near := closest(k, slices.Sorted(maps.Keys(leaves))); near != "" {
				hint = fmt.Sprintf("did you mean %s? ", near)
			}
			return &Error{Key: k, Source: "flag --set", Err: fmt.Errorf("unknown key; %sknown keys: %s", hint, strings.Join(slices.Sorted(maps.Keys(leaves)), ", "))}
		}
		if err := setLeaf(leaf, v); err != nil {
			return &Error{Key: k, Source: "flag --set", Err: err}
		}
	}
	return nil
}

// checkNode checks a YAML node against the config type t before it is decoded, so that an
// unknown key or a bad value is reported with its dotted key and line (yaml.v3 names the Go
// type instead, or nothing). Keys are those of the yaml tags; lists of structs are indexed:
// files[0].paths.
func checkNode(n *yaml.Node, t reflect.Type, key string) *Error {
	at := func(n *yaml.Node) string { return fmt.Sprintf(", line %d", n.Line) }
	if reflect.PointerTo(t).Implements(reflect.TypeFor[textUnmarshaler]()) || t.Kind() != reflect.Struct && t.Kind() != reflect.Slice {
		v := reflect.New(t)
		if err := n.Decode(v.Interface()); err != nil {
			msg := err.Error()
			var te *yaml.TypeError
			if errors.As(err, &te) && len(te.Errors) > 0 {
				msg = te.Errors[0]
				if _, rest, ok := strings.Cut(msg, ": "); ok {
					msg = rest // drop yaml's own "line N: "
				}
				// "cannot unmarshal !!str `lots` into int"
				if rest, ok := strings.CutPrefix(msg, "cannot unmarshal !!"); ok {
					_, val, _ := strings.Cut(rest, " ")
					val, _, _ = strings.Cut(val, " into ")
					msg = "want " + kindName(t) + ", got " + val
				}
			}
			return &Error{Key: key, Source: at(n), Err: errors.New(msg)}
		}
		return nil
	}
	if t.Kind() == reflect.Slice {
		if n.Kind != yaml.SequenceNode {
			if t.Elem().Kind() == reflect.String && n.Kind == yaml.ScalarNode {
				return nil // one string for a list of one
			}
			return &Error{Key: key, Source: at(n), Err: errors.New("want a list")}
		}
		for i, c := range n.Content {
			if err := checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", key, i)); err != nil {
				return err
			}
		}
		return nil
	}
	if n.Kind != yaml.MappingNode {
		if n.Tag == "!!null" {
			return nil
		}
		return &Error{Key: strings.TrimSuffix(key, "."), Source: at(n), Err: errors.New("want a mapping of keys")}
	}
	fields := map[string]reflect.StructField{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" && f.IsExported() {
			fields[tag] = f
			names = append(names, tag)
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		full := k.Value
		if key != "" {
			full = key + "." + k.Value
		}
		f, ok := fields[k.Value]
		if !ok {
			hint := ""
			if near := closest(k.Value, names); near != "" {
				hint = fmt.Sprintf("did you mean %s? ", near)
			}
			return &Error{Key: full, Source: at(k), Err: fmt.Errorf("unknown key; %sknown keys here: %s", hint, strings.Join(names, ", "))}
		}
		if err := checkNode(v, f.Type, full); err != nil {
			return err
		}
	}
	return nil
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return "a " + t.Kind().String()
}

// EnvWarnings returns a warning for each KINLOG_* variable in environ that is not a key of
// cfg but is within two edits of one: a typo that would otherwise be ignored in silence.
// Other KINLOG_* variables belong to other tools (the local stack's, say) and pass.
func EnvWarnings(cfg any, environ []string) []string {
	leaves := configLeaves(reflect.ValueOf(cfg).Elem(), "")
	var names []string
	known := map[string]bool{}
	for k := range leaves {
		names = append(names, envName(k))
		known[envName(k)] = true
	}
	sort.Strings(names)
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "KINLOG_") || known[k] || otherVars[k] {
			continue
		}
		if near := closest(k, names); near != "" {
			out = append(out, fmt.Sprintf("%s is not a configuration key and is ignored; did you mean %s?", k, near))
		}
	}
	sort.Strings(out)
	return out
}

// otherVars are KINLOG_* variables that are not configuration keys but are near one.
var otherVars = map[string]bool{"KINLOG_CONFIG": true, "KINLOG_STACK_DIR": true}

// closest returns the candidate within two edits of s (the nearest, the first on a tie),
// or "".
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c, bestD); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, or limit when it is at least that.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= limit {
			return limit
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}

// envName maps a dotted key to its variable: archive.buffer_size → KINLOG_ARCHIVE_BUFFER_SIZE.
func envName(key string) string {
	return "KINLOG_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// configLeaves maps every dotted yaml key of a config struct to its settable field.
func configLeaves(v reflect.Value, prefix string) map[string]reflect.Value {
	out := map[string]reflect.Value{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		key := prefix + tag
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && !isTextType(fv) {
			for k, leaf := range configLeaves(fv, key+".") {
				out[k] = leaf
			}
			continue
		}
		out[key] = fv
	}
	return out
}

type textUnmarshaler interface{ UnmarshalText([]byte) error }

func isTextType(v reflect.Value) bool {
	_, ok := v.Addr().Interface().(textUnmarshaler)
	return ok
}

// setLeaf parses s into the field: text types, strings, bools, ints, floats,
// comma-separated string lists, and pointers to those (optional keys such as
// analytics.enabled).
func setLeaf(v reflect.Value, s string) error {
	if u, ok := v.Addr().Interface().(textUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	if v.Kind() == reflect.Pointer {
		p := reflect.New(v.Type().Elem())
		if err := setLeaf(p.Elem(), s); err != nil {
			return err
		}
		v.Set(p)
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", s)
		}
		v.SetInt(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("want a number, got %q", s)
		}
		v.SetFloat(n)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot set a list of %s", v.Type().Elem())
		}
		var items []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				items = append(items, p)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("cannot set a %s", v.Type())
	}
	return nil
}
