// Package crashtest kills the daemon (`secondopinion serve`, a separate
// process) with SIGKILL at random moments under bench-like load, restarts
// it, and checks what DESIGN.md promises of a crash ("a crash at any point
// loses nothing and sends nothing twice"): every case ends in the right
// state, every inbound message had exactly one effect, no outbound message
// was lost or received twice at the SMTP server (counted by Message-ID; a
// mail cut off between the server's 250 and the outbox's record is settled
// by its copy in the sent-copy folder), the audit chain verifies.
//
// It runs twice: on the embedded mail servers, and with the service's
// mailbox on a private Dovecot (TestKill9UnderLoadDovecot). The short
// versions run with the package's tests; `make crash` runs the long ones
// (CRASH_KILLS, CRASH_CASES, CRASH_ATTACHMENT).
package crashtest
