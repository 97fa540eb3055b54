// Package yamldoc decodes the operator's YAML files (the configuration and
// the registry) strictly and reports every problem with its place: file,
// line and the field's path, as in
//
//	registry.yaml:42: physicians[3].email: "jan@" is not a valid address
//
// Unknown fields are errors, so a typo never silently becomes a default.
package yamldoc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a YAML file. Line is 0 when unknown; Path is the
// dotted field path ("smtp.port", "physicians[3].email"), empty for the
// document as a whole.
type Error struct {
	File string
	Line int
	Path string
	Msg  string
	Err  error // the underlying error, if any (for errors.Is)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Doc remembers where each field of a decoded file is, for errors found
// after decoding (validation). A nil *Doc is usable and knows no places.
type Doc struct {
	File  string
	lines map[string]int            // path → line of its key (mapping) or item (sequence)
	keys  map[int]map[string]string // line → key name → path
	vals  map[int]string            // line → path of the first scalar value on it
}

// Decode parses data into out, rejecting unknown fields, and returns the
// document's places together with every decoding error (as *Error). out
// keeps whatever could be decoded, so validation can still run and report
// more problems.
func Decode(file string, data []byte, out any) (*Doc, []error) {
	d := &Doc{File: file, lines: map[string]int{}, keys: map[int]map[string]string{}, vals: map[int]string{}}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return d, []error{d.syntaxError(err)}
	}
	if len(root.Content) == 0 {
		return d, []error{&Error{File: file, Msg: "the file is empty"}}
	}
	d.index(root.Content[0], "")

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(out)
	if err == nil || errors.Is(err, io.EOF) {
		return d, nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return d, []error{d.syntaxError(err)}
	}
	var errs []error
	for _, msg := range te.Errors {
		errs = append(errs, d.typeError(msg))
	}
	return d, errs
}

func (d *Doc) index(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			d.index(c, path)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if _, ok := d.lines[p]; !ok {
				d.lines[p] = k.Line
			}
			if d.keys[k.Line] == nil {
				d.keys[k.Line] = map[string]string{}
			}
			d.keys[k.Line][k.Value] = p
			d.index(v, p)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.lines[p] = c.Line
			d.index(c, p)
		}
	case yaml.ScalarNode, yaml.AliasNode:
		if _, ok := d.vals[n.Line]; !ok {
			d.vals[n.Line] = path
		}
	}
}

// Line returns the line of path, or of its nearest ancestor present in the
// file (a missing field is reported where its parent is), or 0.
func (d *Doc) Line(path string) int {
	if d == nil {
		return 0
	}
	for path != "" {
		if l, ok := d.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// Has reports whether path is present in the file.
func (d *Doc) Has(path string) bool {
	if d == nil {
		return false
	}
	_, ok := d.lines[path]
	return ok
}

// Wrap returns an *Error for path with its line that wraps err.
func (d *Doc) Wrap(path string, err error) *Error {
	e := d.Errorf(path, "%v", err)
	e.Err = err
	return e
}

// Errorf returns an *Error for path with its line.
func (d *Doc) Errorf(path, format string, args ...any) *Error {
	e := &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
	if d != nil {
		e.File = d.File
		e.Line = d.Line(path)
	}
	return e
}

var (
	lineRe     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	notFoundRe = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	dupRe      = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
	unmarshRe  = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
)

func (d *Doc) syntaxError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		return &Error{File: d.File, Line: l, Msg: "YAML syntax: " + m[2]}
	}
	return &Error{File: d.File, Msg: "YAML syntax: " + msg}
}

func (d *Doc) typeError(msg string) *Error {
	m := lineRe.FindStringSubmatch(msg)
	if m == nil {
		return &Error{File: d.File, Msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	e := &Error{File: d.File, Line: line, Msg: m[2], Path: d.vals[line]}
	if f := notFoundRe.FindStringSubmatch(m[2]); f != nil {
		e.Path = d.keys[line][f[1]]
		e.Msg = "unknown field (check the spelling)"
	} else if k := dupRe.FindStringSubmatch(m[2]); k != nil {
		e.Path = d.keys[line][k[1]]
		e.Msg = "duplicate key (first at line " + k[2] + ")"
	} else if u := unmarshRe.FindStringSubmatch(m[2]); u != nil {
		e.Msg = fmt.Sprintf("invalid value %q: want %s", u[2], friendlyType(u[3]))
	}
	return e
}

func friendlyType(t string) string {
	switch {
	case t == "time.Duration":
		return "a duration like 90s, 5m or 48h"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.Contains(t, "."):
		return "a mapping (key: value lines)"
	}
	return t
}

// TypeError is what a yaml.Unmarshaler should return for a bad value so that
// decoding continues and the error is reported at n's line.
func TypeError(n *yaml.Node, err error) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
}

// Scalar decodes n as a scalar string for a custom yaml.Unmarshaler, or
// returns a TypeError.
func Scalar(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", TypeError(n, errors.New("want a single value, not a list or mapping"))
	}
	return n.Value, nil
}
