package mailin

import (
	"context"
	"fmt"

	"github.com/emersion/go-imap/v2"
)

// SentCopies looks for the copies of the service's own outgoing mail that
// the mail server files into a folder of the same account: the outbox
// sends every mail also to Address, in the same SMTP transaction, so a copy
// is filed if and only if the server took the mail. It satisfies
// mailout.SentCopies. The folder is created by the Ingester's session
// (Options.SentMailbox) so that the server finds it when it files.
type SentCopies struct {
	in      *Ingester
	address string
	mailbox string
}

// SentCopies returns the lookup for copies sent to address and filed into
// the Ingester's SentMailbox.
func (in *Ingester) SentCopies(address string) *SentCopies {
	return &SentCopies{in: in, address: address, mailbox: in.opts.SentMailbox}
}

// Address is the envelope recipient that gets the copies.
func (s *SentCopies) Address() string { return s.address }

// Find reports which of the Message-IDs have a copy in the folder, on a
// connection of its own (it is needed rarely: after a crash, or when the
// reply to the end of a mail's data was lost).
func (s *SentCopies) Find(ctx context.Context, messageIDs []string) (map[string]bool, error) {
	if s.mailbox == "" {
		return nil, fmt.Errorf("%w: no sent-copy mailbox", ErrBadOptions)
	}
	c, err := s.in.dial(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.wait(c.Login(s.in.opts.Username, s.in.opts.Password).Wait); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if err := s.in.ensureMailbox(c, s.mailbox); err != nil {
		return nil, err
	}
	if _, err := waitFor(c, c.Select(s.mailbox, &imap.SelectOptions{ReadOnly: true}).Wait); err != nil {
		return nil, fmt.Errorf("examine %s: %w", s.mailbox, err)
	}
	found := make(map[string]bool, len(messageIDs))
	for _, id := range messageIDs {
		if id == "" {
			continue
		}
		// HEADER matches a substring; the angle brackets keep one ID from
		// matching inside another.
		crit := &imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: "<" + trimBrackets(id) + ">"}}}
		data, err := waitFor(c, c.UIDSearch(crit, nil).Wait)
		if err != nil {
			return nil, fmt.Errorf("search %s: %w", s.mailbox, err)
		}
		if len(data.AllUIDs()) > 0 {
			found[id] = true
		}
	}
	_ = c.wait(c.Logout().Wait)
	return found, nil
}

func trimBrackets(id string) string {
	if len(id) >= 2 && id[0] == '<' && id[len(id)-1] == '>' {
		return id[1 : len(id)-1]
	}
	return id
}
