// Package config reads the operator's configuration file: where mail comes
// from and goes to, where data, keys and templates live, the registry file,
// and the policy values of the procedure (deadlines, reminder and escalation
// moments per waiting step, the consult target of 15 working days, the
// retention period, strict sender authentication, office hours and the
// holiday policy).
//
// Secrets (passwords, the token key, the service key passphrase) are never
// in the file: only references to a file (not readable by every user) or
// an environment variable. Relative paths are relative to the config file.
// Decoding is strict (an unknown field is an error) and validation collects
// every problem with its place, e.g.
//
//	secondopinion.yaml:31: smtp.port: must be 1-65535, got 0
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"secondopinion/internal/config/yamldoc"
	"secondopinion/internal/loopback"
	"secondopinion/internal/registry"
	"secondopinion/internal/workdays"
)

// Config is the whole configuration file. Load fills absent values with the
// defaults of Default.
type Config struct {
	// Service is how the service presents itself by mail.
	Service Service `yaml:"service"`
	// IMAP is the mailbox the requests and replies arrive in.
	IMAP IMAP `yaml:"imap"`
	// SMTP is the server outgoing mail is submitted to.
	SMTP SMTP `yaml:"smtp"`
	// DataDir holds the database and stored (encrypted) documents; created
	// with mode 0700. Required.
	DataDir string `yaml:"data_dir"`
	// KeysDir holds the OpenPGP keys (public/ for participants, the service
	// key); registry key_file paths are relative to it. Required.
	KeysDir string `yaml:"keys_dir"`
	// TemplatesDir overrides the embedded mail and form texts; empty means
	// the embedded ones.
	TemplatesDir string `yaml:"templates_dir"`
	// Registry is the registry file (arbodiensten, physicians, employers).
	// Default registry.yaml.
	Registry string `yaml:"registry"`
	// TokenKeyFile holds the secret HMAC key (at least 32 bytes) that
	// protects the reply tokens in plus-addresses. Required.
	TokenKeyFile string `yaml:"token_key_file"`
	// ServiceKeyPassphraseFile or ServiceKeyPassphraseEnv give the
	// passphrase of the service's OpenPGP key; neither means the key has
	// no passphrase.
	ServiceKeyPassphraseFile string `yaml:"service_key_passphrase_file"`
	ServiceKeyPassphraseEnv  string `yaml:"service_key_passphrase_env"`
	// Policy holds the procedure's time limits and rules.
	Policy Policy `yaml:"policy"`
	// Log configures the log output.
	Log Log `yaml:"log"`
	// HTTP is the health and metrics endpoint.
	HTTP HTTP `yaml:"http"`

	// File is the path the configuration was loaded from.
	File string `yaml:"-"`
	doc  *yamldoc.Doc
}

// Service is how the service presents itself by mail.
type Service struct {
	// LocalPart and Domain make the service address LocalPart@Domain; reply
	// addresses are LocalPart+TOKEN@Domain (plus-addressing).
	LocalPart string `yaml:"local_part"`
	Domain    string `yaml:"domain"`
	// DisplayName is the From name; default the provider's name.
	DisplayName string `yaml:"display_name"`
	// Provider is the provider's name as used in texts. Required.
	Provider string `yaml:"provider"`
	// Language is the default language of mail: nl (default) or en.
	Language string `yaml:"language"`
	// Backoffice receives the alerts of cases by mail (escalations, a
	// missing key); quarantine and other alerts are in 'alerts' and
	// /metrics. Required.
	Backoffice string `yaml:"backoffice"`
}

// Address returns the service address, LocalPart@Domain.
func (s Service) Address() string { return s.LocalPart + "@" + s.Domain }

// ReplyAddress returns the plus-address LocalPart+token@Domain.
func (s Service) ReplyAddress(token string) string {
	return s.LocalPart + "+" + token + "@" + s.Domain
}

// Connection security values.
const (
	SecurityTLS      = "tls"      // implicit TLS (IMAPS 993, SMTPS 465; RFC 8314)
	SecurityStartTLS = "starttls" // STARTTLS upgrade, required to succeed
	SecurityPlain    = "plain"    // no TLS: loopback only (tests, a local relay)
)

// IMAP is the mailbox the daemon reads.
type IMAP struct {
	Host string `yaml:"host"` // required
	// Port defaults by Security: 993 for tls, 143 otherwise.
	Port int `yaml:"port"`
	// Security is tls (default), starttls or plain (loopback hosts only).
	Security string `yaml:"security"`
	// CAFile is a PEM file of certificates trusted besides the system's
	// roots, for a server whose certificate an internal CA signed.
	CAFile   string `yaml:"ca_file"`
	Username string `yaml:"username"` // required
	// PasswordFile or PasswordEnv: exactly one is required.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// Mailbox is read for new mail; default INBOX.
	Mailbox string `yaml:"mailbox"`
	// ProcessedMailbox receives handled messages; empty means they stay
	// and get the \Seen flag.
	ProcessedMailbox string `yaml:"processed_mailbox"`
	// MaxMessageSize: larger messages are quarantined unread; default 50MiB.
	MaxMessageSize ByteSize `yaml:"max_message_size"`
	// PollInterval is the polling period when the server has no IDLE, and
	// the longest IDLE; default 5m, at most 29m.
	PollInterval time.Duration `yaml:"poll_interval"`
}

// maxPollInterval is the longest poll_interval: RFC 2177 has a client
// renew its IDLE at least every 29 minutes.
const maxPollInterval = 29 * time.Minute

// SMTP is the submission server for outgoing mail.
type SMTP struct {
	Host string `yaml:"host"` // required
	// Port defaults by Security: 465 for tls, 587 for starttls, 25 for plain.
	Port int `yaml:"port"`
	// Security is tls (default), starttls or plain.
	Security string `yaml:"security"`
	// CAFile is as IMAP.CAFile, for the SMTP server.
	CAFile string `yaml:"ca_file"`
	// AllowInsecure permits security plain to a host that is not loopback
	// (a relay on a trusted network); with tls or starttls it is an error.
	// Off by default.
	AllowInsecure bool `yaml:"allow_insecure"`
	// Username is optional (an unauthenticated local relay); with it one of
	// PasswordFile and PasswordEnv is required.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// HelloName is the EHLO name; default the service domain.
	HelloName string `yaml:"hello_name"`
	// SentCopy, when set, has the mail server keep a copy of every mail
	// sent, by which the daemon knows after a crash whether a mail it was
	// sending left (see mailout.SentCopies). Recommended.
	SentCopy SentCopy `yaml:"sent_copy"`
}

// SentCopy is an address of the service's own that gets a copy of every
// outgoing mail in the same SMTP transaction, and the IMAP folder (of the
// imap account) the mail server files those copies into.
type SentCopy struct {
	Address string `yaml:"address"`
	Mailbox string `yaml:"mailbox"`
	// Wait is how long a copy may take to be filed after the server took
	// the mail; default 2m.
	Wait time.Duration `yaml:"wait"`
}

// Policy holds the procedure's time limits and rules.
type Policy struct {
	// ChoiceDeadline is the time the employee has to choose a physician
	// from the proposal, in clock hours; default 48h (seed 000, step 3).
	ChoiceDeadline time.Duration `yaml:"choice_deadline"`
	// ConsultWorkdays is the target for the consult after a complete
	// authorisation, in working days; default 15 (seed 000, step 5).
	ConsultWorkdays int `yaml:"consult_workdays"`
	// RetentionYears is how long records are kept before they are purged;
	// default 20 (WGBO practice; the seed says 15).
	RetentionYears int `yaml:"retention_years"`
	// ManualCheck makes every case with a complete authorisation wait for
	// the backoffice's check (case approve) before the chosen physician is
	// asked; default false: a complete case is checked automatically, an
	// incomplete one always waits (seed 000, step 4).
	ManualCheck bool `yaml:"manual_check"`
	// StrictAuth requires, for every answer, an Authentication-Results
	// header from AuthservID showing DKIM or DMARC pass.
	StrictAuth bool `yaml:"strict_auth"`
	// AuthservID is the receiving server's authserv-id in
	// Authentication-Results (RFC 8601); required with StrictAuth.
	AuthservID string `yaml:"authserv_id"`
	// OfficeHours are when reminders may be sent; default 09:00–17:00.
	OfficeHours OfficeHours `yaml:"office_hours"`
	// Holidays chooses the days off beyond the fixed public holidays.
	Holidays Holidays `yaml:"holidays"`
	// Steps gives, for each waiting step, when to remind and when to
	// escalate to the backoffice.
	Steps Steps `yaml:"steps"`
}

// OfficeHours are [Start, End) on working days, Europe/Amsterdam.
type OfficeHours struct {
	Start TimeOfDay `yaml:"start"`
	End   TimeOfDay `yaml:"end"`
}

// Holidays is the configurable part of the working-day calendar.
type Holidays struct {
	// GoodFridayOff makes Goede Vrijdag a day off; default false.
	GoodFridayOff bool `yaml:"good_friday_off"`
	// LiberationDay is when Bevrijdingsdag (5 May) is a day off: lustrum
	// (default: 2025, 2030, …), always or never.
	LiberationDay string `yaml:"liberation_day"`
	// ExtraClosed lists company closing days (YYYY-MM-DD).
	ExtraClosed []Date `yaml:"extra_closed"`
}

// Step is the reminder and escalation moment of one waiting step, counted
// from the moment the wait began.
type Step struct {
	ReminderAfter Span `yaml:"reminder_after"`
	EscalateAfter Span `yaml:"escalate_after"`
}

// Steps lists every waiting step of the procedure (DESIGN.md).
type Steps struct {
	// Intake: the original physician confirms the question and sends documents.
	Intake Step `yaml:"intake"`
	// Choice: the employee chooses from the proposal. It escalates at
	// ChoiceDeadline; an escalate_after, if given, must say the same.
	Choice Step `yaml:"choice"`
	// EmployerApproval: the employer approves the costs of a physician
	// outside the pool.
	EmployerApproval Step `yaml:"employer_approval"`
	// EmployeeSignature: the employee signs the machtiging (authorisation).
	EmployeeSignature Step `yaml:"employee_signature"`
	// PhysicianSignature: the original physician co-signs.
	PhysicianSignature Step `yaml:"physician_signature"`
	// SOAcceptance: the second-opinion physician accepts the case.
	SOAcceptance Step `yaml:"so_acceptance"`
	// ConsultDate: the second-opinion physician plans the consult.
	ConsultDate Step `yaml:"consult_date"`
	// Advice: the second-opinion physician delivers the advice.
	Advice Step `yaml:"advice"`
	// FeedbackConsent: the employee decides who gets the advice.
	FeedbackConsent Step `yaml:"feedback_consent"`
}

// StepNames are the YAML names of the waiting steps, in procedure order.
var StepNames = []string{
	"intake", "choice", "employer_approval", "employee_signature", "physician_signature",
	"so_acceptance", "consult_date", "advice", "feedback_consent",
}

func (s *Steps) byName() map[string]*Step {
	return map[string]*Step{
		"intake": &s.Intake, "choice": &s.Choice, "employer_approval": &s.EmployerApproval,
		"employee_signature": &s.EmployeeSignature, "physician_signature": &s.PhysicianSignature,
		"so_acceptance": &s.SOAcceptance, "consult_date": &s.ConsultDate, "advice": &s.Advice,
		"feedback_consent": &s.FeedbackConsent,
	}
}

// ByName returns the step with YAML name name (one of StepNames).
func (s Steps) ByName(name string) (Step, bool) {
	p, ok := s.byName()[name]
	if !ok {
		return Step{}, false
	}
	return *p, true
}

// Workdays returns the working-day policy for workdays.New.
func (p Policy) Workdays() workdays.Policy {
	wp := workdays.Policy{
		GoodFridayOff: p.Holidays.GoodFridayOff,
		LiberationDay: p.Holidays.LiberationDay,
		OfficeStart:   p.OfficeHours.Start.TimeOfDay,
		OfficeEnd:     p.OfficeHours.End.TimeOfDay,
	}
	for _, d := range p.Holidays.ExtraClosed {
		wp.ExtraClosed = append(wp.ExtraClosed, d.Date)
	}
	return wp
}

// Log configures logging.
type Log struct {
	Format string `yaml:"format"` // text (default) or json
	Level  string `yaml:"level"`  // debug, info (default), warn or error
}

// SlogLevel returns Level as a slog.Level (info when unknown).
func (l Log) SlogLevel() slog.Level {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		return slog.LevelInfo
	}
	return lv
}

// HTTP is the health and metrics endpoint.
type HTTP struct {
	// Listen is host:port; default 127.0.0.1:9464; empty disables it.
	Listen string `yaml:"listen"`
}

// Default returns the configuration with every default set and nothing
// else: what an empty file would give before validation.
func Default() *Config {
	wd := func(n int) Span { return Span{workdays.Span{Workdays: n}} }
	hours := func(n int) Span { return Span{workdays.Span{Clock: time.Duration(n) * time.Hour}} }
	return &Config{
		Service:  Service{Language: "nl"},
		IMAP:     IMAP{Security: SecurityTLS, Mailbox: "INBOX", MaxMessageSize: 50 << 20, PollInterval: 5 * time.Minute},
		SMTP:     SMTP{Security: SecurityTLS},
		Registry: "registry.yaml",
		Policy: Policy{
			ChoiceDeadline:  48 * time.Hour,
			ConsultWorkdays: 15,
			RetentionYears:  20,
			OfficeHours:     OfficeHours{TimeOfDay{9 * workdays.Hour}, TimeOfDay{17 * workdays.Hour}},
			Holidays:        Holidays{LiberationDay: workdays.LiberationLustrum},
			Steps: Steps{
				Intake:             Step{wd(3), wd(5)},
				Choice:             Step{ReminderAfter: hours(24)}, // escalates at ChoiceDeadline
				EmployerApproval:   Step{wd(2), wd(5)},
				EmployeeSignature:  Step{wd(2), wd(5)},
				PhysicianSignature: Step{wd(2), wd(5)},
				SOAcceptance:       Step{wd(1), wd(3)},
				ConsultDate:        Step{wd(2), wd(5)},
				Advice:             Step{wd(5), wd(10)},
				FeedbackConsent:    Step{wd(5), wd(10)},
			},
		},
		Log:  Log{Format: "text", Level: "info"},
		HTTP: HTTP{Listen: "127.0.0.1:9464"},
	}
}

// Errors is a list of problems, each with its place; it is returned as one
// error by Load and printed one per line.
type Errors []error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Load reads the configuration file at path, applies defaults and resolves
// relative paths against the file's directory. A read error is returned
// alone; decoding problems are returned as Errors together with the
// configuration as far as it could be read, so that Validate can report
// more. Load does not validate: call Validate (or use LoadAll).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for data already read; path names the file in errors and
// anchors relative paths.
func Parse(path string, data []byte) (*Config, error) {
	c := Default()
	c.File = path
	doc, errs := yamldoc.Decode(path, data, c)
	c.doc = doc
	c.applyDerived()
	c.resolve(filepath.Dir(path))
	if len(errs) > 0 {
		return c, Errors(errs)
	}
	return c, nil
}

// LoadAll loads and validates the configuration and the registry it names,
// returning every problem of both files.
func LoadAll(path string) (*Config, *registry.Registry, []error) {
	c, err := Load(path)
	if c == nil {
		return nil, nil, []error{err}
	}
	var errs []error
	var es Errors
	if errors.As(err, &es) {
		errs = append(errs, es...)
	} else if err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Validate()...)
	reg, rerrs := registry.Load(c.Registry)
	for _, e := range rerrs {
		var ye *yamldoc.Error
		if !errors.As(e, &ye) { // the file could not be read: say where it is named
			w := c.doc.Wrap("registry", e)
			if w.File == "" {
				w.File = c.File
			}
			e = w
		}
		errs = append(errs, e)
	}
	return c, reg, errs
}

// applyDerived fills defaults that depend on other values.
func (c *Config) applyDerived() {
	if c.IMAP.Port == 0 && !c.doc.Has("imap.port") {
		c.IMAP.Port = 143
		if c.IMAP.Security == SecurityTLS {
			c.IMAP.Port = 993
		}
	}
	if c.SMTP.Port == 0 && !c.doc.Has("smtp.port") {
		switch c.SMTP.Security {
		case SecurityTLS:
			c.SMTP.Port = 465
		case SecurityStartTLS:
			c.SMTP.Port = 587
		default:
			c.SMTP.Port = 25
		}
	}
	if c.SMTP.HelloName == "" {
		c.SMTP.HelloName = c.Service.Domain
	}
	if c.SMTP.SentCopy.Wait == 0 && !c.doc.Has("smtp.sent_copy.wait") {
		c.SMTP.SentCopy.Wait = 2 * time.Minute
	}
	c.SMTP.SentCopy.Address = strings.ToLower(c.SMTP.SentCopy.Address)
	if c.Service.DisplayName == "" {
		c.Service.DisplayName = c.Service.Provider
	}
	c.Service.Domain = strings.ToLower(c.Service.Domain)
}

func (c *Config) resolve(dir string) {
	for _, p := range []*string{
		&c.DataDir, &c.KeysDir, &c.TemplatesDir, &c.Registry, &c.TokenKeyFile,
		&c.ServiceKeyPassphraseFile, &c.IMAP.PasswordFile, &c.SMTP.PasswordFile,
		&c.IMAP.CAFile, &c.SMTP.CAFile,
	} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// Validate checks the configuration and returns every problem, each an
// *yamldoc.Error with the file, line and field path when known.
func (c *Config) Validate() []error {
	var errs []error
	bad := func(path, format string, args ...any) {
		e := c.doc.Errorf(path, format, args...)
		if e.File == "" {
			e.File = c.File
		}
		errs = append(errs, e)
	}
	required := func(path, v string) bool {
		if strings.TrimSpace(v) == "" {
			bad(path, "required")
			return false
		}
		return true
	}

	s := c.Service
	if required("service.local_part", s.LocalPart) {
		if strings.ContainsAny(s.LocalPart, "+@ \t\"<>") {
			bad("service.local_part", "%q: want the part before @, without + (the reply token goes after +)", s.LocalPart)
		} else if err := registry.CheckAddress(s.LocalPart + "@example.nl"); err != nil {
			bad("service.local_part", "%q is not a valid local part", s.LocalPart)
		}
	}
	if required("service.domain", s.Domain) {
		if err := registry.CheckDomain(s.Domain); err != nil {
			bad("service.domain", "%v", err)
		}
	}
	required("service.provider", s.Provider)
	if s.Language != "nl" && s.Language != "en" {
		bad("service.language", "%q: want nl or en", s.Language)
	}
	if err := registry.CheckAddress(s.Backoffice); err != nil {
		bad("service.backoffice", "%v", err)
	}

	checkServer := func(prefix, host string, port int, security, caFile string, allowInsecure bool) {
		required(prefix+".host", host)
		if port < 1 || port > 65535 {
			bad(prefix+".port", "must be 1-65535, got %d", port)
		}
		switch security {
		case SecurityTLS, SecurityStartTLS:
			if allowInsecure {
				// The transport would fall back to plain text where the
				// server offers no STARTTLS.
				bad(prefix+".allow_insecure", "is for security plain; with %s, TLS is required to succeed", security)
			}
		case SecurityPlain:
			if host != "" && !loopback.Host(host) && !allowInsecure {
				if prefix == "smtp" {
					bad(prefix+".security", "plain (no TLS) only to a loopback host, not %q (set allow_insecure to override)", host)
				} else {
					bad(prefix+".security", "plain (no TLS) only to a loopback host, not %q", host)
				}
			}
		default:
			bad(prefix+".security", "%q: want tls, starttls or plain", security)
		}
		if caFile != "" {
			if security == SecurityPlain {
				bad(prefix+".ca_file", "is for security tls or starttls, not plain")
			} else if _, err := LoadCAFile(caFile); err != nil {
				bad(prefix+".ca_file", "%v", err)
			}
		}
	}
	checkServer("imap", c.IMAP.Host, c.IMAP.Port, c.IMAP.Security, c.IMAP.CAFile, false)
	required("imap.username", c.IMAP.Username)
	c.checkSecretRef(bad, "imap.password", c.IMAP.PasswordFile, c.IMAP.PasswordEnv, true)
	required("imap.mailbox", c.IMAP.Mailbox)
	if c.IMAP.ProcessedMailbox != "" && c.IMAP.ProcessedMailbox == c.IMAP.Mailbox {
		bad("imap.processed_mailbox", "must differ from mailbox %q (or be empty to flag messages \\Seen)", c.IMAP.Mailbox)
	}
	if c.IMAP.MaxMessageSize < 64<<10 {
		bad("imap.max_message_size", "%v is too small: want at least 64KiB", c.IMAP.MaxMessageSize)
	}
	switch {
	case c.IMAP.PollInterval < time.Second:
		bad("imap.poll_interval", "%v is too short: want at least 1s", c.IMAP.PollInterval)
	case c.IMAP.PollInterval > maxPollInterval:
		bad("imap.poll_interval", "%v is too long: want at most %v (RFC 2177: a server may end an IDLE after 30 minutes)", c.IMAP.PollInterval, maxPollInterval)
	}

	checkServer("smtp", c.SMTP.Host, c.SMTP.Port, c.SMTP.Security, c.SMTP.CAFile, c.SMTP.AllowInsecure)
	c.checkSecretRef(bad, "smtp.password", c.SMTP.PasswordFile, c.SMTP.PasswordEnv, c.SMTP.Username != "")
	if c.SMTP.Username == "" && (c.SMTP.PasswordFile != "" || c.SMTP.PasswordEnv != "") {
		bad("smtp.username", "required when a password is configured")
	}
	if c.doc.Has("smtp.hello_name") {
		if err := registry.CheckDomain(c.SMTP.HelloName); err != nil {
			bad("smtp.hello_name", "%v", err)
		}
	}

	if sc := c.SMTP.SentCopy; sc.Address != "" || sc.Mailbox != "" {
		if sc.Address == "" {
			bad("smtp.sent_copy.address", "required with smtp.sent_copy.mailbox")
		} else if err := registry.CheckAddress(sc.Address); err != nil {
			bad("smtp.sent_copy.address", "%v", err)
		}
		switch sc.Mailbox {
		case "":
			bad("smtp.sent_copy.mailbox", "required with smtp.sent_copy.address: the IMAP folder the copies are filed into")
		case c.IMAP.Mailbox, c.IMAP.ProcessedMailbox:
			bad("smtp.sent_copy.mailbox", "must differ from imap.mailbox and imap.processed_mailbox, not %q", sc.Mailbox)
		}
		if sc.Wait < time.Second {
			bad("smtp.sent_copy.wait", "%v is too short: want at least 1s", sc.Wait)
		}
	}

	required("data_dir", c.DataDir)
	required("keys_dir", c.KeysDir)
	required("registry", c.Registry)
	required("token_key_file", c.TokenKeyFile)
	c.checkSecretRef(bad, "service_key_passphrase", c.ServiceKeyPassphraseFile, c.ServiceKeyPassphraseEnv, false)

	p := c.Policy
	if p.ChoiceDeadline <= 0 {
		bad("policy.choice_deadline", "must be positive, got %v", p.ChoiceDeadline)
	}
	if p.ConsultWorkdays < 1 || p.ConsultWorkdays > 100 {
		bad("policy.consult_workdays", "must be 1-100, got %d", p.ConsultWorkdays)
	}
	if p.RetentionYears < 1 || p.RetentionYears > 115 {
		bad("policy.retention_years", "must be 1-115, got %d", p.RetentionYears)
	}
	if p.StrictAuth && strings.TrimSpace(p.AuthservID) == "" {
		bad("policy.authserv_id", "required with strict_auth: the authserv-id your receiving server writes in Authentication-Results")
	}
	if p.OfficeHours.Start.TimeOfDay >= p.OfficeHours.End.TimeOfDay {
		bad("policy.office_hours", "start %s must be before end %s", p.OfficeHours.Start, p.OfficeHours.End)
	}
	switch p.Holidays.LiberationDay {
	case workdays.LiberationLustrum, workdays.LiberationAlways, workdays.LiberationNever:
	default:
		bad("policy.holidays.liberation_day", "%q: want lustrum, always or never", p.Holidays.LiberationDay)
	}
	steps := p.Steps.byName()
	for _, name := range StepNames {
		st := steps[name]
		path := "policy.steps." + name
		if st.ReminderAfter.IsZero() {
			bad(path+".reminder_after", "required")
		}
		switch {
		case name == "choice":
			// The deadline is the escalation: one setting, not two that
			// could disagree. (The reminder is checked against it below.)
			if e := st.EscalateAfter.Span; !st.EscalateAfter.IsZero() && (e.Workdays > 0 || e.Clock != p.ChoiceDeadline) {
				bad(path+".escalate_after", "%s differs from policy.choice_deadline %v: the choice escalates at its deadline; set policy.choice_deadline instead", e, p.ChoiceDeadline)
			}
			continue
		case st.EscalateAfter.IsZero():
			bad(path+".escalate_after", "required")
		}
		if remindsLate(st.ReminderAfter.Span, st.EscalateAfter.Span) {
			bad(path+".reminder_after", "%s must come before escalate_after %s", st.ReminderAfter.Span, st.EscalateAfter.Span)
		}
	}
	if r := p.Steps.Choice.ReminderAfter.Span; remindsLate(r, workdays.Span{Clock: p.ChoiceDeadline}) {
		bad("policy.steps.choice.reminder_after", "%v must come before the choice deadline %v", r, p.ChoiceDeadline)
	}

	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q: want text or json", c.Log.Format)
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	if c.HTTP.Listen != "" {
		if _, port, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			bad("http.listen", "%q: want host:port, e.g. 127.0.0.1:9464", c.HTTP.Listen)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad("http.listen", "%q: port must be 0-65535", c.HTTP.Listen)
		}
	}
	return errs
}

// remindsLate says whether a reminder after r can come at or after an
// escalation after e, both counted from the same moment. A working day
// takes at least 24 clock hours, and over a weekend or holidays several
// days: r working days come no sooner than r×24h, e working days may come
// only after e×24h.
func remindsLate(r, e workdays.Span) bool {
	const day = 24 * time.Hour
	switch {
	case r.Workdays > 0 && e.Workdays > 0:
		return r.Workdays >= e.Workdays
	case r.Clock > 0 && e.Clock > 0:
		return r.Clock >= e.Clock
	case r.Workdays > 0 && e.Clock > 0:
		return time.Duration(r.Workdays)*day >= e.Clock
	case r.Clock > 0 && e.Workdays > 0:
		return r.Clock >= time.Duration(e.Workdays)*day
	}
	return false
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkSecretRef checks that at most one (exactly one when required) of a
// secret's file and environment references is set.
func (c *Config) checkSecretRef(bad func(path, format string, args ...any), prefix, file, env string, required bool) {
	switch {
	case file != "" && env != "":
		bad(prefix+"_file", "give %s_file or %s_env, not both", prefix, prefix)
	case file == "" && env == "" && required:
		bad(prefix+"_file", "required: %s_file (a file not readable by every user: mode 0600, or 0640 with the daemon's group) or %s_env (an environment variable); never the secret itself", prefix, prefix)
	case env != "" && !envName.MatchString(env):
		bad(prefix+"_env", "%q is not an environment variable name", env)
	}
}

// Span is a waiting time in YAML: a Go duration ("48h") or a number of
// working days ("5 workdays"). See workdays.ParseSpan.
type Span struct{ workdays.Span }

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Span) UnmarshalYAML(n *yaml.Node) error {
	v, err := yamldoc.Scalar(n)
	if err != nil {
		return err
	}
	sp, err := workdays.ParseSpan(v)
	if err != nil {
		return yamldoc.TypeError(n, err)
	}
	s.Span = sp
	return nil
}

// TimeOfDay is a wall-clock time "HH:MM" in YAML.
type TimeOfDay struct{ workdays.TimeOfDay }

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *TimeOfDay) UnmarshalYAML(n *yaml.Node) error {
	v, err := yamldoc.Scalar(n)
	if err != nil {
		return err
	}
	tod, err := workdays.ParseTimeOfDay(v)
	if err != nil {
		return yamldoc.TypeError(n, err)
	}
	t.TimeOfDay = tod
	return nil
}

// Date is a calendar date "YYYY-MM-DD" in YAML.
type Date struct{ workdays.Date }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Date) UnmarshalYAML(n *yaml.Node) error {
	v, err := yamldoc.Scalar(n)
	if err != nil {
		return err
	}
	date, err := workdays.ParseDate(v)
	if err != nil {
		return yamldoc.TypeError(n, err)
	}
	d.Date = date
	return nil
}

// ByteSize is a size in bytes; YAML accepts a number of bytes or a number
// with a unit: KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
}

// ParseByteSize parses "52428800", "50MiB" or "25 MB".
func ParseByteSize(s string) (ByteSize, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want bytes or a number with KB, MB, GB, KiB, MiB or GiB", s)
	}
	return ByteSize(n * mult), nil
}

// String formats b in the largest binary unit that divides it.
func (b ByteSize) String() string {
	switch {
	case b != 0 && b%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", b>>30)
	case b != 0 && b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", b>>20)
	case b != 0 && b%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", b>>10)
	}
	return fmt.Sprintf("%dB", int64(b))
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := yamldoc.Scalar(n)
	if err != nil {
		return err
	}
	size, err := ParseByteSize(v)
	if err != nil {
		return yamldoc.TypeError(n, err)
	}
	*b = size
	return nil
}
