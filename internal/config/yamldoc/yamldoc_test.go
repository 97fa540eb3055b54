package yamldoc

import (
	"errors"
	"strings"
	"testing"
)

type inner struct {
	Port int    `yaml:"port"`
	Name string `yaml:"name"`
}

type doc struct {
	Server inner   `yaml:"server"`
	Items  []inner `yaml:"items"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"valid", "server: {port: 1}\nitems:\n  - name: a\n", nil},
		{"unknown field", "server:\n  prot: 1\n", []string{"f.yaml:2: server.prot: unknown field (check the spelling)"}},
		{"unknown field in list item", "items:\n  - name: a\n  - nam: b\n", []string{"f.yaml:3: items[1].nam: unknown field (check the spelling)"}},
		{"wrong type", "server:\n  port: many\n", []string{`f.yaml:2: server.port: invalid value "many": want a whole number`}},
		{"several at once", "server:\n  port: x\n  nme: y\nextra: 1\n", []string{
			`f.yaml:2: server.port: invalid value "x": want a whole number`,
			"f.yaml:3: server.nme: unknown field (check the spelling)",
			"f.yaml:4: extra: unknown field (check the spelling)",
		}},
		{"syntax error", "server:\n  port: 1\n name: x\n", []string{"f.yaml:2: YAML syntax: did not find expected key"}},
		{"empty", "", []string{"f.yaml: the file is empty"}},
		{"duplicate key", "server: {port: 1}\nserver: {port: 2}\n", []string{"f.yaml:2: server: duplicate key (first at line 1)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out doc
			_, errs := Decode("f.yaml", []byte(tt.src), &out)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestLineFallsBackToParent(t *testing.T) {
	var out doc
	d, errs := Decode("f.yaml", []byte("# comment\nitems:\n  - port: 1\n  - port: 2\n"), &out)
	if errs != nil {
		t.Fatal(errs)
	}
	tests := []struct {
		path string
		line int
	}{
		{"items", 2},
		{"items[1]", 4},
		{"items[1].port", 4},
		{"items[1].name", 4}, // absent: reported at its item
		{"server.port", 0},
	}
	for _, tt := range tests {
		if got := d.Line(tt.path); got != tt.line {
			t.Errorf("Line(%q) = %d, want %d", tt.path, got, tt.line)
		}
	}
	var nilDoc *Doc
	if e := nilDoc.Errorf("a.b", "bad"); e.Error() != "a.b: bad" {
		t.Errorf("nil Doc error = %q", e)
	}
	sentinel := errors.New("sentinel")
	if e := d.Wrap("items[0]", sentinel); !errors.Is(e, sentinel) || e.Error() != "f.yaml:3: items[0]: sentinel" {
		t.Errorf("Wrap = %v", e)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("server: {port: 1}\nitems:\n  - name: a\n"))
	f.Add([]byte("items: [{port: x}, {nme: 1}]\n&a b: *a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out doc
		d, errs := Decode("f.yaml", data, &out)
		for _, e := range errs {
			_ = e.Error()
		}
		d.Line("items[0].port")
	})
}
