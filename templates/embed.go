// Package templates embeds the default texts: the mail templates in
// mail/nl and mail/en, and the texts of the authorisation form in form/.
// An operator may point the configuration at a copy of this directory to
// change wording or add a logo without rebuilding.
package templates

import "embed"

// FS holds the embedded default templates.
//
//go:embed mail form
var FS embed.FS
