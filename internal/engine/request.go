package engine

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"secondopinion/internal/message"
	"secondopinion/internal/procedure"
	"secondopinion/internal/registry"
	"secondopinion/internal/store"
)

// A request arrives as free mail, often from a phone. The acknowledgement
// of an incomplete one sends a fill-in template with these labels; both
// the first mail and the filled-in reply are read with them.
var fieldRE = regexp.MustCompile(`(?im)^[ \t>*-]*(naam werknemer|naam|name|e-?mail werknemer|e-?mail|werkgever|employer|bedrijfsarts|eigen bedrijfsarts|occupational physician|physician|onderwerp|subject|vraag|vraagstelling|question|geboortedatum|date of birth|taal|language)[ \t]*:[ \t]*(.*)$`)

var requestWords = regexp.MustCompile(`(?i)second[ -]?opinion|tweede mening|herbeoordeling`)

var emailRE = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`)

// request handles mail without any case reference: a request starts
// intake; anything else is quarantined.
func (e *Engine) request(ctx context.Context, in store.Inbound, m *message.Message) error {
	from := strings.ToLower(m.From.Address)
	if from == "" {
		return quarantined("no sender address and no case reference")
	}
	reg := e.Registry()
	if _, ok := reg.PhysicianByEmail(from); ok {
		return quarantined("mail from physician %s without a case reference", from)
	}
	if w := withdrawalWords.FindString(m.Subject + "\n" + m.Reply); w != "" {
		return quarantined("no case reference, and it reads as a withdrawal (%q), not a request: it withdraws no case, since a sender is easy to forge; "+
			"ask the sender to reply to one of our mails about their case, or withdraw it for them (secondopinion case withdraw REF)", w)
	}
	if !requestWords.MatchString(m.Subject+"\n"+m.Reply) && !fieldRE.MatchString(m.Reply) {
		return quarantined("no case reference, and it does not look like a request for a second opinion")
	}
	if e.o.StrictAuth {
		if ok, why := message.AuthResult(&m.Header, e.o.AuthservID); !ok {
			return quarantined("request sender not authenticated: %s", why)
		}
	}
	req, _ := e.parseRequest(m, "")
	if req.Employee.Email != "" {
		earlier, err := e.o.Store.EarlierRequests(ctx, req.Employee.Email)
		if err != nil {
			return err
		}
		req.Earlier = earlier
	}
	_, err := e.Handle(ctx, 0, req, Source{Inbound: in.ID, Via: "mail/request"})
	if errors.Is(err, procedure.ErrInvalid) || errors.Is(err, procedure.ErrUnexpected) {
		return quarantined("request: %v", err)
	}
	return err
}

// parseRequest reads the fill-in fields of a request (or of the reply that
// completes one). role is the known role of the sender ("" for a new
// request: then the employer's notice address makes it the employer).
func (e *Engine) parseRequest(m *message.Message, role procedure.Role) (procedure.Request, procedure.Role) {
	reg := e.Registry()
	from := strings.ToLower(m.From.Address)
	fields := map[string]string{}
	for _, mm := range fieldRE.FindAllStringSubmatch(m.Reply, -1) {
		k := strings.ToLower(mm[1])
		if _, dup := fields[k]; !dup {
			fields[k] = strings.TrimSpace(mm[2])
		}
	}
	get := func(keys ...string) string {
		for _, k := range keys {
			if v := fields[k]; v != "" {
				return v
			}
		}
		return ""
	}
	req := procedure.Request{From: procedure.RoleEmployee}
	emp, hasEmployer := reg.EmployerByDomain(from)
	if role == "" && hasEmployer && strings.EqualFold(emp.NoticeEmail, from) {
		role = procedure.RoleEmployer
	}
	if role == procedure.RoleEmployer {
		req.From = procedure.RoleEmployer
		req.Employee.Name = get("naam werknemer", "naam", "name")
		if a := emailRE.FindString(get("e-mail werknemer", "email werknemer", "e-mail", "email")); a != "" {
			req.Employee.Email = strings.ToLower(a)
		}
	} else {
		req.Employee.Email = from
		req.Employee.Name = get("naam", "name", "naam werknemer")
		if req.Employee.Name == "" {
			req.Employee.Name = m.From.Name
		}
	}
	req.Employee.DateOfBirth = get("geboortedatum", "date of birth")
	switch strings.ToLower(get("taal", "language")) {
	case "en", "english", "engels":
		req.Employee.Lang = "en"
	case "nl", "nederlands", "dutch":
		req.Employee.Lang = "nl"
	}
	if w := get("werkgever", "employer"); w != "" {
		for _, x := range reg.Employers {
			if strings.EqualFold(strings.TrimSpace(x.Name), w) || strings.EqualFold(x.ID, w) {
				emp, hasEmployer = x, true
			}
		}
	}
	if hasEmployer {
		pe := employer(emp)
		req.Employer = &pe
	}
	if b := get("bedrijfsarts", "eigen bedrijfsarts", "occupational physician", "physician"); b != "" {
		if a := emailRE.FindString(b); a != "" {
			if p, ok := reg.PhysicianByEmail(a); ok {
				pp := physician(p)
				req.OriginalPhysician = &pp
			}
		} else if p, ok := e.physicianByName(b, registry.RoleOriginal); ok {
			req.OriginalPhysician = &p
		}
	}
	req.Subject = subjectOf(get("onderwerp", "subject") + "\n" + m.Subject + "\n" + m.Reply)
	req.Question = get("vraag", "vraagstelling", "question")
	return req, role
}

// subjectOf recognises what the disputed advice was about. The out-of-scope
// subjects are checked first: a request about a keuring must not be taken
// for one about verzuim because it also mentions absence.
func subjectOf(text string) procedure.Subject {
	t := strings.ToLower(text)
	switch {
	case strings.Contains(t, "aanstellingskeuring") || strings.Contains(t, "pre-employment") || strings.Contains(t, "herkeuring"):
		return procedure.SubjectKeuring
	case strings.Contains(t, "deskundigenoordeel") || strings.Contains(t, "uwv") && strings.Contains(t, "oordeel") || strings.Contains(t, "expert opinion"):
		return procedure.SubjectUWV
	case strings.Contains(t, "beroepsziekte") || strings.Contains(t, "occupational disease"):
		return procedure.SubjectBeroepsziekte
	case strings.Contains(t, "pago") || strings.Contains(t, "pmo") || strings.Contains(t, "arbeidsgezondheidskundig"):
		return procedure.SubjectPAGO
	case strings.Contains(t, "verzuim") || strings.Contains(t, "sickness absence") || strings.Contains(t, "re-integratie") || strings.Contains(t, "ziek"):
		return procedure.SubjectVerzuim
	}
	return ""
}
