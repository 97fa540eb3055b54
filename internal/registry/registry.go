// Package registry holds who takes part in the procedure: the arbodiensten
// (occupational health services), the physicians (bedrijfsartsen) with their
// arbodienst, membership of the LPBSO pool (Landelijke Pool Bedrijfsartsen
// Second Opinion, the national pool of second-opinion physicians), languages
// and OpenPGP key, and the employers (werkgevers) with their contract type,
// the second-opinion party their contract may name, the address for notices
// and their mail domains.
//
// The registry feeds the independence rule (a second-opinion physician is
// never from the original physician's arbodienst, Arbobesluit art. 2.14d)
// and the who-pays table of seed 001 (pool + full-service contract →
// provider; pool + other contract → employer). It is plain data loaded from
// a YAML file; Load validates it and reports every problem with its place.
package registry

import (
	"errors"
	"fmt"
	"net/mail"
	"os"
	"path"
	"strings"

	"secondopinion/internal/config/yamldoc"
)

// Contract is the kind of contract an employer has with the provider.
type Contract string

// Contract values.
const (
	// ContractFullService: an arbo contract with the provider that includes
	// second opinions; a pool physician is paid by the provider.
	ContractFullService Contract = "full_service"
	// ContractOther: another contract; a pool physician is paid by the employer.
	ContractOther Contract = "other"
	// ContractNone: no contract; the employer pays for a pool physician too.
	ContractNone Contract = "none"
)

// Physician roles (Physician.Roles). A physician without roles has both.
const (
	RoleOriginal      = "original"       // can be an employee's own bedrijfsarts
	RoleSecondOpinion = "second_opinion" // can be proposed as SO physician
)

// Languages a physician can consult and correspond in.
var Languages = []string{"nl", "en"}

// Registry is the whole registry file.
type Registry struct {
	// Arbodiensten are the occupational health services physicians work for.
	Arbodiensten []Arbodienst `yaml:"arbodiensten"`
	// Physicians are the original and second-opinion physicians.
	Physicians []Physician `yaml:"physicians"`
	// Employers are the employers whose employees may ask for a second opinion.
	Employers []Employer `yaml:"employers"`
}

// Arbodienst is an occupational health service.
type Arbodienst struct {
	ID   string `yaml:"id"`   // short stable identifier, referenced by physicians
	Name string `yaml:"name"` // display name
}

// Physician is a bedrijfsarts (occupational physician).
type Physician struct {
	ID         string   `yaml:"id"`         // short stable identifier
	Name       string   `yaml:"name"`       // display name, e.g. "drs. A. de Vries"
	Email      string   `yaml:"email"`      // registered address; replies must come from it
	Arbodienst string   `yaml:"arbodienst"` // id of the arbodienst the physician works for
	Pool       bool     `yaml:"pool"`       // member of the LPBSO pool
	BIG        string   `yaml:"big"`        // optional BIG register number (11 digits)
	Languages  []string `yaml:"languages"`  // nl and/or en; default [nl]
	KeyFile    string   `yaml:"key_file"`   // OpenPGP public key, relative to the keys dir: public/<email>.asc, the only file the daemon reads
	Roles      []string `yaml:"roles"`      // original and/or second_opinion; default both
}

// keyFileOf is where, relative to the keys dir, the daemon reads the key of
// the physician with address email (pgpmime.Keyring.PathFor).
func keyFileOf(email string) string { return "public/" + strings.ToLower(email) + ".asc" }

// HasRole reports whether p may act in role (RoleOriginal, RoleSecondOpinion).
func (p Physician) HasRole(role string) bool {
	if len(p.Roles) == 0 {
		return true
	}
	for _, r := range p.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// Speaks reports whether p consults in language lang ("nl", "en").
func (p Physician) Speaks(lang string) bool {
	for _, l := range p.Languages {
		if l == lang {
			return true
		}
	}
	return false
}

// Employer is a werkgever.
type Employer struct {
	ID       string   `yaml:"id"`       // short stable identifier
	Name     string   `yaml:"name"`     // display name
	Contract Contract `yaml:"contract"` // full_service, other or none
	// SecondOpinionParty, when set, is another second-opinion provider named
	// in the employer's contract: the employee is referred there.
	SecondOpinionParty *Party `yaml:"second_opinion_party"`
	// NoticeEmail receives cost approvals and completion notices (only as
	// the employee consented).
	NoticeEmail string `yaml:"notice_email"`
	// Domains are the mail domains of the employer's staff (lower case);
	// they tie a request to the employer.
	Domains []string `yaml:"domains"`
}

// Party is another second-opinion provider and how to reach it.
type Party struct {
	Name    string `yaml:"name"`
	Email   string `yaml:"email"`   // optional
	Phone   string `yaml:"phone"`   // optional
	Website string `yaml:"website"` // optional
}

// Load reads and validates the registry file. On any problem it returns the
// registry as far as it could be read together with every error (each an
// *yamldoc.Error with file, line and field path); errs is nil when the
// registry is valid. Defaults (languages, key files) are filled in.
func Load(file string) (*Registry, []error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, []error{fmt.Errorf("read registry: %w", err)}
	}
	return Parse(file, data)
}

// Parse is Load for data already read; file names the source in errors.
func Parse(file string, data []byte) (*Registry, []error) {
	r := &Registry{}
	doc, errs := yamldoc.Decode(file, data, r)
	r.applyDefaults()
	errs = append(errs, r.validate(doc)...)
	return r, errs
}

func (r *Registry) applyDefaults() {
	for i := range r.Physicians {
		p := &r.Physicians[i]
		if len(p.Languages) == 0 {
			p.Languages = []string{"nl"}
		}
		if p.KeyFile == "" && p.Email != "" {
			p.KeyFile = keyFileOf(p.Email)
		}
	}
	for i := range r.Employers {
		for j, d := range r.Employers[i].Domains {
			r.Employers[i].Domains[j] = strings.ToLower(strings.TrimSpace(d))
		}
	}
}

// Validate checks r (e.g. one built in code) and returns every problem, with
// field paths but without lines.
func (r *Registry) Validate() []error { return r.validate(nil) }

func (r *Registry) validate(doc *yamldoc.Doc) []error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, doc.Errorf(path, format, args...))
	}
	ids := func(kind, path, id string, seen map[string]string) {
		switch {
		case id == "":
			bad(path+".id", "required")
		case strings.ContainsAny(id, " \t\r\n"):
			bad(path+".id", "%q must not contain spaces", id)
		case seen[id] != "":
			bad(path+".id", "duplicate %s id %q (also %s)", kind, id, seen[id])
		default:
			seen[id] = path
		}
	}

	arbo := map[string]string{}
	for i, a := range r.Arbodiensten {
		p := fmt.Sprintf("arbodiensten[%d]", i)
		ids("arbodienst", p, a.ID, arbo)
		if strings.TrimSpace(a.Name) == "" {
			bad(p+".name", "required")
		}
	}

	phys, emails := map[string]string{}, map[string]string{}
	for i, ph := range r.Physicians {
		p := fmt.Sprintf("physicians[%d]", i)
		ids("physician", p, ph.ID, phys)
		if strings.TrimSpace(ph.Name) == "" {
			bad(p+".name", "required")
		}
		if err := CheckAddress(ph.Email); err != nil {
			bad(p+".email", "%v", err)
		} else if k := strings.ToLower(ph.Email); emails[k] != "" {
			bad(p+".email", "duplicate address %q (also %s)", ph.Email, emails[k])
		} else {
			emails[k] = p
		}
		switch {
		case ph.Arbodienst == "":
			bad(p+".arbodienst", "required (the id of one of the arbodiensten)")
		case arbo[ph.Arbodienst] == "":
			bad(p+".arbodienst", "unknown arbodienst %q", ph.Arbodienst)
		}
		if ph.BIG != "" && !isDigits(ph.BIG, 11) {
			bad(p+".big", "BIG number %q: want 11 digits", ph.BIG)
		}
		for j, l := range ph.Languages {
			if l != "nl" && l != "en" {
				bad(fmt.Sprintf("%s.languages[%d]", p, j), "unknown language %q: want nl or en", l)
			}
		}
		// The daemon finds a key by its address (pgpmime.Keyring), where
		// 'keys import' puts it; another file would be read by check-config
		// alone, and medical mail would go to the key at the address's path.
		if want := keyFileOf(ph.Email); ph.Email != "" && ph.KeyFile != "" && path.Clean(ph.KeyFile) != want {
			bad(p+".key_file", "%q: the daemon reads this physician's key from %s in the keys directory (where 'keys import' puts it); key_file can only name that file", ph.KeyFile, want)
		}
		for j, role := range ph.Roles {
			if role != RoleOriginal && role != RoleSecondOpinion {
				bad(fmt.Sprintf("%s.roles[%d]", p, j), "unknown role %q: want original or second_opinion", role)
			}
		}
	}

	emp, domains := map[string]string{}, map[string]string{}
	for i, e := range r.Employers {
		p := fmt.Sprintf("employers[%d]", i)
		ids("employer", p, e.ID, emp)
		if strings.TrimSpace(e.Name) == "" {
			bad(p+".name", "required")
		}
		switch e.Contract {
		case ContractFullService, ContractOther, ContractNone:
		case "":
			bad(p+".contract", "required: full_service, other or none")
		default:
			bad(p+".contract", "unknown contract %q: want full_service, other or none", e.Contract)
		}
		if err := CheckAddress(e.NoticeEmail); err != nil {
			bad(p+".notice_email", "%v", err)
		}
		if sp := e.SecondOpinionParty; sp != nil {
			if strings.TrimSpace(sp.Name) == "" {
				bad(p+".second_opinion_party.name", "required")
			}
			if sp.Email == "" && sp.Phone == "" && sp.Website == "" {
				bad(p+".second_opinion_party", "give at least one of email, phone or website, so the employee can reach the party")
			}
			if sp.Email != "" {
				if err := CheckAddress(sp.Email); err != nil {
					bad(p+".second_opinion_party.email", "%v", err)
				}
			}
		}
		if len(e.Domains) == 0 {
			bad(p+".domains", "at least one mail domain is required")
		}
		for j, d := range e.Domains {
			dp := fmt.Sprintf("%s.domains[%d]", p, j)
			switch {
			case !isDomain(d):
				bad(dp, "%q is not a valid mail domain", d)
			case domains[d] != "":
				bad(dp, "domain %q also belongs to %s", d, domains[d])
			default:
				domains[d] = p
			}
		}
	}
	return errs
}

// ErrAddress is wrapped by CheckAddress.
var ErrAddress = errors.New("not a valid address")

// CheckAddress reports whether s is a bare e-mail address (no display name,
// no angle brackets) with a domain that has a dot.
func CheckAddress(s string) error {
	if s == "" {
		return errors.New("required")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return fmt.Errorf("%q is %w", s, ErrAddress)
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || !isDomain(strings.ToLower(s[at+1:])) {
		return fmt.Errorf("%q is %w", s, ErrAddress)
	}
	return nil
}

// CheckDomain reports whether d is a lower-case DNS domain name with at
// least two labels (letters, digits, hyphens).
func CheckDomain(d string) error {
	if !isDomain(d) {
		return fmt.Errorf("%q is not a valid domain (lower case, like example.nl)", d)
	}
	return nil
}

func isDomain(d string) bool {
	if len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// PhysicianByID returns the physician with id.
func (r *Registry) PhysicianByID(id string) (Physician, bool) {
	for _, p := range r.Physicians {
		if p.ID == id {
			return p, true
		}
	}
	return Physician{}, false
}

// PhysicianByEmail returns the physician registered with address addr
// (case-insensitive).
func (r *Registry) PhysicianByEmail(addr string) (Physician, bool) {
	for _, p := range r.Physicians {
		if strings.EqualFold(p.Email, strings.TrimSpace(addr)) {
			return p, true
		}
	}
	return Physician{}, false
}

// EmployerByID returns the employer with id.
func (r *Registry) EmployerByID(id string) (Employer, bool) {
	for _, e := range r.Employers {
		if e.ID == id {
			return e, true
		}
	}
	return Employer{}, false
}

// EmployerByDomain returns the employer an address (or a bare domain)
// belongs to: the employer listing the address's domain, else the one
// listing its closest parent domain (mail.bakker.example.nl →
// bakker.example.nl).
func (r *Registry) EmployerByDomain(address string) (Employer, bool) {
	d := strings.ToLower(strings.TrimSpace(address))
	if at := strings.LastIndexByte(d, '@'); at >= 0 {
		d = d[at+1:]
	}
	d = strings.TrimSuffix(d, ".")
	for d != "" {
		for _, e := range r.Employers {
			for _, ed := range e.Domains {
				if ed == d {
					return e, true
				}
			}
		}
		_, parent, ok := strings.Cut(d, ".")
		if !ok || !strings.Contains(parent, ".") {
			break
		}
		d = parent
	}
	return Employer{}, false
}

// ArbodienstByID returns the arbodienst with id.
func (r *Registry) ArbodienstByID(id string) (Arbodienst, bool) {
	for _, a := range r.Arbodiensten {
		if a.ID == id {
			return a, true
		}
	}
	return Arbodienst{}, false
}
