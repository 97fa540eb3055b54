package message

import (
	"html"
	"strings"
)

// HTMLToText turns an HTML mail body into readable text: block elements
// become line breaks, <blockquote> becomes "> " quoting (so quoted history
// in Gmail and Apple Mail replies is recognised as such), <hr> becomes the
// underscore rule Outlook writes in its plain-text version, list items get
// a dash, and style, script and head contents are dropped. It is written for
// mail, not for the web: no layout, no tables beyond one row per line.
func HTMLToText(s string) string {
	c := &htmlConv{}
	for len(s) > 0 {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			c.text(s)
			break
		}
		c.text(s[:i])
		s = s[i:]
		switch {
		case strings.HasPrefix(s, "<!--"):
			end := strings.Index(s, "-->")
			if end < 0 {
				s = ""
			} else {
				s = s[end+3:]
			}
			continue
		case strings.HasPrefix(s, "<!"), strings.HasPrefix(s, "<?"):
			end := strings.IndexByte(s, '>')
			if end < 0 {
				s = ""
			} else {
				s = s[end+1:]
			}
			continue
		}
		end := tagEnd(s)
		if end == -2 {
			// An unterminated tag: no later one can end either.
			c.text(s)
			break
		}
		if end < 0 {
			// A lone '<' in text.
			c.text(s[:1])
			s = s[1:]
			continue
		}
		tag := s[1:end]
		s = s[end+1:]
		closing := strings.HasPrefix(tag, "/")
		name := strings.ToLower(strings.TrimLeft(tag, "/"))
		if k := strings.IndexAny(name, " \t\r\n/"); k >= 0 {
			name = name[:k]
		}
		if !closing && (name == "style" || name == "script" || name == "head" || name == "title") {
			// Skip to the matching close tag.
			k := indexCloseTag(s, name)
			if k < 0 {
				s = ""
			} else {
				s = s[k:]
			}
			continue
		}
		c.tag(name, closing)
	}
	c.flush(false)
	return strings.TrimSpace(strings.Join(c.lines, "\n")) + "\n"
}

// indexCloseTag finds "</name" in s, ignoring case.
func indexCloseTag(s, name string) int {
	off := 0
	for {
		k := strings.Index(s[off:], "</")
		if k < 0 {
			return -1
		}
		k += off
		if len(s) >= k+2+len(name) && strings.EqualFold(s[k+2:k+2+len(name)], name) {
			return k
		}
		off = k + 2
	}
}

// tagEnd finds the '>' ending the tag at the start of s, skipping quoted
// attribute values; -1 if s does not start a tag, -2 if the tag does not
// end.
func tagEnd(s string) int {
	if len(s) < 2 || !(s[1] == '/' || s[1] >= 'a' && s[1] <= 'z' || s[1] >= 'A' && s[1] <= 'Z') {
		return -1
	}
	var quote byte
	for i := 1; i < len(s); i++ {
		switch {
		case quote != 0:
			if s[i] == quote {
				quote = 0
			}
		case s[i] == '"' || s[i] == '\'':
			quote = s[i]
		case s[i] == '>':
			return i
		}
	}
	return -2
}

type htmlConv struct {
	lines []string
	cur   strings.Builder
	quote int
	pre   int
	space bool // a pending collapsed space
}

func (c *htmlConv) text(s string) {
	if s == "" {
		return
	}
	s = html.UnescapeString(s)
	if c.pre > 0 {
		for i, l := range strings.Split(s, "\n") {
			if i > 0 {
				c.flush(true)
			}
			c.cur.WriteString(l)
		}
		return
	}
	// Collapse white space as HTML does; non-breaking spaces become plain.
	s = strings.ReplaceAll(s, "\u00a0", " ")
	lead := len(s) > 0 && isHTMLSpace(s[0])
	trail := len(s) > 0 && isHTMLSpace(s[len(s)-1])
	words := strings.Fields(s)
	if len(words) == 0 {
		if lead && c.cur.Len() > 0 {
			c.space = true
		}
		return
	}
	if (lead || c.space) && c.cur.Len() > 0 {
		c.cur.WriteByte(' ')
	}
	c.cur.WriteString(strings.Join(words, " "))
	c.space = trail
}

func isHTMLSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' }

// flush ends the current line; keepEmpty also ends an empty one.
func (c *htmlConv) flush(keepEmpty bool) {
	c.space = false
	line := strings.TrimRight(c.cur.String(), " ")
	c.cur.Reset()
	if line == "" && !keepEmpty {
		return
	}
	if c.quote > 0 {
		line = strings.TrimRight(strings.Repeat("> ", c.quote)+line, " ")
	}
	c.lines = append(c.lines, line)
}

// paragraph ends the current line and leaves one empty line.
func (c *htmlConv) paragraph() {
	c.flush(false)
	if n := len(c.lines); n > 0 && strings.Trim(c.lines[n-1], "> ") != "" {
		c.cur.Reset()
		c.flush(true)
	}
}

func (c *htmlConv) tag(name string, closing bool) {
	switch name {
	case "br":
		c.flush(true)
	case "p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol":
		c.paragraph()
	case "div", "tr", "li", "dt", "dd", "center", "section", "article", "header", "footer":
		c.flush(false)
		if name == "li" && !closing {
			c.cur.WriteString("- ")
		}
	case "td", "th":
		if closing {
			c.space = true
		}
	case "hr":
		c.flush(false)
		c.lines = append(c.lines, "________________________________")
	case "blockquote":
		c.flush(false)
		if closing {
			if c.quote > 0 {
				c.quote--
			}
		} else {
			c.quote++
		}
	case "pre":
		c.flush(false)
		if closing {
			if c.pre > 0 {
				c.pre--
			}
		} else {
			c.pre++
		}
	}
}
