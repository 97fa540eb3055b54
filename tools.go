//go:build tools

// Package tools pins the modules that the packages under construction will
// import, so that go.mod and go.sum stay complete while they are written.
// It is removed once every module here is imported by real code.
package tools

import (
	_ "codeberg.org/go-pdf/fpdf"
	_ "github.com/ProtonMail/gopenpgp/v2/armor"
	_ "github.com/ProtonMail/gopenpgp/v2/crypto"
	_ "github.com/emersion/go-imap/v2"
	_ "github.com/emersion/go-imap/v2/imapclient"
	_ "github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	_ "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	_ "github.com/emersion/go-msgauth/authres"
	_ "github.com/emersion/go-smtp"
	_ "github.com/rickar/cal/v2/nl"
	_ "github.com/robfig/cron/v3"
	_ "golang.org/x/image/font/gofont/goregular"
	_ "gopkg.in/yaml.v3"
	_ "modernc.org/sqlite"
)
