package e2e

import (
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"secondopinion/internal/procedure"
	"secondopinion/internal/rig"
)

// branch is one path through the procedure, played by mail.
type branch struct {
	name string
	mod  func(p people, o *rig.Options)
	run  func(e *env)
	// want lists the templates each participant receives (any order);
	// participants not named receive nothing.
	want  func(p people) map[string][]string
	state procedure.State
	// so is the physician who may read the forward (default bakker).
	so func(p people) string
	// bug, when set, names a known defect that makes the branch fail: it
	// is skipped with the reason until the lead fixes it
	// (E2E_KNOWN_BUGS=1 runs it anyway).
	bug string
}

// Templates of the common stretches of the procedure.
var (
	ack        = []string{"acknowledgement"}
	toProposal = []string{"acknowledgement", "proposal"}
	toForm     = []string{"acknowledgement", "proposal", "form_employee"}
)

func join(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func consentBranch(text string, physician, employer bool) branch {
	name := "consent_physician_" + yn(physician) + "_employer_" + yn(employer)
	return branch{
		name: name, state: procedure.StateCompleted,
		run: func(e *env) {
			q := e.advise(e.advising())
			e.reply(e.p.employee, q, text, false)
			e.next(e.p.employee, "afgerond")
			e.next(e.p.original, "afgerond")
			if employer {
				// The advice may go to the employer, who has no key: a
				// content-free notice, never the advice in clear.
				e.next(e.p.employer, "beveiligd")
			}
		},
		want: func(p people) map[string][]string {
			w := map[string][]string{
				p.employee:   join(toForm, []string{"consult_planned", "medical_notice", "feedback_question", "completion_employee"}),
				p.original:   {"intake", "form_physician", "completion_physician"},
				p.bakker:     {"so_request", "forward", "advice_request"},
				p.backoffice: {"alert"},
			}
			if physician {
				w[p.original] = []string{"intake", "form_physician", "completion_physician_advice"}
			}
			if employer {
				w[p.employer] = []string{"medical_notice"}
				w[p.backoffice] = append(w[p.backoffice], "alert")
			}
			return w
		},
	}
}

func yn(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func branches() []branch {
	return []branch{
		{
			name: "happy_path_gpg", state: procedure.StateCompleted,
			run: runHappyPath,
			want: func(p people) map[string][]string {
				return map[string][]string{
					p.employee:   join(toForm, []string{"consult_planned", "medical_notice", "feedback_question", "completion_employee"}),
					p.original:   {"intake", "form_physician", "completion_physician_advice"},
					p.bakker:     {"so_request", "forward", "advice_request"},
					p.backoffice: {"alert"},
				}
			},
		},
		{
			name: "out_of_scope_aanstellingskeuring", state: procedure.StateOutOfScope,
			run: func(e *env) {
				e.send(e.p.employee, "Second opinion aanstellingskeuring", e.requestText("Acme Logistiek BV", "aanstellingskeuring"))
				r := e.next(e.p.employee, "aanstellingskeuring")
				if !strings.Contains(strings.ToLower(r.Text()), "herkeuring") {
					e.t.Errorf("the out-of-scope answer does not name the herkeuring route:\n%s", r.Text())
				}
			},
			want: func(p people) map[string][]string {
				return map[string][]string{p.employee: {"out_of_scope_keuring"}}
			},
		},
		{
			name: "out_of_scope_uwv", state: procedure.StateOutOfScope,
			run: func(e *env) {
				e.send(e.p.employee, "Second opinion deskundigenoordeel", e.requestText("Acme Logistiek BV", "deskundigenoordeel UWV"))
				r := e.next(e.p.employee, "UWV")
				if !strings.Contains(r.Text(), "UWV") {
					e.t.Errorf("the out-of-scope answer does not name UWV:\n%s", r.Text())
				}
			},
			want: func(p people) map[string][]string {
				return map[string][]string{p.employee: {"out_of_scope_uwv"}}
			},
		},
		{
			name: "referral", state: procedure.StateReferred,
			run: func(e *env) {
				e.send(e.p.employee, "Aanvraag second opinion", e.requestText("Verwijs Bouw BV", "verzuimbegeleiding"))
				r := e.next(e.p.employee, "loopt via")
				if !strings.Contains(r.Msg.Subject+r.Text(), "Tweede Blik Arbo") {
					e.t.Errorf("the referral does not name the contracted party:\n%s", r.Text())
				}
			},
			want: func(p people) map[string][]string {
				return map[string][]string{p.employee: {"referred"}}
			},
		},
		{
			name: "refusal", state: procedure.StateRefused,
			run: func(e *env) {
				in := e.request()
				e.reply(e.p.original, in, "WEIGEREN\nReden: herhaald gebruik; dezelfde vraag is vorig jaar al beantwoord. REFMARK-"+e.p.tag+"\n\nA. de Vries", true)
				// The reason is the physician's statement: the employee,
				// without a key, gets a content-free notice.
				e.next(e.p.employee, "beveiligd")
			},
			want: func(p people) map[string][]string {
				return map[string][]string{
					p.employee: join(ack, []string{"medical_notice"}), p.original: {"intake"}, p.backoffice: {"alert"},
				}
			},
		},
		{
			name: "outside_pool_employer_approves", state: procedure.StateCompleted,
			so: func(p people) string { return p.smit },
			run: func(e *env) {
				prop := e.choosing()
				e.reply(e.p.employee, prop, "Ik kies liever dokter E. Smit.", false)
				ap := e.next(e.p.employer, "kosten")
				e.reply(e.p.employer, ap, "Ja, akkoord, wij betalen.", false)
				e.sign()
				e.accept(e.p.smit)
				q := e.next(e.p.smit, "advies na het consult")
				e.r.Clock.Set(time.Date(2026, 3, 10, 16, 30, 0, 0, rig.Amsterdam))
				e.reply(e.p.smit, q, "Er volgt geen inhoudelijk advies.\n\nE. Smit", true)
				e.next(e.p.employee, "afgerond")
				// The employer learned of the case by the approval: the
				// plain notice of completion, not the advice.
				e.next(e.p.employer, "afgerond")
				if c := e.theCase(); c.Payer != procedure.PayerEmployer {
					e.t.Errorf("payer %q, want the employer who approved", c.Payer)
				}
			},
			want: func(p people) map[string][]string {
				return map[string][]string{
					p.employee: join(toForm, []string{"consult_planned", "completion_employee"}),
					p.employer: {"employer_approval", "completion_employer"},
					p.original: {"intake", "form_physician", "completion_physician"},
					p.smit:     {"so_request", "forward", "advice_request"},
				}
			},
		},
		{
			name: "outside_pool_employer_declines", state: procedure.StateAdvising,
			so: func(p people) string { return p.smit },
			run: func(e *env) {
				prop := e.choosing()
				e.reply(e.p.employee, prop, "Ik kies liever dokter E. Smit.", false)
				ap := e.next(e.p.employer, "kosten")
				e.reply(e.p.employer, ap, "Nee, dat betalen wij niet.", false)
				e.next(e.p.employee, "betaalt")
				e.sign()
				e.accept(e.p.smit)
				e.next(e.p.smit, "advies na het consult")
				if c := e.theCase(); c.Payer != procedure.PayerEmployee {
					e.t.Errorf("payer %q, want the employee (employer declined)", c.Payer)
				}
			},
			want: func(p people) map[string][]string {
				return map[string][]string{
					p.employee: join(toProposal, []string{"approval_declined", "form_employee", "consult_planned"}),
					p.employer: {"employer_approval"},
					p.original: {"intake", "form_physician"},
					p.smit:     {"so_request", "forward", "advice_request"},
				}
			},
		},
		{
			name: "so_unavailable_backup", state: procedure.StateAdvising,
			so: func(p people) string { return p.jansen },
			run: func(e *env) {
				e.accepting("Ik kies 1, en als reserve 2.")
				req := e.next(e.p.bakker, "second opinion doen")
				e.reply(e.p.bakker, req, "Nee, helaas. Ik ben de komende drie weken afwezig.\n\nB. Bakker", false)
				e.accept(e.p.jansen)
				e.next(e.p.jansen, "advies na het consult")
			},
			want: func(p people) map[string][]string {
				return map[string][]string{
					p.employee: join(toForm, []string{"consult_planned"}),
					p.original: {"intake", "form_physician"},
					p.bakker:   {"so_request"},
					p.jansen:   {"so_request", "forward", "advice_request"},
				}
			},
		},
		{
			name: "no_substantive_advice", state: procedure.StateCompleted,
			run: func(e *env) {
				q := e.advising()
				e.reply(e.p.bakker, q, "Na het consult: er volgt geen inhoudelijk advies.\n\nB. Bakker", true)
				e.next(e.p.employee, "afgerond")
				e.next(e.p.original, "afgerond")
				if c := e.theCase(); !c.NoAdvice {
					e.t.Error("the case does not record that no substantive advice follows")
				}
			},
			want: func(p people) map[string][]string {
				return map[string][]string{
					p.employee: join(toForm, []string{"consult_planned", "completion_employee"}),
					p.original: {"intake", "form_physician", "completion_physician"},
					p.bakker:   {"so_request", "forward", "advice_request"},
				}
			},
		},
		{
			// The employer asks on the employee's behalf: the employer
			// knows of the procedure, so gets the acknowledgement and the
			// completion notice — but not the advice without consent.
			name: "employer_requests", state: procedure.StateCompleted,
			run: func(e *env) {
				e.send(e.p.employer, "Aanvraag second opinion voor een medewerker",
					"Goedemorgen,\n\nNamens onze medewerker vragen wij een second opinion aan.\n\n"+
						"Naam werknemer: Şahin Yılmaz\nE-mail werknemer: "+e.p.employee+"\nBedrijfsarts: A. de Vries, "+e.p.original+"\n"+
						"Onderwerp: verzuimbegeleiding\nVraag: Kan hij zijn eigen werk hervatten? "+e.qOwn+"\n\nMet vriendelijke groet,\nHR Acme")
				e.next(e.p.employer, "ontvangen")
				e.next(e.p.employee, "ontvangen")
				in := e.next(e.p.original, "vraagstelling en stukken")
				e.reply(e.p.original, in, e.confirmText(), true, e.docs...)
				e.reply(e.p.employee, e.next(e.p.employee, "kies uw"), "1", false)
				e.sign()
				e.accept(e.p.bakker)
				fb := e.advise(e.next(e.p.bakker, "advies na het consult"))
				e.reply(e.p.employee, fb, "bedrijfsarts: nee, werkgever: nee", false)
				e.next(e.p.employee, "afgerond")
				e.next(e.p.employer, "afgerond")
			},
			want: func(p people) map[string][]string {
				return map[string][]string{
					p.employee:   join(toForm, []string{"consult_planned", "medical_notice", "feedback_question", "completion_employee"}),
					p.employer:   {"acknowledgement_employer", "completion_employer"},
					p.original:   {"intake", "form_physician", "completion_physician"},
					p.bakker:     {"so_request", "forward", "advice_request"},
					p.backoffice: {"alert"},
				}
			},
		},
		consentBranch("bedrijfsarts: nee, werkgever: nee", false, false),
		consentBranch("bedrijfsarts: ja, werkgever: nee", true, false),
		consentBranch("bedrijfsarts: nee, werkgever: ja", false, true),
		consentBranch("bedrijfsarts: ja, werkgever: ja", true, true),
		{
			name: "withdraw_incomplete_by_mail", state: procedure.StateWithdrawn,
			run: func(e *env) {
				e.send(e.p.employee, "Second opinion", "Hallo, ik wil een second opinion.\n\nŞahin")
				m := e.next(e.p.employee, "missen")
				e.reply(e.p.employee, m, "Ik trek mijn aanvraag in.", false)
				e.next(e.p.employee, "gestopt")
			},
			want: func(p people) map[string][]string {
				return map[string][]string{p.employee: {"request_missing", "withdrawn"}}
			},
		},
		{
			name: "withdraw_intake_by_backoffice", state: procedure.StateWithdrawn,
			run: func(e *env) {
				e.request()
				e.withdrawByBackoffice()
				e.next(e.p.employee, "gestopt")
				e.next(e.p.original, "gestopt")
			},
			want: func(p people) map[string][]string {
				return map[string][]string{p.employee: join(ack, []string{"withdrawn"}), p.original: {"intake", "withdrawn"}}
			},
		},
		{
			name: "withdraw_choosing_by_mail", state: procedure.StateWithdrawn,
			run: func(e *env) {
				prop := e.choosing()
				e.reply(e.p.employee, prop, "Intrekken. Ik ben toch weer aan het werk.", false)
				e.next(e.p.employee, "gestopt")
				e.next(e.p.original, "gestopt")
			},
			want: func(p people) map[string][]string {
				return map[string][]string{p.employee: join(toProposal, []string{"withdrawn"}), p.original: {"intake", "withdrawn"}}
			},
		},
		{
			name: "withdraw_employer_approval_by_backoffice", state: procedure.StateWithdrawn,
			run: func(e *env) {
				prop := e.choosing()
				e.reply(e.p.employee, prop, "Ik kies liever dokter E. Smit.", false)
				e.next(e.p.employer, "kosten")
				e.withdrawByBackoffice()
				e.next(e.p.employee, "gestopt")
				e.next(e.p.employer, "gestopt")
			},
			want: func(p people) map[string][]string {
				return map[string][]string{
					p.employee: join(toProposal, []string{"withdrawn"}), p.original: {"intake", "withdrawn"},
					p.employer: {"employer_approval", "withdrawn"},
				}
			},
		},
		{
			name: "withdraw_authorising_by_mail", state: procedure.StateWithdrawn,
			run: func(e *env) {
				prop := e.choosing()
				e.reply(e.p.employee, prop, "1", false)
				f := e.next(e.p.employee, "machtigingsformulier")
				e.reply(e.p.employee, f, "Ik trek mijn aanvraag in.", false)
				e.next(e.p.employee, "gestopt")
				e.next(e.p.original, "gestopt")
			},
			want: func(p people) map[string][]string {
				return map[string][]string{p.employee: join(toForm, []string{"withdrawn"}), p.original: {"intake", "form_physician", "withdrawn"}}
			},
		},
		{
			name: "withdraw_accepting_by_backoffice", state: procedure.StateWithdrawn,
			run: func(e *env) {
				e.accepting("1")
				e.next(e.p.bakker, "second opinion doen")
				e.withdrawByBackoffice()
				e.next(e.p.employee, "gestopt")
				e.next(e.p.bakker, "gestopt")
			},
			want: func(p people) map[string][]string {
				return map[string][]string{
					p.employee: join(toForm, []string{"withdrawn"}), p.original: {"intake", "form_physician", "withdrawn"},
					p.bakker: {"so_request", "withdrawn"},
				}
			},
		},
		{
			name: "withdraw_advising_by_backoffice", state: procedure.StateWithdrawn,
			run: func(e *env) {
				e.advising()
				e.withdrawByBackoffice()
				e.next(e.p.employee, "gestopt")
				e.next(e.p.bakker, "gestopt")
			},
			want: func(p people) map[string][]string {
				return map[string][]string{
					p.employee: join(toForm, []string{"consult_planned", "withdrawn"}), p.original: {"intake", "form_physician", "withdrawn"},
					p.bakker: {"so_request", "forward", "advice_request", "withdrawn"},
				}
			},
		},
		{
			name: "withdraw_feedback_by_mail", state: procedure.StateWithdrawn,
			run: func(e *env) {
				q := e.advise(e.advising())
				e.reply(e.p.employee, q, "Ik trek mijn aanvraag in.", false)
				e.next(e.p.employee, "gestopt")
				e.next(e.p.original, "gestopt")
			},
			want: func(p people) map[string][]string {
				return map[string][]string{
					p.employee:   join(toForm, []string{"consult_planned", "medical_notice", "feedback_question", "withdrawn"}),
					p.original:   {"intake", "form_physician", "withdrawn"},
					p.bakker:     {"so_request", "forward", "advice_request"},
					p.backoffice: {"alert"},
				}
			},
		},
		{
			name: "expired_so_key", state: procedure.StateAdvising,
			mod: func(p people, o *rig.Options) { o.ExpiredKeys = []string{p.bakker} },
			run: runExpiredKey,
			want: func(p people) map[string][]string {
				return map[string][]string{
					p.employee:   join(toForm, []string{"consult_planned"}),
					p.original:   {"intake", "form_physician"},
					p.bakker:     {"so_request", "key_request", "advice_request", "forward"},
					p.backoffice: {"alert"},
				}
			},
		},
		{
			// DESIGN: "The employee may withdraw at any time" — also when
			// the daemon is not waiting for them, by answering any of its
			// mails.
			name: "withdraw_intake_by_mail", state: procedure.StateWithdrawn,
			run: func(e *env) {
				e.send(e.p.employee, "Aanvraag second opinion", e.requestText("Acme Logistiek BV", "verzuimbegeleiding"))
				ack := e.next(e.p.employee, "ontvangen")
				e.next(e.p.original, "vraagstelling en stukken")
				e.reply(e.p.employee, ack, "Ik trek mijn aanvraag in.", false)
				e.next(e.p.employee, "gestopt")
			},
			want: func(p people) map[string][]string {
				return map[string][]string{p.employee: join(ack, []string{"withdrawn"}), p.original: {"intake", "withdrawn"}}
			},
		},
		{
			// The original physician's key has expired: the intake (the
			// employee's question) is withheld, a content-free notice and
			// an alert go instead; once a valid key is imported the case
			// resumes by itself (issue 4, policy).
			name: "expired_original_key", state: procedure.StateIntake,
			mod: func(p people, o *rig.Options) { o.ExpiredKeys = []string{p.original} },
			run: func(e *env) {
				e.send(e.p.employee, "Aanvraag second opinion", e.requestText("Acme Logistiek BV", "verzuimbegeleiding"))
				e.next(e.p.employee, "ontvangen")
				e.next(e.p.original, "beveiligd")
				e.next(e.p.backoffice, "Aandacht")
				pub, err := e.person(e.p.original).Key.ArmoredPublic()
				if err != nil {
					e.t.Fatal(err)
				}
				if _, err := e.r.Keys.Import(pub, e.r.Clock.Now()); err != nil {
					e.t.Fatalf("keys import: %v", err)
				}
				if _, err := e.r.Engine.CheckKeys(e.ctx); err != nil {
					e.t.Fatal(err)
				}
				in := e.next(e.p.original, "vraagstelling en stukken")
				if in.Inner == nil {
					e.t.Error("the resumed intake is not encrypted")
				}
			},
			want: func(p people) map[string][]string {
				return map[string][]string{p.employee: ack, p.original: {"medical_notice", "intake"}, p.backoffice: {"alert"}}
			},
		},
		{
			name: "missing_so_key", state: procedure.StateAdvising,
			mod: func(p people, o *rig.Options) { o.KeylessPhysicians = []string{p.bakker} },
			run: func(e *env) {
				e.accepting("1")
				req := e.next(e.p.bakker, "second opinion doen")
				e.reply(e.p.bakker, req, acceptText, false)
				e.next(e.p.bakker, "PGP-sleutel")
				e.next(e.p.backoffice, "Aandacht")
				e.next(e.p.bakker, "advies na het consult")
				if c := e.theCase(); c.Forwarded || !strings.EqualFold(c.WaitingKey, e.p.bakker) {
					e.t.Errorf("forwarded %v, waiting for the key of %q; want not forwarded, waiting for %s", c.Forwarded, c.WaitingKey, e.p.bakker)
				}
			},
			want: func(p people) map[string][]string {
				return map[string][]string{
					p.employee:   join(toForm, []string{"consult_planned"}),
					p.original:   {"intake", "form_physician"},
					p.bakker:     {"so_request", "key_request", "advice_request"},
					p.backoffice: {"alert"},
				}
			},
		},
	}
}

// TestBranches plays every branch of the procedure by mail. The cases run
// at once (they wait on mail, not on the CPU), on one shared real Postfix
// and Dovecot. E2E_BACKEND=mailworld runs them on the in-process mail
// world instead (as does a machine without the real servers, outside CI).
func TestBranches(t *testing.T) {
	all := branches()
	be := chooseBackend(t)
	var srv *servers
	if be == realServers {
		var tags []string
		for i := range all {
			tags = append(tags, tagOf(i))
		}
		srv = startServers(t, tags)
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, b := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(b.name, func(t *testing.T) { runBranch(t, b, be, srv, tagOf(i)) })
		}()
	}
	wg.Wait()
}

// chooseBackend: the real servers where they can run (root, Postfix and
// Dovecot installed; always under CI), else the in-process world.
func chooseBackend(t *testing.T) backend {
	if os.Getenv("E2E_BACKEND") == string(inProcess) {
		return inProcess
	}
	_, errP := exec.LookPath("postfix")
	_, errD := exec.LookPath("dovecot")
	if os.Getenv("CI") == "" && (os.Geteuid() != 0 || errP != nil || errD != nil) {
		t.Log("real Postfix and Dovecot unavailable here (root and both installed are needed): using the in-process mail world")
		return inProcess
	}
	return realServers
}

func tagOf(i int) string { return "b" + string(rune('a'+i/26)) + string(rune('a'+i%26)) }

func runBranch(t *testing.T, b branch, be backend, srv *servers, tag string) {
	if b.bug != "" && os.Getenv("E2E_KNOWN_BUGS") == "" {
		t.Skip("BUG: " + b.bug)
	}
	var mod func(*rig.Options)
	if b.mod != nil {
		p := peopleFor(tag)
		mod = func(o *rig.Options) { b.mod(p, o) }
	}
	e := newEnv(t, be, srv, tag, mod)
	b.run(e)
	if t.Failed() {
		return
	}
	p := e.p
	so := p.bakker
	if b.so != nil {
		so = b.so(p)
	}
	e.checkMail(map[string][]string{
		"intake": {p.original}, "form_physician": {p.original}, "completion_physician_advice": {p.original},
		"forward": {so},
	})
	want := b.want(p)
	for a := range want {
		sort.Strings(want[a])
	}
	e.expectSorted(want)
	e.expectState(b.state)
	if t.Failed() {
		t.Logf("mail:\n%s", e.summary())
	}
}

// expectSorted is expectMail with both sides in template order.
func (e *env) expectSorted(want map[string][]string) {
	e.t.Helper()
	rec := e.received()
	for _, a := range e.p.addresses()[1:] {
		var got []string
		for _, m := range rec[a] {
			got = append(got, m.template)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(want[a], ",") {
			e.t.Errorf("%s received\n\t%v\nwant\n\t%v", a, got, want[a])
		}
	}
}
