package mailout

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"text/template"
)

// DefaultLang is the language used when a template is missing in the
// recipient's language.
const DefaultLang = "nl"

// ErrNoTemplate is returned (wrapped) when neither the recipient's
// language nor the default has the named template.
var ErrNoTemplate = errors.New("mailout: no such template")

// Render executes the text/template mail/<lang>/<name>.tmpl from fsys
// (falling back to mail/nl/<name>.tmpl) with data, and splits the result
// into subject and body. A template's first line is "Subject: …", the
// second is empty, the rest is the plain-text body. A field missing from
// data is an error, never an empty string in a mail.
func Render(fsys fs.FS, lang, name string, data any) (subject, body string, err error) {
	return RenderWith(fsys, lang, name, data, nil)
}

// RenderWith is Render with template functions: funcs, when set, returns
// them for the language of the template actually used (the fallback to
// DefaultLang included), so dates and labels match the text around them.
func RenderWith(fsys fs.FS, lang, name string, data any, funcs func(lang string) template.FuncMap) (subject, body string, err error) {
	if !validTemplateWord(name) {
		return "", "", fmt.Errorf("%w: name %q", ErrNoTemplate, name)
	}
	if !validTemplateWord(lang) {
		lang = DefaultLang
	}
	path := "mail/" + lang + "/" + name + ".tmpl"
	src, err := fs.ReadFile(fsys, path)
	if errors.Is(err, fs.ErrNotExist) && lang != DefaultLang {
		lang = DefaultLang
		path = "mail/" + DefaultLang + "/" + name + ".tmpl"
		src, err = fs.ReadFile(fsys, path)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("%w: %s (language %s)", ErrNoTemplate, name, lang)
	}
	if err != nil {
		return "", "", fmt.Errorf("read template %s: %w", path, err)
	}
	t := template.New(path).Option("missingkey=error")
	if funcs != nil {
		t = t.Funcs(funcs(lang))
	}
	t, err = t.Parse(string(src))
	if err != nil {
		return "", "", fmt.Errorf("parse template %s: %w", path, err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, data); err != nil {
		return "", "", fmt.Errorf("execute template %s: %w", path, err)
	}
	text := strings.ReplaceAll(out.String(), "\r\n", "\n")
	first, rest, _ := strings.Cut(text, "\n")
	subject, ok := strings.CutPrefix(first, "Subject:")
	if !ok {
		return "", "", fmt.Errorf("template %s: first line must be \"Subject: …\"", path)
	}
	subject = strings.TrimSpace(subject)
	if subject == "" {
		return "", "", fmt.Errorf("template %s: empty subject", path)
	}
	if rest != "" {
		var blank string
		blank, rest, _ = strings.Cut(rest, "\n")
		if strings.TrimSpace(blank) != "" {
			return "", "", fmt.Errorf("template %s: the line after the subject must be empty", path)
		}
	}
	body = strings.TrimRight(rest, " \t\n") + "\n"
	return subject, body, nil
}

// validTemplateWord keeps names and languages inside the template tree.
func validTemplateWord(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
