// Package authform renders the machtigingsformulier (authorisation form)
// of a second-opinion case as PDF: step 4 of the procedure in DESIGN.md.
//
// The form lists who is involved, the subject and the vraagstelling
// (question), exactly which documents are shared (title, date and the
// start of each SHA-256), who pays and why (the cost table of seed 001),
// the authorisation itself with how to withdraw it and how long records are
// kept, signature blocks for the employee and the original physician, and
// how to return it. It states that relevant workplace information from the
// employer may be shared without consent and, by validation, never names a
// second-opinion physician of the original physician's arbodienst
// (Arbobesluit art. 2.14d).
//
// The wording comes from templates/form/<lang>.yaml (Dutch by default,
// English available), so an arbodienst can change it and add a logo
// without touching code. The output is byte-identical for identical input:
// the PDF creation date is Form.Date, and nothing random goes in.
package authform
