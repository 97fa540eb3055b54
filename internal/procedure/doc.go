// Package procedure holds every rule of the second-opinion procedure for
// occupational physicians (second opinion bedrijfsarts) as a pure state
// machine:
//
//	Decide(case, input, now) → (case', effects, error)
//
// It imports no I/O package. Inputs are data (a parsed answer from a role, a
// document delivery, a deadline reached, a backoffice command); effects are
// data (send this mail template to this role, encrypted or not; render the
// authorisation form; set or clear a deadline; record an audit event; alert
// the backoffice; purge). The engine turns effects into outbox rows and
// commits them with the new case in one store transaction.
//
// The rules come from the two providers' descriptions of the procedure and
// from the law they cite:
//
//   - scope: advice on verzuimbegeleiding (sickness-absence guidance), an
//     arbeidsgezondheidskundig onderzoek (PAGO/PMO) or a suspected
//     beroepsziekte (occupational disease); not an aanstellingskeuring
//     (pre-employment examination; herkeuring under the Wet op de medische
//     keuringen) nor a UWV deskundigenoordeel;
//   - the second-opinion physician works for another arbodienst than the
//     original physician (Arbobesluit art. 2.14d, independence);
//   - nothing medical is shared without the employee's machtiging
//     (authorisation), and then only the documents listed on the form;
//   - the advice goes back to the own physician and the employer only as the
//     employee consents in writing; no answer means no sharing;
//   - who pays follows the provider's table (pool, contract, approval).
package procedure
