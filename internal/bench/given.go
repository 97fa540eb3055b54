package bench

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"secondopinion/internal/config"
	"secondopinion/internal/mailin"
	"secondopinion/internal/mailout"
)

// IMAPServer is a given IMAP server that holds the service's mailbox in
// place of the mail world's: a private Dovecot in the bench's tests, or
// a test account on the operator's own server (`bench --imap`). The
// daemon reads it; the mail world still takes every mail over SMTP, and
// hands the service's mail (the inbox and the sent-copy folder) to the
// server, as an MTA hands mail to the IMAP server's delivery agent. The
// participants still read their mail from the postbox.
type IMAPServer struct {
	Name string // what the results call it, e.g. "dovecot 2.3.19"; default Addr
	Addr string // host:port
	// Security is how the daemon and the bench connect: tls, starttls, or
	// plain (the default; loopback only).
	Security mailin.Security
	// CAFile is a PEM file of certificates that the daemon (imap.ca_file)
	// and the bench trust besides the system's roots.
	CAFile string
	// User is the service's mailbox, the account the daemon logs in to
	// (default ServiceAddr). Its inbox must be empty at the start: the
	// daemon would process whatever it holds.
	User     string
	Password string
	// Deliver stores the message read from r in User's folder ("" is the
	// inbox) as the server's delivery agent; it is called from the SMTP
	// session that accepts the mail, before the sender gets its 250. Nil
	// means the bench appends the message over IMAP (APPEND), which any
	// server takes from any client.
	Deliver func(user, folder string, r io.Reader) error
	// Probe makes the bench measure the server's own notification delay
	// during the run (Result.IMAPNotify), in a folder of User's own
	// (ProbeFolder): it watches the folder in IDLE and delivers a small
	// message into it every so often.
	Probe bool
}

// ProcessedFolder is where the daemon moves the mail it has handled on a
// given server (imap.processed_mailbox).
const ProcessedFolder = "Verwerkt"

// ProbeFolder is the folder of the service's mailbox the notification
// probe uses; the daemon never looks into it.
const ProbeFolder = "bench-probe"

func (s *IMAPServer) user() string {
	if s.User == "" {
		return ServiceAddr
	}
	return s.User
}

func (s *IMAPServer) name() string {
	if s.Name == "" {
		return s.Addr
	}
	return s.Name
}

func (s *IMAPServer) security() mailin.Security {
	if s.Security == "" {
		return mailin.SecurityPlain
	}
	return s.Security
}

// login connects to the server and logs in to the service's mailbox.
func (s *IMAPServer) login(opts *imapclient.Options) (*imapclient.Client, error) {
	if s.CAFile != "" {
		tc, err := config.TLSWithCA(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("imap %s: %w", s.Addr, err)
		}
		o := imapclient.Options{}
		if opts != nil {
			o = *opts
		}
		o.TLSConfig = tc
		opts = &o
	}
	c, err := mailin.Dial(context.Background(), s.Addr, s.security(), opts)
	if err != nil {
		return nil, fmt.Errorf("imap %s: %w", s.Addr, err)
	}
	if err := c.Login(s.user(), s.Password).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("imap %s: login %s: %w", s.Addr, s.user(), err)
	}
	return c, nil
}

// prepare checks that the service's inbox is empty and creates the
// folders the bench delivers into (the sent copies', the probe's).
func (s *IMAPServer) prepare(folders ...string) error {
	c, err := s.login(nil)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		return fmt.Errorf("imap %s: status INBOX: %w", s.Addr, err)
	}
	if n := *st.NumMessages; n > 0 {
		return fmt.Errorf("imap %s: the inbox of %s holds %d messages: the bench needs an empty mailbox of a test account (the daemon would process them)",
			s.Addr, s.user(), n)
	}
	for _, f := range folders {
		if _, err := mailin.EnsureMailbox(c, f); err != nil {
			return fmt.Errorf("imap %s: %w", s.Addr, err)
		}
	}
	return c.Logout().Wait()
}

// deliver stores a message in the service's folder ("" the inbox), by the
// server's delivery agent if there is one, else by APPEND.
func (s *IMAPServer) deliver(a *appender, folder string, r io.Reader) error {
	if s.Deliver != nil {
		return s.Deliver(s.user(), folder, r)
	}
	return a.append(folder, r)
}

// appender appends messages to the service's mailbox over at most
// appendConns kept IMAP connections, one message per connection at a time;
// more deliveries at once wait for a free one. Servers limit the
// connections per user (Dovecot: 10 by default), and the daemon and the
// probe need theirs.
type appender struct {
	srv *IMAPServer
	// slots holds a free slot's kept connection, or nil for none yet.
	slots  chan *imapclient.Client
	closed sync.Once
}

const appendConns = 2

func newAppender(srv *IMAPServer) *appender {
	a := &appender{srv: srv, slots: make(chan *imapclient.Client, appendConns)}
	for range appendConns {
		a.slots <- nil
	}
	return a
}

func (a *appender) append(folder string, r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if folder == "" {
		folder = "INBOX"
	}
	c := <-a.slots
	defer func() { a.slots <- c }()
	// A kept connection the server has closed fails; the message then
	// goes over a new one.
	for try := 0; ; try++ {
		if c == nil {
			if c, err = a.srv.login(nil); err != nil {
				return err
			}
		}
		if err = appendOne(c, folder, raw); err == nil {
			return nil
		}
		c.Close()
		c = nil
		if try == 1 {
			return fmt.Errorf("imap %s: append to %s: %w", a.srv.Addr, folder, err)
		}
	}
}

func appendOne(c *imapclient.Client, folder string, raw []byte) error {
	cmd := c.Append(folder, int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		cmd.Close()
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err := cmd.Wait()
	return err
}

// close logs out of the kept connections, once no delivery is under way;
// the appender must not be used afterwards.
func (a *appender) close() {
	a.closed.Do(func() {
		for range appendConns {
			if c := <-a.slots; c != nil {
				c.Logout().Wait()
				c.Close()
			}
		}
	})
}

// SMTPServer is a given SMTP server (a relay: Postfix in the bench's
// tests, a staging relay of the operator's) that the daemon submits its
// mail to in place of the mail world's. It must pass every mail on to the
// mail world's SMTP server at Listen (Postfix: relayhost), where the
// participants read theirs and the service's own mail (the sent copies)
// goes to the service's mailbox. The participants still submit to the
// mail world directly, as mail from outside arrives at an MX. A reaction
// then ends when the daemon's answer has passed through the relay.
type SMTPServer struct {
	Addr string // host:port
	// Security is tls, starttls, or plain (the default; loopback only).
	Security string
	// CAFile is as IMAPServer.CAFile, for the daemon's smtp.ca_file.
	CAFile string
	// User and Password log in (AUTH); none for a relay that trusts the
	// host.
	User, Password string
	// Listen is the mail world's SMTP listen address, the relay's next hop
	// (host:port).
	Listen string
}

func (s *SMTPServer) security() string {
	if s.Security == "" {
		return mailout.SecurityPlain
	}
	return s.Security
}
