// Package crashtest kills the daemon (`secondopinion serve`, a separate
// process) with SIGKILL at random moments under bench-like load, restarts
// it, and checks what DESIGN.md promises of a crash ("a crash at any point
// loses nothing and sends nothing twice"): every case ends in the right
// state, every inbound message had exactly one effect, no outbound message
// was lost, the audit chain verifies — and it counts the mails sent twice
// (same Message-ID, received again at the SMTP server), the known window
// between the server's 250 and the outbox marking the mail sent.
//
// The short version runs with the package's tests; `make crash` runs the
// long one (CRASH_KILLS, CRASH_CASES, CRASH_ATTACHMENT).
package crashtest
