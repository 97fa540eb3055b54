package engine_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"secondopinion/internal/procedure"
	"secondopinion/internal/rig"
	"secondopinion/internal/store"
)

// An employee signs the form by replying AKKOORD or by sending the signed
// form back as a scan (a PDF or a photo). Only a file the employee
// attached counts as that scan: not the logo of an HTML mail signature,
// not a document of another kind.
func TestEmployeeSignsByScan(t *testing.T) {
	t.Parallel()
	png := base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n logo"))
	pdf := base64.StdEncoding.EncodeToString([]byte("%PDF-1.4 scan of the signed form"))
	tests := []struct {
		name   string
		body   func(boundary string) (contentType, body string)
		signed bool
	}{
		{
			name: "a question in an HTML mail with a logo in its signature",
			body: func(b string) (string, string) {
				return `multipart/related; boundary="` + b + `"`,
					"--" + b + "\nContent-Type: text/html; charset=utf-8\n\n<p>Wat betekent punt 3 van het formulier?</p><img src=\"cid:logo@x\">\n" +
						"--" + b + "\nContent-Type: image/png; name=logo.png\nContent-Disposition: inline; filename=logo.png\nContent-ID: <logo@x>\nContent-Transfer-Encoding: base64\n\n" + png + "\n" +
						"--" + b + "--\n"
			},
		},
		{
			name: "a question with a Word document attached",
			body: func(b string) (string, string) {
				return `multipart/mixed; boundary="` + b + `"`,
					"--" + b + "\nContent-Type: text/plain; charset=utf-8\n\nWat betekent punt 3?\n" +
						"--" + b + "\nContent-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document; name=vraag.docx\nContent-Disposition: attachment; filename=vraag.docx\nContent-Transfer-Encoding: base64\n\n" + pdf + "\n" +
						"--" + b + "--\n"
			},
		},
		{
			name: "the signed form as a PDF",
			body: func(b string) (string, string) {
				return `multipart/mixed; boundary="` + b + `"`,
					"--" + b + "\nContent-Type: text/plain; charset=utf-8\n\nZie bijlage.\n" +
						"--" + b + "\nContent-Type: application/pdf; name=formulier.pdf\nContent-Disposition: attachment; filename=formulier.pdf\nContent-Transfer-Encoding: base64\n\n" + pdf + "\n" +
						"--" + b + "--\n"
			},
			signed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			c := e.openChoosing()
			q := e.question(rig.AddrEmployee, "kies")
			if in := e.deliver(e.plain("Şahin Yılmaz", rig.AddrEmployee, q.replyTo(t), "Re: "+q.Msg.Subject, "1", q.Msg.MessageID)); in.Status != store.InboundProcessed {
				t.Fatalf("choice: %s %q", in.Status, in.Reason)
			}
			e.caseOf(c.ID, procedure.StateAuthorising)
			form := e.question(rig.AddrEmployee, "machtigingsformulier")
			h := e.header("Şahin Yılmaz", rig.AddrEmployee, form.replyTo(t), "Re: "+form.Msg.Subject, form.Msg.MessageID)
			var hl []string
			for f := h.Fields(); f.Next(); {
				hl = append(hl, f.Key()+": "+f.Value())
			}
			ct, body := tt.body("scan-test-boundary")
			hl = append(hl, "MIME-Version: 1.0", "Content-Type: "+ct)
			if in := e.deliver(raw(hl, body)); in.Status != store.InboundProcessed {
				t.Fatalf("reply to the form: %s %q", in.Status, in.Reason)
			}
			got := e.caseOf(c.ID, procedure.StateAuthorising)
			if signed := got.EmployeeConsent != nil; signed != tt.signed {
				t.Errorf("employee signed: %v, want %v", signed, tt.signed)
			}
			if !tt.signed {
				// The employee is asked again (the unclear-answer mail).
				if again := e.question(rig.AddrEmployee, "begrepen uw antwoord niet"); !strings.Contains(again.Msg.Subject, c.Ref) {
					t.Errorf("follow-up %q is not about the case", again.Msg.Subject)
				}
			}
		})
	}
}
