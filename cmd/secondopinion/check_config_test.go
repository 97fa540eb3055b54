package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"secondopinion/internal/testenv"
	"secondopinion/templates"
)

func ccRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), &env{stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestCheckConfigExample(t *testing.T) {
	code, out, errOut := ccRun(t, "check-config", "../../config/secondopinion.example.yaml")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	want := "ok: 3 arbodiensten, 6 physicians (4 in the LPBSO pool), 3 employers; service address so@secondopinion.example.nl\n"
	if out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
}

// A templates_dir replaces every embedded text: a template missing from
// it, or one that does not parse, is a problem check-config shows (and
// the daemon refuses to start with), not a mail that fails when a case
// comes to it.
func TestCheckConfigTemplatesDir(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "texts")
	if err := os.CopyFS(tmpl, templates.FS); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "so.yaml")
	ccCopyEdit(t, "../../config/secondopinion.example.yaml", cfgPath,
		"registry: registry.example.yaml", "registry: "+ccAbs(t, "../../config/registry.example.yaml"),
		`templates_dir: ""`, "templates_dir: "+tmpl,
	)
	if code, out, _ := ccRun(t, "check-config", cfgPath); code != 0 {
		t.Fatalf("a full copy of the texts: exit %d\n%s", code, out)
	}
	if err := os.Remove(filepath.Join(tmpl, "mail", "nl", "reminder.tmpl")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmpl, "mail", "en", "proposal.tmpl"), []byte("Subject: {{if .Ref}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := ccRun(t, "check-config", cfgPath)
	if code != 1 || !strings.HasPrefix(out, cfgPath+":85: templates_dir: ") {
		t.Fatalf("exit %d, want 1 and the templates_dir line:\n%s", code, out)
	}
	for _, want := range []string{"mail/nl/reminder.tmpl", "mail/en/proposal.tmpl"} {
		if !strings.Contains(out, want) {
			t.Errorf("no word of %s in\n%s", want, out)
		}
	}
}

// TestCheckConfigBroken copies the examples, breaks addresses in both files
// and expects exactly one line per broken field, with its place.
func TestCheckConfigBroken(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "so.yaml")
	ccCopyEdit(t, "../../config/secondopinion.example.yaml", cfgPath,
		"registry: registry.example.yaml", "registry: reg.yaml",
		"backoffice: backoffice@secondopinion.example.nl", "backoffice: backoffice@",
		"  # port: 465 ", "  port: 0 ",
		"domain: secondopinion.example.nl", "domain: secondopinion..example.nl",
	)
	ccCopyEdit(t, "../../config/registry.example.yaml", filepath.Join(dir, "reg.yaml"),
		"email: p.bakker@arbomidden.example.nl", `email: "jan@"`,
		"notice_email: p-o@middenstad.example.nl", "notice_email: p-o at middenstad.example.nl",
		"email: aanvraag@socentrum.example.test", "email: aanvraag@socentrum",
		"arbodienst: arbo-zuid\n    pool: false", "arbodienst: arbo-west\n    pool: false",
	)
	code, out, errOut := ccRun(t, "check-config", cfgPath)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	reg := filepath.Join(dir, "reg.yaml")
	want := []string{
		cfgPath + `:21: service.domain: "secondopinion..example.nl" is not a valid domain (lower case, like example.nl)`,
		cfgPath + `:30: service.backoffice: "backoffice@" is not a valid address`,
		cfgPath + ":54: smtp.port: must be 1-65535, got 0",
		reg + `:54: physicians[2].email: "jan@" is not a valid address`,
		reg + `:78: physicians[5].arbodienst: unknown arbodienst "arbo-west"`,
		reg + `:101: employers[1].notice_email: "p-o at middenstad.example.nl" is not a valid address`,
		reg + `:112: employers[2].second_opinion_party.email: "aanvraag@socentrum" is not a valid address`,
	}
	if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
	if errOut != "check-config: 7 problem(s)\n" {
		t.Errorf("stderr = %q", errOut)
	}
}

func TestCheckConfigSecrets(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "so.yaml")
	ccCopyEdit(t, "../../config/secondopinion.example.yaml", cfgPath,
		"registry: registry.example.yaml", "registry: "+ccAbs(t, "../../config/registry.example.yaml"),
		"token_key_file: /etc/secondopinion/token.key", "token_key_file: token.key",
	)
	if err := os.WriteFile(filepath.Join(dir, "token.key"), []byte(strings.Repeat("k", 32)), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "token.key"), 0o644)
	t.Setenv("SECONDOPINION_IMAP_PASSWORD", "imap-pw")
	t.Setenv("SECONDOPINION_SMTP_PASSWORD", "smtp-pw")
	t.Setenv("SECONDOPINION_KEY_PASSPHRASE", "")
	code, out, _ := ccRun(t, "check-config", "-secrets", cfgPath)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		cfgPath + ":92: token_key_file: secret file is readable by others",
		cfgPath + ":96: service_key_passphrase_env: environment variable SECONDOPINION_KEY_PASSPHRASE is empty",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "imap-pw") || strings.Contains(out, "smtp-pw") || strings.Contains(out, "kkkk") {
		t.Errorf("a secret was printed:\n%s", out)
	}
	if n := strings.Count(out, "\n"); n != 2 {
		t.Errorf("%d lines, want 2:\n%s", n, out)
	}
}

func TestCheckConfigUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"no file", []string{"check-config"}, 2},
		{"missing file", []string{"check-config", filepath.Join(t.TempDir(), "none.yaml")}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := ccRun(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
		})
	}
}

func ccCopyEdit(t *testing.T, from, to string, oldNew ...string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			t.Fatalf("%s lacks %q", from, oldNew[i])
		}
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	if err := os.WriteFile(to, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func ccAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestCheckConfigKeys(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "so.yaml")
	ccCopyEdit(t, "../../config/secondopinion.example.yaml", cfgPath,
		"registry: registry.example.yaml", "registry: "+ccAbs(t, "../../config/registry.example.yaml"),
		"keys_dir: ../keys", "keys_dir: keys",
	)
	pub := filepath.Join(dir, "keys", "public")
	if err := os.MkdirAll(pub, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"a.devries@arbo-noord.example.nl", "m.jansen@arbo-noord.example.nl", "p.bakker@arbomidden.example.nl",
		"s.elamrani@arbomidden.example.nl", "j.visser@zuidarbo.example.test"} { // k.smit's key is missing
		if err := os.WriteFile(filepath.Join(pub, addr+".asc"), []byte("key"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ := ccRun(t, "check-config", "-keys", cfgPath)
	if code != 1 || strings.Count(out, "\n") != 1 || !strings.Contains(out, "physicians[5].key_file:") || !strings.Contains(out, "k.smit@zuidarbo.example.test.asc") {
		t.Errorf("exit %d, stdout:\n%s\nwant one line about physicians[5].key_file", code, out)
	}
}

// TestCheckConfigServers runs check-config -servers against a real Dovecot
// and Postfix with STARTTLS and a certificate from a private CA, as an
// operator would before the first start: with the CA in ca_file both work,
// without it both are refused with the reason, and a wrong password is
// named as such.
func TestCheckConfigServers(t *testing.T) {
	const user, pass = "so@secondopinion.example.nl", "so-imap-test"
	tlsFiles := testenv.NewTLSFiles(t)
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{Users: map[string]string{user: pass}, TLS: &tlsFiles})
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{TLS: &tlsFiles})
	_, imapPort, _ := net.SplitHostPort(dc.Addr)
	_, smtpPort, _ := net.SplitHostPort(pf.Addr)
	dir := t.TempDir()
	ccCopyEdit(t, "../../config/registry.example.yaml", filepath.Join(dir, "registry.example.yaml"))
	write := func(withCA bool) string {
		ca := ""
		if withCA {
			ca = "\n  ca_file: " + tlsFiles.CAFile
		}
		p := filepath.Join(dir, "so.yaml")
		ccCopyEdit(t, "../../config/secondopinion.example.yaml", p,
			"host: imap.secondopinion.example.nl", "host: 127.0.0.1\n  port: "+imapPort,
			"  security: tls               # tls (default) | starttls | plain (plain: loopback hosts only)", "  security: starttls"+ca,
			"host: smtp.secondopinion.example.nl", "host: 127.0.0.1\n  port: "+smtpPort,
			"  security: tls               # tls (default) | starttls | plain\n", "  security: starttls"+ca+"\n",
			"  username: so@secondopinion.example.nl   # optional; with it a password is required\n", "",
			"  password_env: SECONDOPINION_SMTP_PASSWORD\n", "",
		)
		return p
	}

	t.Setenv("SECONDOPINION_IMAP_PASSWORD", pass)
	code, out, errOut := ccRun(t, "check-config", "-servers", write(true))
	t.Logf("check-config -servers:\n%s", out)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"imap " + dc.Addr + ": ok: logged in as " + user + "; INBOX holds 0 messages; Verwerkt will be created at the first start; Verzonden will be created at the first start\n",
		"smtp " + pf.Addr + ": ok: TLS\n",
		"ok: 3 arbodiensten",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dc.MaildirBase, user))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), ".") {
			t.Errorf("the check created the folder %s", e.Name()) // Maildir++: .Verwerkt
		}
	}

	code, out, _ = ccRun(t, "check-config", "-servers", write(false))
	t.Logf("without ca_file:\n%s", out)
	if code != 1 || strings.Count(out, "certificate signed by unknown authority") != 2 {
		t.Errorf("without ca_file: exit %d, want 1 and both servers refused:\n%s", code, out)
	}

	t.Setenv("SECONDOPINION_IMAP_PASSWORD", "wrong")
	code, out, _ = ccRun(t, "check-config", "-servers", write(true))
	if code != 1 || !strings.Contains(out, "imap "+dc.Addr+": login as "+user+": ") || !strings.Contains(out, "smtp "+pf.Addr+": ok") {
		t.Errorf("wrong password: exit %d:\n%s", code, out)
	}
}
