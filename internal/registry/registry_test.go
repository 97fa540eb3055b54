package registry

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"secondopinion/internal/config/yamldoc"
)

func TestExampleRegistry(t *testing.T) {
	r, errs := Load("../../config/registry.example.yaml")
	for _, e := range errs {
		t.Errorf("example registry: %v", e)
	}
	if len(r.Arbodiensten) != 3 || len(r.Physicians) != 6 || len(r.Employers) != 3 {
		t.Errorf("example has %d arbodiensten, %d physicians, %d employers; want 3, 6, 3",
			len(r.Arbodiensten), len(r.Physicians), len(r.Employers))
	}
	var pool, english int
	for _, p := range r.Physicians {
		if p.Pool {
			pool++
		}
		if p.Speaks("en") {
			english++
		}
	}
	if pool == 0 || pool == len(r.Physicians) || english == 0 {
		t.Errorf("example should mix pool and non-pool physicians and have an English speaker: pool %d, en %d", pool, english)
	}
}

func TestLookups(t *testing.T) {
	r, errs := Load("../../config/registry.example.yaml")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	tests := []struct {
		name string
		got  string
		ok   bool
		want string
	}{}
	add := func(name, got string, ok bool, want string) {
		tests = append(tests, struct {
			name string
			got  string
			ok   bool
			want string
		}{name, got, ok, want})
	}
	p, ok := r.PhysicianByEmail("P.Bakker@ArboMidden.example.nl")
	add("physician by email ignores case", p.ID, ok, "bakker")
	p, ok = r.PhysicianByEmail("nobody@arbomidden.example.nl")
	add("unknown physician email", p.ID, ok, "")
	p, ok = r.PhysicianByID("devries")
	add("physician by id", p.Email, ok, "a.devries@arbo-noord.example.nl")
	e, ok := r.EmployerByDomain("Piet <piet@BakkerijNoord.example.nl>")
	add("employer by address with display name fails", e.ID, ok, "")
	e, ok = r.EmployerByDomain("piet@BakkerijNoord.example.nl")
	add("employer by address", e.ID, ok, "bakkerij-noord")
	e, ok = r.EmployerByDomain("kees@afdeling.personeel.middenstad.example.nl")
	add("employer by subdomain", e.ID, ok, "gemeente-midden")
	e, ok = r.EmployerByDomain("x@example.nl")
	add("parent domain alone matches nobody", e.ID, ok, "")
	e, ok = r.EmployerByDomain("transportzuid.example.test")
	add("bare domain", e.ID, ok, "transport-zuid")
	e, ok = r.EmployerByID("transport-zuid")
	add("employer by id with referral party", e.SecondOpinionParty.Name, ok, "Second Opinion Centrum Zuid")
	a, ok := r.ArbodienstByID("arbo-zuid")
	add("arbodienst by id", a.Name, ok, "Zuid Arbo & Vitaliteit")
	_, ok = r.ArbodienstByID("arbo-west")
	add("unknown arbodienst", "", ok, "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ok != (tt.want != "") || tt.got != tt.want {
				t.Errorf("got %q, %v; want %q", tt.got, tt.ok, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	r, errs := Parse("r.yaml", []byte(`
arbodiensten: [{id: a, name: A}]
physicians:
  - {id: p, name: P, email: P.Arts@A.example.nl, arbodienst: a}
employers: []
`))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	p := r.Physicians[0]
	if p.KeyFile != "public/p.arts@a.example.nl.asc" || !p.Speaks("nl") || p.Speaks("en") ||
		!p.HasRole(RoleOriginal) || !p.HasRole(RoleSecondOpinion) {
		t.Errorf("defaults not applied: %+v", p)
	}
}

// TestValidation: each broken field gives exactly one error, at its line.
func TestValidation(t *testing.T) {
	const good = `arbodiensten:
  - id: a
    name: A
  - id: b
    name: B
physicians:
  - id: p1
    name: P1
    email: p1@a.example.nl
    arbodienst: a
  - id: p2
    name: P2
    email: p2@b.example.nl
    arbodienst: b
employers:
  - id: e1
    name: E1
    contract: full_service
    notice_email: hr@e1.example.nl
    domains: [e1.example.nl]
`
	tests := []struct {
		name     string
		old, new string
		want     string // the errors, exactly, one a line
	}{
		{"broken email", "email: p2@b.example.nl", `email: "jan@"`, `r.yaml:13: physicians[1].email: "jan@" is not a valid address`},
		{"display name in email", "email: p2@b.example.nl", `email: "Jan <jan@b.example.nl>"`, `r.yaml:13: physicians[1].email: "Jan <jan@b.example.nl>" is not a valid address`},
		{"duplicate email", "email: p2@b.example.nl", "email: P1@a.example.nl", `r.yaml:13: physicians[1].email: duplicate address "P1@a.example.nl" (also physicians[0])`},
		{"duplicate id", "id: p2", "id: p1", `r.yaml:11: physicians[1].id: duplicate physician id "p1" (also physicians[0])`},
		{"unknown arbodienst", "arbodienst: b", "arbodienst: c", `r.yaml:14: physicians[1].arbodienst: unknown arbodienst "c"`},
		{"missing arbodienst", "    arbodienst: b\n", "", `r.yaml:11: physicians[1].arbodienst: required (the id of one of the arbodiensten)`},
		{"language", "arbodienst: b\n", "arbodienst: b\n    languages: [nl, de]\n", `r.yaml:15: physicians[1].languages[1]: unknown language "de": want nl or en`},
		{"BIG", "arbodienst: b\n", "arbodienst: b\n    big: \"123\"\n", `r.yaml:15: physicians[1].big: BIG number "123": want 11 digits`},
		{"key file escapes", "arbodienst: b\n", "arbodienst: b\n    key_file: ../x.asc\n", `r.yaml:15: physicians[1].key_file: "../x.asc": the daemon reads this physician's key from public/p2@b.example.nl.asc in the keys directory (where 'keys import' puts it); key_file can only name that file`},
		{"key file elsewhere", "arbodienst: b\n", "arbodienst: b\n    key_file: keys/p2.asc\n", `r.yaml:15: physicians[1].key_file: "keys/p2.asc": the daemon reads this physician's key from public/p2@b.example.nl.asc in the keys directory (where 'keys import' puts it); key_file can only name that file`},
		{"contract", "contract: full_service", "contract: premium", `r.yaml:18: employers[0].contract: unknown contract "premium": want full_service, other or none`},
		{"notice email", "notice_email: hr@e1.example.nl", "notice_email: hr@e1", `r.yaml:19: employers[0].notice_email: "hr@e1" is not a valid address`},
		{"domain", "domains: [e1.example.nl]", "domains: [e1.example.nl, \"e_1..nl\"]", `r.yaml:20: employers[0].domains[1]: "e_1..nl" is not a valid mail domain`},
		{"party without contact", "domains: [e1.example.nl]", "domains: [e1.example.nl]\n    second_opinion_party: {name: X}", `r.yaml:21: employers[0].second_opinion_party: give at least one of email, phone or website, so the employee can reach the party`},
		{"unknown field", "name: P2", "naam: P2", "r.yaml:12: physicians[1].naam: unknown field (check the spelling)\nr.yaml:11: physicians[1].name: required"},
		{"wrong type", "name: P2\n", "name: P2\n    pool: maybe\n", `r.yaml:13: physicians[1].pool: invalid value "maybe": want true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(good, tt.old) {
				t.Fatalf("test bug: %q not in the base registry", tt.old)
			}
			_, errs := Parse("r.yaml", []byte(strings.Replace(good, tt.old, tt.new, 1)))
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != tt.want {
				t.Errorf("errors:\n  %s\nwant exactly:\n  %s", strings.Join(got, "\n  "), tt.want)
			}
		})
	}
	if _, errs := Parse("r.yaml", []byte(good)); len(errs) != 0 {
		t.Errorf("base registry: %v", errs)
	}
}

func TestManyErrorsAtOnce(t *testing.T) {
	_, errs := Parse("r.yaml", []byte(`
physicians:
  - {id: x, email: "x@", arbodienst: nope}
  - {id: x, name: Y, email: y@example.nl, arbodienst: nope, languages: [fr]}
employers:
  - {id: e, name: E}
`))
	// x: name, email, arbodienst; second: duplicate id, arbodienst, language;
	// employer: contract, notice_email, domains.
	if len(errs) != 9 {
		t.Errorf("got %d errors, want 9:\n%v", len(errs), errs)
	}
	for _, err := range errs {
		var ye *yamldoc.Error
		if !errors.As(err, &ye) || ye.Line == 0 || ye.Path == "" {
			t.Errorf("error without place: %v", err)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, errs := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if len(errs) != 1 || !errors.Is(errs[0], os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", errs)
	}
}

func TestCheckAddress(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"a@example.nl", true},
		{"a.b+c@sub.example.test", true},
		{"jan@", false},
		{"@example.nl", false},
		{"jan@localhost", false},
		{"jan@example..nl", false},
		{"<jan@example.nl>", false},
		{"jan @example.nl", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if err := CheckAddress(tt.in); (err == nil) != tt.ok {
				t.Errorf("CheckAddress(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	data, err := os.ReadFile("../../config/registry.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("physicians: [{id: x}]"))
	f.Add([]byte("employers: {a: 1}\n\t- x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, _ := Parse("f.yaml", data)
		if r != nil {
			r.EmployerByDomain("a@b.example.nl")
		}
	})
}
