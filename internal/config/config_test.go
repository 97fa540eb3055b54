package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"secondopinion/internal/config/yamldoc"
	"secondopinion/internal/workdays"
)

const example = "../../config/secondopinion.example.yaml"

func TestExample(t *testing.T) {
	c, reg, errs := LoadAll(example)
	for _, e := range errs {
		t.Errorf("example: %v", e)
	}
	if c == nil || reg == nil {
		t.Fatal("LoadAll returned nil")
	}
	abs, _ := filepath.Abs("../../config/registry.example.yaml")
	gotReg, _ := filepath.Abs(c.Registry)
	if gotReg != abs {
		t.Errorf("registry = %s, want %s (relative to the config file)", c.Registry, abs)
	}
	if c.IMAP.Port != 993 || c.SMTP.Port != 465 || c.SMTP.HelloName != "secondopinion.example.nl" {
		t.Errorf("derived defaults: imap port %d, smtp port %d, hello %q", c.IMAP.Port, c.SMTP.Port, c.SMTP.HelloName)
	}
	if got := c.Service.ReplyAddress("abc"); got != "so+abc@secondopinion.example.nl" {
		t.Errorf("ReplyAddress = %q", got)
	}
	if c.Policy.Steps.Choice.ReminderAfter.Clock != 24*time.Hour || c.Policy.Steps.Advice.EscalateAfter.Workdays != 10 {
		t.Errorf("steps not read: %+v", c.Policy.Steps)
	}
	if c.IMAP.MaxMessageSize != 50<<20 {
		t.Errorf("max_message_size = %v", c.IMAP.MaxMessageSize)
	}
}

// TestExampleMentionsEveryStep: the example shows the reminder and
// escalation moments of every waiting step.
func TestExampleMentionsEveryStep(t *testing.T) {
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range StepNames {
		if !strings.Contains(string(data), "    "+name+":") {
			t.Errorf("example does not show step %s", name)
		}
	}
}

const minimal = `service:
  local_part: so
  domain: so.example.nl
  provider: P
  backoffice: bo@so.example.nl
imap:
  host: imap.example.nl
  username: u
  password_env: PW
smtp:
  host: smtp.example.nl
data_dir: data
keys_dir: keys
token_key_file: token.key
`

func TestDefaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "so.yaml")
	c, err := Parse(path, []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatalf("minimal config: %v", errs)
	}
	d := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"imap port", c.IMAP.Port, 993},
		{"smtp port", c.SMTP.Port, 465},
		{"mailbox", c.IMAP.Mailbox, "INBOX"},
		{"language", c.Service.Language, "nl"},
		{"display name", c.Service.DisplayName, "P"},
		{"data dir relative to the file", c.DataDir, filepath.Join(dir, "data")},
		{"registry default", c.Registry, filepath.Join(dir, "registry.yaml")},
		{"choice deadline", c.Policy.ChoiceDeadline, 48 * time.Hour},
		{"consult workdays", c.Policy.ConsultWorkdays, 15},
		{"retention", c.Policy.RetentionYears, 20},
		{"steps", c.Policy.Steps, d.Policy.Steps},
		{"http", c.HTTP.Listen, "127.0.0.1:9464"},
		{"office start", c.Policy.OfficeHours.Start.String(), "09:00"},
	}
	for _, ch := range checks {
		t.Run(ch.name, func(t *testing.T) {
			if ch.got != ch.want {
				t.Errorf("got %v, want %v", ch.got, ch.want)
			}
		})
	}
}

func TestPortDefaultsBySecurity(t *testing.T) {
	tests := []struct {
		security   string
		imap, smtp int
	}{
		{"tls", 993, 465},
		{"starttls", 143, 587},
		{"plain", 143, 25},
	}
	for _, tt := range tests {
		t.Run(tt.security, func(t *testing.T) {
			src := strings.Replace(minimal, "  username: u\n", "  username: u\n  security: "+tt.security+"\n", 1)
			src = strings.Replace(src, "  host: smtp.example.nl\n", "  host: smtp.example.nl\n  security: "+tt.security+"\n", 1)
			c, err := Parse("so.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if c.IMAP.Port != tt.imap || c.SMTP.Port != tt.smtp {
				t.Errorf("ports %d, %d; want %d, %d", c.IMAP.Port, c.SMTP.Port, tt.imap, tt.smtp)
			}
		})
	}
}

// TestValidation: each broken field gives exactly the errors listed, with
// file, line and path.
func TestValidation(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		want     []string
	}{
		{"smtp port zero", "  host: smtp.example.nl\n", "  host: smtp.example.nl\n  port: 0\n",
			[]string{"so.yaml:12: smtp.port: must be 1-65535, got 0"}},
		{"backoffice address", "backoffice: bo@so.example.nl", "backoffice: bo@",
			[]string{`so.yaml:5: service.backoffice: "bo@" is not a valid address`}},
		{"local part with plus", "local_part: so", "local_part: so+x",
			[]string{`so.yaml:2: service.local_part: "so+x": want the part before @, without + (the reply token goes after +)`}},
		{"domain", "domain: so.example.nl", "domain: so_example",
			[]string{`so.yaml:3: service.domain: "so_example" is not a valid domain (lower case, like example.nl)`}},
		{"missing provider", "  provider: P\n", "",
			[]string{"so.yaml:1: service.provider: required"}},
		{"plain imap to a remote host", "  username: u\n", "  username: u\n  security: plain\n",
			[]string{`so.yaml:9: imap.security: plain (no TLS) only to a loopback host, not "imap.example.nl"`}},
		{"plain imap on loopback is fine", "host: imap.example.nl", "host: 127.0.0.1\n  security: plain", nil},
		{"plain smtp allowed by allow_insecure", "  host: smtp.example.nl\n", "  host: smtp.example.nl\n  security: plain\n  allow_insecure: true\n", nil},
		{"allow_insecure with starttls", "  host: smtp.example.nl\n", "  host: smtp.example.nl\n  security: starttls\n  allow_insecure: true\n",
			[]string{"so.yaml:13: smtp.allow_insecure: is for security plain; with starttls, TLS is required to succeed"}},
		{"password both ways", "password_env: PW", "password_env: PW\n  password_file: pw",
			[]string{"so.yaml:10: imap.password_file: give imap.password_file or imap.password_env, not both"}},
		{"no password", "  password_env: PW\n", "",
			[]string{"so.yaml:6: imap.password_file: required: imap.password_file (a file not readable by every user: mode 0600, or 0640 with the daemon's group) or imap.password_env (an environment variable); never the secret itself"}},
		{"smtp user without password", "  host: smtp.example.nl\n", "  host: smtp.example.nl\n  username: u\n",
			[]string{"so.yaml:10: smtp.password_file: required: smtp.password_file (a file not readable by every user: mode 0600, or 0640 with the daemon's group) or smtp.password_env (an environment variable); never the secret itself"}},
		{"strict auth without authserv id", "token_key_file: token.key\n", "token_key_file: token.key\npolicy:\n  strict_auth: true\n",
			[]string{"so.yaml:15: policy.authserv_id: required with strict_auth: the authserv-id your receiving server writes in Authentication-Results"}},
		{"reminder after escalation", "token_key_file: token.key\n", "token_key_file: token.key\npolicy:\n  steps:\n    advice:\n      reminder_after: 10 workdays\n      escalate_after: 3 workdays\n",
			[]string{"so.yaml:18: policy.steps.advice.reminder_after: 10 workdays must come before escalate_after 3 workdays"}},
		{"choice escalation other than the deadline", "token_key_file: token.key\n", "token_key_file: token.key\npolicy:\n  steps:\n    choice:\n      escalate_after: 24h\n",
			[]string{"so.yaml:18: policy.steps.choice.escalate_after: 24h0m0s differs from policy.choice_deadline 48h0m0s: the choice escalates at its deadline; set policy.choice_deadline instead"}},
		{"choice escalation in working days", "token_key_file: token.key\n", "token_key_file: token.key\npolicy:\n  steps:\n    choice:\n      escalate_after: 2 workdays\n",
			[]string{"so.yaml:18: policy.steps.choice.escalate_after: 2 workdays differs from policy.choice_deadline 48h0m0s: the choice escalates at its deadline; set policy.choice_deadline instead"}},
		{"choice escalation at the deadline", "token_key_file: token.key\n", "token_key_file: token.key\npolicy:\n  choice_deadline: 36h\n  steps:\n    choice:\n      escalate_after: 36h\n", nil},
		{"choice deadline alone", "token_key_file: token.key\n", "token_key_file: token.key\npolicy:\n  choice_deadline: 36h\n", nil},
		{"bad span", "token_key_file: token.key\n", "token_key_file: token.key\npolicy:\n  steps:\n    advice:\n      reminder_after: 3 days\n",
			[]string{`so.yaml:18: policy.steps.advice.reminder_after: span "3 days": want a positive duration like 48h or a count like 5 workdays`}},
		{"bad office hours", "token_key_file: token.key\n", "token_key_file: token.key\npolicy:\n  office_hours: {start: \"18:00\", end: \"9:00\"}\n",
			[]string{"so.yaml:16: policy.office_hours: start 18:00 must be before end 09:00"}},
		{"bad closed day", "token_key_file: token.key\n", "token_key_file: token.key\npolicy:\n  holidays:\n    extra_closed: [2026-02-30]\n",
			[]string{`so.yaml:17: policy.holidays.extra_closed[0]: date "2026-02-30": want YYYY-MM-DD`}},
		{"liberation day", "token_key_file: token.key\n", "token_key_file: token.key\npolicy:\n  holidays:\n    liberation_day: sometimes\n",
			[]string{`so.yaml:17: policy.holidays.liberation_day: "sometimes": want lustrum, always or never`}},
		{"duration", "  username: u\n", "  username: u\n  poll_interval: often\n",
			[]string{`so.yaml:9: imap.poll_interval: invalid value "often": want a duration like 90s, 5m or 48h`}},
		{"poll interval over 29 minutes", "  username: u\n", "  username: u\n  poll_interval: 30m\n",
			[]string{"so.yaml:9: imap.poll_interval: 30m0s is too long: want at most 29m0s (RFC 2177: a server may end an IDLE after 30 minutes)"}},
		{"poll interval of 29 minutes", "  username: u\n", "  username: u\n  poll_interval: 29m\n", nil},
		{"size", "  username: u\n", "  username: u\n  max_message_size: 1 TB\n",
			[]string{`so.yaml:9: imap.max_message_size: size "1 TB": want bytes or a number with KB, MB, GB, KiB, MiB or GiB`}},
		{"unknown field", "  username: u\n", "  usernaam: u\n",
			[]string{"so.yaml:8: imap.usernaam: unknown field (check the spelling)", "so.yaml:6: imap.username: required"}},
		{"log format", "keys_dir: keys\n", "keys_dir: keys\nlog: {format: xml}\n",
			[]string{`so.yaml:14: log.format: "xml": want text or json`}},
		{"http listen", "keys_dir: keys\n", "keys_dir: keys\nhttp: {listen: localhost}\n",
			[]string{`so.yaml:14: http.listen: "localhost": want host:port, e.g. 127.0.0.1:9464`}},
		{"sent copy", "  host: smtp.example.nl\n", "  host: smtp.example.nl\n  sent_copy: {address: so+sent@so.example.nl, mailbox: Sent}\n", nil},
		{"sent copy without mailbox", "  host: smtp.example.nl\n", "  host: smtp.example.nl\n  sent_copy: {address: so+sent@so.example.nl}\n",
			[]string{"so.yaml:12: smtp.sent_copy.mailbox: required with smtp.sent_copy.address: the IMAP folder the copies are filed into"}},
		{"sent copy into the inbox", "  host: smtp.example.nl\n", "  host: smtp.example.nl\n  sent_copy: {address: so+sent@so.example.nl, mailbox: INBOX, wait: 10ms}\n",
			[]string{`so.yaml:12: smtp.sent_copy.mailbox: must differ from imap.mailbox and imap.processed_mailbox, not "INBOX"`,
				"so.yaml:12: smtp.sent_copy.wait: 10ms is too short: want at least 1s"}},
		{"sent copy with no wait", "  host: smtp.example.nl\n", "  host: smtp.example.nl\n  sent_copy: {address: so+sent@so.example.nl, mailbox: Sent, wait: 0s}\n",
			[]string{"so.yaml:12: smtp.sent_copy.wait: 0s is too short: want at least 1s"}},
		{"reminder in working days after an escalation in hours", "keys_dir: keys\n",
			"keys_dir: keys\npolicy: {steps: {intake: {reminder_after: 2 workdays, escalate_after: 36h}}}\n",
			[]string{"so.yaml:14: policy.steps.intake.reminder_after: 2 workdays must come before escalate_after 36h0m0s"}},
		{"reminder in hours after an escalation in working days", "keys_dir: keys\n",
			"keys_dir: keys\npolicy: {steps: {advice: {reminder_after: 50h, escalate_after: 2 workdays}}}\n",
			[]string{"so.yaml:14: policy.steps.advice.reminder_after: 50h0m0s must come before escalate_after 2 workdays"}},
		{"reminder in hours before an escalation in working days", "keys_dir: keys\n",
			"keys_dir: keys\npolicy: {steps: {advice: {reminder_after: 20h, escalate_after: 1 workday}}}\n", nil},
		{"choice reminder in working days after the deadline", "keys_dir: keys\n",
			"keys_dir: keys\npolicy: {steps: {choice: {reminder_after: 2 workdays}}}\n",
			[]string{"so.yaml:14: policy.steps.choice.reminder_after: 2 workdays must come before the choice deadline 48h0m0s"}},
		{"http disabled", "keys_dir: keys\n", "keys_dir: keys\nhttp: {listen: \"\"}\n", nil},
		{"missing data dir", "data_dir: data\n", "",
			[]string{"so.yaml: data_dir: required"}},
		{"env name", "password_env: PW", "password_env: PW-1",
			[]string{`so.yaml:9: imap.password_env: "PW-1" is not an environment variable name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(minimal, tt.old) {
				t.Fatalf("test bug: %q not in the minimal config", tt.old)
			}
			c, err := Parse("so.yaml", []byte(strings.Replace(minimal, tt.old, tt.new, 1)))
			var got []string
			var es Errors
			if errors.As(err, &es) {
				for _, e := range es {
					got = append(got, e.Error())
				}
			} else if err != nil {
				t.Fatal(err)
			}
			for _, e := range c.Validate() {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestErrorsHavePlaces(t *testing.T) {
	_, err := Parse("so.yaml", []byte("service: {domain: x}\nimap: {port: 99999, security: ssl}\nsmtp: 5\n"))
	c, _ := Parse("so.yaml", []byte("service: {domain: x}\nimap: {port: 99999, security: ssl}\n"))
	all := append([]error{err}, c.Validate()...)
	if len(all) < 10 {
		t.Errorf("want many errors at once, got %d: %v", len(all), all)
	}
	for _, e := range c.Validate() {
		var ye *yamldoc.Error
		if !errors.As(e, &ye) || ye.File != "so.yaml" || ye.Path == "" {
			t.Errorf("error without place: %v", e)
		}
	}
}

func TestWorkdaysPolicy(t *testing.T) {
	c, err := Load(example)
	if err != nil {
		t.Fatal(err)
	}
	cal, err := workdays.New(c.Policy.Workdays())
	if err != nil {
		t.Fatal(err)
	}
	ams := cal.Location()
	if cal.IsWorkday(time.Date(2026, 12, 24, 10, 0, 0, 0, ams)) {
		t.Error("24 December 2026 is an extra closed day in the example but counts as a working day")
	}
	if !cal.InOfficeHours(time.Date(2026, 12, 23, 16, 59, 0, 0, ams)) || cal.InOfficeHours(time.Date(2026, 12, 23, 17, 0, 0, 0, ams)) {
		t.Error("office hours 09:00-17:00 not applied")
	}
}

func TestStepsByName(t *testing.T) {
	s := Default().Policy.Steps
	for _, name := range StepNames {
		st, ok := s.ByName(name)
		// The choice escalates at policy.choice_deadline.
		if !ok || st.ReminderAfter.IsZero() || st.EscalateAfter.IsZero() != (name == "choice") {
			t.Errorf("ByName(%q) = %+v, %v", name, st, ok)
		}
	}
	if _, ok := s.ByName("nap"); ok {
		t.Error("ByName accepted an unknown step")
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("SO_TEST_SECRET", "from-env\n")
	tests := []struct {
		name      string
		file, env string
		want      string
		wantErr   error
	}{
		{"file 0600 with newline", write("a", "s3cret\n", 0o600), "", "s3cret", nil},
		{"file with CRLF", write("b", "s3cret\r\n", 0o600), "", "s3cret", nil},
		{"group-readable file is fine", write("c", "x", 0o640), "", "x", nil},
		{"world-readable file refused", write("d", "x", 0o644), "", "", ErrSecretReadable},
		{"missing file", filepath.Join(dir, "none"), "", "", os.ErrNotExist},
		{"environment", "", "SO_TEST_SECRET", "from-env", nil},
		{"unset variable", "", "SO_TEST_UNSET_SECRET", "", errAny},
		{"nothing", "", "", "", ErrNoSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadSecret(tt.file, tt.env)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("LoadSecret: %v", err)
			case tt.wantErr == errAny && err == nil, tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("LoadSecret = %q, %v; want error %v", got, err, tt.wantErr)
			}
			if string(got) != tt.want {
				t.Errorf("LoadSecret = %q, want %q", got, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %v shows the secret", err)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestTokenKey(t *testing.T) {
	dir := t.TempDir()
	bin := make([]byte, 32)
	for i := range bin {
		bin[i] = byte(i*7 + 1)
	}
	bin[31] = '\n' // a binary key keeps a trailing newline byte
	tests := []struct {
		name    string
		content []byte
		wantLen int // 0 = error
	}{
		{"binary 32 bytes", bin, 32},
		{"text key with newline", []byte(strings.Repeat("k", 40) + "\n"), 40},
		{"too short", []byte("short\n"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(p, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			c := &Config{TokenKeyFile: p}
			k, err := c.TokenKey()
			if tt.wantLen == 0 {
				if err == nil {
					t.Errorf("TokenKey accepted %d bytes", len(k))
				}
				return
			}
			if err != nil || len(k) != tt.wantLen {
				t.Errorf("TokenKey = %d bytes, %v; want %d", len(k), err, tt.wantLen)
			}
		})
	}
}

func TestCheckSecrets(t *testing.T) {
	dir := t.TempDir()
	src := strings.Replace(minimal, "password_env: PW", "password_file: pw", 1)
	c, err := Parse(filepath.Join(dir, "so.yaml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "pw"), []byte("pw\n"), 0o644)
	os.Chmod(filepath.Join(dir, "pw"), 0o644)
	os.WriteFile(filepath.Join(dir, "token.key"), []byte(strings.Repeat("t", 32)), 0o600)
	errs := c.CheckSecrets()
	if len(errs) != 1 || !errors.Is(errs[0], ErrSecretReadable) {
		t.Fatalf("CheckSecrets = %v, want one error for imap.password_file", errs)
	}
	if !strings.HasPrefix(errs[0].Error(), filepath.Join(dir, "so.yaml")+":9: imap.password_file: ") {
		t.Errorf("error without place: %v", errs[0])
	}
	os.Chmod(filepath.Join(dir, "pw"), 0o600)
	if errs := c.CheckSecrets(); len(errs) != 0 {
		t.Errorf("CheckSecrets after chmod = %v", errs)
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"1024", 1024, true},
		{"50MiB", 50 << 20, true},
		{"25 MB", 25e6, true},
		{"1GiB", 1 << 30, true},
		{"-1", 0, false},
		{"10 TB", 0, false},
		{"MiB", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseByteSize(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("ParseByteSize(%q) = %v, %v", tt.in, got, err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	data, err := os.ReadFile(example)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(minimal))
	f.Add([]byte("policy: {steps: {advice: [1]}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _ := Parse("f.yaml", data)
		if c != nil {
			c.Validate()
		}
	})
}

func TestLoadAllMissingRegistry(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "so.yaml")
	if err := os.WriteFile(path, []byte(minimal+"registry: reg.yaml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, errs := LoadAll(path)
	if len(errs) != 1 || !errors.Is(errs[0], os.ErrNotExist) || !strings.HasPrefix(errs[0].Error(), path+":15: registry: read registry: ") {
		t.Errorf("LoadAll = %v, want one error at registry naming the missing file", errs)
	}
}
