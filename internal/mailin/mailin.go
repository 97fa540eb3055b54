// Package mailin owns inbound mail transport: it reads the service mailbox
// over IMAP (RFC 9051, IMAP4rev1 RFC 3501 with IDLE RFC 2177 and MOVE
// RFC 6851) and hands each raw message to the spool.
//
// Delivery is at least once. A message is stored durably in the spool
// BEFORE it is marked on the server (moved to the processed folder, or
// flagged \Seen), so a crash between the two makes the message come back;
// the spool recognises it by Message-ID and content hash and it is only
// marked then. The bodies of the messages found come in one FETCH, are
// committed together and marked together once stored. Bodies are streamed
// from the IMAP literal into the spool with a fixed buffer, so memory does
// not grow with message size. Messages over the size limit are still
// stored, flagged Oversize, for quarantine; they are never parsed here.
//
// The loop connects, logs in, selects the mailbox, checks UIDVALIDITY
// (RFC 3501 section 2.3.1.1: a change invalidates every UID; since the
// unprocessed set is found by SEARCH, not by a remembered UID, a change only
// means everything unprocessed is fetched again and the spool dedupes it),
// ingests all unprocessed messages, then waits with IDLE, or polls when the
// server has no IDLE. The marks go out without waiting for their answer:
// a pass that stored new mail is followed at once by the next search,
// behind them on the connection, which takes their answer first. Any error ends the session and the loop reconnects
// with exponential backoff; so does a server that owes an answer and sends
// nothing for AnswerTimeout (a hung server process, or a connection lost
// without a reset), which would otherwise hold the loop for good.
package mailin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Raw describes one message as found on the IMAP server.
type Raw struct {
	// Mailbox is the mailbox it was read from.
	Mailbox string
	// UIDValidity and UID identify it on the server (RFC 3501 2.3.1.1).
	UIDValidity, UID uint32
	// Size is RFC822.SIZE as the server reported it.
	Size int64
	// Oversize is set when Size exceeds Options.MaxSize: the message must be
	// kept and quarantined, never parsed.
	Oversize bool
	// InternalDate is when the server received it.
	InternalDate time.Time
}

// Stored is the spool's answer for one message.
type Stored struct {
	// ID is the spool's id of the stored message (of the first copy, for a
	// duplicate).
	ID int64
	// Duplicate is set when the spool already had this message (same
	// Message-ID and content hash), e.g. after a crash before it was marked.
	Duplicate bool
}

// Spool is where raw inbound messages go (the store's inbound table).
//
// Stage must read body to EOF and keep the message, without holding a large
// body in memory; it records nothing yet. Commit must record the staged
// messages, in order, and make them durable before it returns without
// error: they are marked on the server right after. It must be idempotent
// on Message-ID + content hash, answering Duplicate for a message it
// already has (also one earlier in the same Commit). A message staged and
// never committed is as if it had never been read.
type Spool interface {
	Stage(ctx context.Context, m Raw, body io.Reader) (Staged, error)
	Commit(ctx context.Context, staged []Staged) ([]Stored, error)
}

// Staged is a message a Spool has read and not yet recorded; only that
// Spool knows what it holds.
type Staged any

// Security is how the IMAP connection is protected.
type Security string

const (
	// SecurityTLS is implicit TLS (imaps, port 993). The default.
	SecurityTLS Security = "tls"
	// SecurityStartTLS upgrades a plain connection with STARTTLS (port 143).
	SecurityStartTLS Security = "starttls"
	// SecurityPlain is no encryption at all; only allowed to a loopback
	// address (a local Dovecot, tests, the demo).
	SecurityPlain Security = "plain"
)

// Backoff bounds the delay between reconnect attempts; it doubles from Min
// to Max and returns to Min after a session got as far as selecting the
// mailbox.
type Backoff struct {
	Min, Max time.Duration
}

// Defaults for zero Options fields.
const (
	DefaultMailbox      = "INBOX"
	DefaultMaxSize      = 25 << 20 // 25 MiB, the common provider limit
	DefaultPollInterval = time.Minute
	DefaultBackoffMin   = time.Second
	DefaultBackoffMax   = 2 * time.Minute
)

// Options configures an Ingester. Zero fields take the defaults.
type Options struct {
	// Addr is host:port of the IMAP server.
	Addr string
	// Security is tls (default), starttls or plain (loopback only).
	Security Security
	// TLSConfig is used for tls and starttls; nil means the system roots
	// and the host name from Addr.
	TLSConfig *tls.Config
	// Username and Password log in (LOGIN command).
	Username, Password string
	// Mailbox is read for new mail; default INBOX.
	Mailbox string
	// ProcessedMailbox receives each message once it is stored (MOVE, or
	// COPY + \Deleted + EXPUNGE on a server without MOVE); it is created if
	// missing. Empty means messages stay and are flagged \Seen instead, and
	// \Seen messages are skipped, so nobody else may read the mailbox with a
	// client that sets \Seen.
	ProcessedMailbox string
	// SentMailbox is the folder the mail server files the copies of our
	// own outgoing mail into (see SentCopies); it is created if missing.
	// Empty: no sent copies.
	SentMailbox string
	// MaxSize is the size above which a message is stored with Oversize set;
	// default DefaultMaxSize. Negative means no limit.
	MaxSize int64
	// PollInterval is how often to look for new mail when the server has no
	// IDLE, and how long one IDLE lasts at most; default DefaultPollInterval.
	PollInterval time.Duration
	// AnswerTimeout is how long the server may send nothing at all while
	// it owes an answer, before the connection is dropped and made again;
	// default DefaultAnswerTimeout. Waiting in IDLE is not bounded by it.
	AnswerTimeout time.Duration
	// Backoff bounds the reconnect delay; defaults DefaultBackoffMin/Max.
	Backoff Backoff
	// Logger gets one line per ingested message and per reconnect; default
	// slog.Default(). Nothing of the message content is logged.
	Logger *slog.Logger
	// Notify, if set, is called after each newly stored message (not for
	// duplicates), to kick the engine's loop; the message is marked on the
	// server after that, with the others of its batch. It must not block.
	Notify func()
	// ObserveLag, if set, gets the ingest lag of each newly stored message:
	// from INTERNALDATE (whole seconds) to stored.
	ObserveLag func(time.Duration)
	// ObservePass, if set, gets the time of each finished pass over the
	// mailbox: searched, all it found stored, and the marks of the pass
	// before answered by the server (a pass that stored new mail is
	// followed at once by another, which takes the answer to its marks;
	// the ingester waits for new mail only once its marks are answered).
	// A pass comes at least every PollInterval while the server can be
	// reached; the health check watches for them. It must not block.
	ObservePass func(time.Time)
	// Now is the clock for the lag and the passes; default time.Now.
	Now func() time.Time
}

// ErrPlainNotLoopback is returned by New for Security plain to a host that
// is not a loopback address: the password would cross the network in clear.
var ErrPlainNotLoopback = errors.New("mailin: plain IMAP is only allowed to a loopback address")

// ErrBadOptions is wrapped by New for any other invalid option.
var ErrBadOptions = errors.New("mailin: invalid options")

// Ingester reads one IMAP mailbox into a Spool.
type Ingester struct {
	spool Spool
	opts  Options
	log   *slog.Logger

	// uidValidity is the last seen UIDVALIDITY, to notice a change across
	// reconnects.
	uidValidity uint32
}

// New checks opts and returns an Ingester that feeds spool.
func New(spool Spool, opts *Options) (*Ingester, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if spool == nil {
		return nil, fmt.Errorf("%w: nil spool", ErrBadOptions)
	}
	var err error
	if _, o.Security, err = checkServer(o.Addr, o.Security); err != nil {
		return nil, err
	}
	if o.Username == "" {
		return nil, fmt.Errorf("%w: empty username", ErrBadOptions)
	}
	if o.Mailbox == "" {
		o.Mailbox = DefaultMailbox
	}
	if o.ProcessedMailbox == o.Mailbox {
		return nil, fmt.Errorf("%w: processed mailbox %q is the mailbox read", ErrBadOptions, o.ProcessedMailbox)
	}
	if o.SentMailbox != "" && (o.SentMailbox == o.Mailbox || o.SentMailbox == o.ProcessedMailbox) {
		return nil, fmt.Errorf("%w: sent-copy mailbox %q is the mailbox read or the processed one", ErrBadOptions, o.SentMailbox)
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.AnswerTimeout <= 0 {
		o.AnswerTimeout = DefaultAnswerTimeout
	}
	if o.Backoff.Min <= 0 {
		o.Backoff.Min = DefaultBackoffMin
	}
	if o.Backoff.Max <= 0 {
		o.Backoff.Max = DefaultBackoffMax
	}
	if o.Backoff.Max < o.Backoff.Min {
		o.Backoff.Max = o.Backoff.Min
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Ingester{
		spool: spool,
		opts:  o,
		log:   o.Logger.With("imap", o.Addr, "mailbox", o.Mailbox),
	}, nil
}

// Run ingests until ctx is done, reconnecting after any error, and then
// returns nil. Run may be called again after it returned, but not
// concurrently. A message being stored when ctx ends is not marked; it comes
// back on the next run and the spool reports it as a duplicate.
func (in *Ingester) Run(ctx context.Context) error {
	delay := in.opts.Backoff.Min
	for attempt := 1; ; attempt++ {
		selected, err := in.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if selected {
			delay = in.opts.Backoff.Min
			attempt = 1
		}
		wait := jitter(delay)
		in.log.Warn("imap session ended; reconnecting", "err", err, "attempt", attempt, "in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(delay*2, in.opts.Backoff.Max)
	}
}

// jitter spreads reconnects of several daemons: d minus up to 20 %.
func jitter(d time.Duration) time.Duration {
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

// session runs one connection until it fails or ctx ends. selected reports
// whether it got as far as selecting the mailbox (the backoff then resets).
func (in *Ingester) session(ctx context.Context) (selected bool, err error) {
	kick := make(chan struct{}, 1)
	c, err := in.dial(ctx, kick)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	// Closing the connection unblocks every command, IDLE and literal read.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	if err := c.wait(c.Login(in.opts.Username, in.opts.Password).Wait); err != nil {
		return false, fmt.Errorf("login: %w", err)
	}
	for _, name := range []string{in.opts.ProcessedMailbox, in.opts.SentMailbox} {
		if name == "" {
			continue
		}
		if err := in.ensureMailbox(c, name); err != nil {
			return false, err
		}
	}
	sel, err := in.selectMailbox(c)
	if err != nil {
		return false, err
	}
	idle := c.Caps().Has(imap.CapIdle)

	for {
		// A kick from before this pass is covered by it.
		select {
		case <-kick:
		default:
		}
		fresh, err := in.ingestAll(ctx, c, sel.UIDValidity)
		if err != nil {
			return true, err
		}
		if in.opts.ObservePass != nil {
			in.opts.ObservePass(in.opts.Now())
		}
		if fresh > 0 {
			// Search again at once: mail that came during the pass is
			// found, and the marks just sent are answered, in one round
			// trip.
			continue
		}
		// Nothing new, perhaps mail stored before a crash and marked now:
		// its marks are answered before waiting. (Searching again at once
		// after such a pass would spin against a server that takes a mark
		// and keeps showing the message.)
		if err := c.settle(); err != nil {
			return true, err
		}
		if idle {
			// Mail that arrived during the pass is reported with the
			// answer to its last command (a kick). A server need not
			// report it again at the start of IDLE (go-imap's memory
			// server does not), which would leave it waiting for the
			// IDLE to time out.
			select {
			case <-kick:
				continue
			default:
			}
			err = in.idle(ctx, c, kick)
			if errors.Is(err, errIdleTimeout) {
				// A fresh view of the mailbox: a session that missed a
				// message (see idle) sees it after selecting again.
				if sel, err = in.selectMailbox(c); err != nil {
					return true, err
				}
				continue
			}
		} else {
			err = in.poll(ctx, c)
		}
		if err != nil {
			return true, err
		}
	}
}

func (in *Ingester) dial(ctx context.Context, kick chan struct{}) (*conn, error) {
	return dial(ctx, in.opts.Addr, in.opts.Security, &imapclient.Options{
		TLSConfig: in.opts.TLSConfig,
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(data *imapclient.UnilateralDataMailbox) {
				if data.NumMessages != nil {
					select {
					case kick <- struct{}{}:
					default:
					}
				}
			},
		},
	}, in.opts.AnswerTimeout)
}

// Check connects and logs in with opts as Run would, and looks at the
// mailbox read-only (EXAMINE): nothing is fetched, flagged, moved or
// created. It returns a line for the operator: the mailbox's message
// count, whether the server has IDLE, and which of the folders the daemon
// files into exist (Run creates those that do not).
func Check(ctx context.Context, opts *Options) (string, error) {
	in, err := New(noSpool{}, opts)
	if err != nil {
		return "", err
	}
	return in.check(ctx)
}

// noSpool is the spool of an ingester that only checks; it stores nothing.
type noSpool struct{}

func (noSpool) Stage(context.Context, Raw, io.Reader) (Staged, error) {
	return nil, errors.New("mailin: a check stores nothing")
}

func (noSpool) Commit(context.Context, []Staged) ([]Stored, error) {
	return nil, errors.New("mailin: a check stores nothing")
}

func (in *Ingester) check(ctx context.Context) (string, error) {
	c, err := in.dial(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.wait(c.Login(in.opts.Username, in.opts.Password).Wait); err != nil {
		return "", fmt.Errorf("login as %s: %w", in.opts.Username, err)
	}
	sel, err := waitFor(c, c.Select(in.opts.Mailbox, &imap.SelectOptions{ReadOnly: true}).Wait)
	if err != nil {
		return "", fmt.Errorf("mailbox %s: %w", in.opts.Mailbox, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s holds %d messages", in.opts.Mailbox, sel.NumMessages)
	if !c.Caps().Has(imap.CapIdle) {
		fmt.Fprintf(&b, "; no IDLE: new mail is seen every %s", in.opts.PollInterval)
	}
	for _, name := range []string{in.opts.ProcessedMailbox, in.opts.SentMailbox} {
		if name == "" {
			continue
		}
		l, err := waitFor(c, c.List("", name, nil).Collect)
		if err != nil {
			return "", fmt.Errorf("list %s: %w", name, err)
		}
		if len(l) == 0 {
			fmt.Fprintf(&b, "; %s will be created at the first start", name)
		} else {
			fmt.Fprintf(&b, "; %s exists", name)
		}
	}
	if err := c.wait(c.Logout().Wait); err != nil {
		return "", fmt.Errorf("logout: %w", err)
	}
	return b.String(), nil
}

// ensureMailbox creates name unless it exists.
func (in *Ingester) ensureMailbox(c *conn, name string) error {
	created, err := ensureMailbox(c, name)
	if created {
		in.log.Info("created mailbox", "created", name)
	}
	return err
}

// EnsureMailbox creates the mailbox name unless it exists (or another
// client creates it meanwhile); created says whether this call did.
func EnsureMailbox(c *imapclient.Client, name string) (created bool, err error) {
	return ensureMailbox(&conn{Client: c}, name)
}

func ensureMailbox(c *conn, name string) (created bool, err error) {
	l, err := waitFor(c, c.List("", name, nil).Collect)
	if err != nil {
		return false, fmt.Errorf("list %s: %w", name, err)
	}
	if len(l) > 0 {
		return false, nil
	}
	if err := c.wait(c.Create(name, nil).Wait); err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) && ie.Code == imap.ResponseCodeAlreadyExists {
			return false, nil
		}
		return false, fmt.Errorf("create %s: %w", name, err)
	}
	return true, nil
}

// ingestAll stores and marks every unprocessed message, oldest UID first,
// and says how many it stored as new. The marks are sent without waiting
// for their answer (see mark); the next command's wait takes it first.
func (in *Ingester) ingestAll(ctx context.Context, c *conn, uidValidity uint32) (fresh int, err error) {
	criteria := &imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagDeleted}}
	if in.opts.ProcessedMailbox == "" {
		criteria.NotFlag = append(criteria.NotFlag, imap.FlagSeen)
	}
	// The server takes commands in order: the search sees the mailbox
	// after the marks of the pass before.
	search := c.UIDSearch(criteria, nil)
	if err := c.settle(); err != nil {
		return 0, err
	}
	data, err := waitFor(c, search.Wait)
	if err != nil {
		return 0, fmt.Errorf("search: %w", err)
	}
	set, ok := data.All.(imap.UIDSet)
	if !ok || len(set) == 0 {
		return 0, nil
	}
	if _, ok := set.Nums(); !ok {
		return 0, fmt.Errorf("search: server returned a dynamic UID set %v", set)
	}

	// Metadata first: the order of items in a FETCH response is the
	// server's choice, and the UID, size and date must be known before the
	// body is streamed.
	metas, err := waitFor(c, c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true, InternalDate: true}).Collect)
	if err != nil {
		return 0, fmt.Errorf("fetch metadata: %w", err)
	}
	sort.Slice(metas, func(i, j int) bool { return metas[i].UID < metas[j].UID })
	for len(metas) > 0 {
		n := min(len(metas), batchSize)
		f, err := in.ingestBatch(ctx, c, uidValidity, metas[:n])
		fresh += f
		if err != nil {
			return fresh, err
		}
		metas = metas[n:]
	}
	return fresh, nil
}

// batchSize is the most messages whose bodies are asked for at once, and
// marked together once stored. A crash re-fetches at most this many stored
// messages, which the spool recognises.
const batchSize = 32

// ingestBatch stores the bodies of metas, then marks them in one command,
// and says how many it stored as new. The bodies come in one UID FETCH,
// each read into the spool as it arrives, so a message does not wait a
// round trip per message before it; they are committed together (one
// fsync), except that what is staged is committed before a large body
// streams in, so that a reply does not wait for a medical file behind it. A body is only taken once its UID is known
// (go-imap itself relies on a server sending the UID before a literal to
// route the response); a server that does otherwise ends the session.
func (in *Ingester) ingestBatch(ctx context.Context, c *conn, uidValidity uint32, metas []*imapclient.FetchMessageBuffer) (int, error) {
	raws := make(map[imap.UID]Raw, len(metas))
	var set imap.UIDSet
	for _, m := range metas {
		if m.UID == 0 {
			continue
		}
		set.AddNum(m.UID)
		raws[m.UID] = Raw{
			Mailbox:      in.opts.Mailbox,
			UIDValidity:  uidValidity,
			UID:          uint32(m.UID),
			Size:         m.RFC822Size,
			Oversize:     in.opts.MaxSize > 0 && m.RFC822Size > in.opts.MaxSize,
			InternalDate: m.InternalDate,
		}
	}
	if len(set) == 0 {
		return 0, nil
	}
	// The marks of the batch before, if any, are answered first, not
	// after this FETCH is sent: Dovecot runs a UID FETCH while a MOVE or
	// STORE before it is still going, so a body could come before that
	// command's answer, and go-imap's reader would wait for the body to
	// be read while this waited for the answer, for good.
	if err := c.settle(); err != nil {
		return 0, err
	}
	cmd := c.Fetch(set, &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	var (
		b      = &batch{in: in}
		stored imap.UIDSet
	)
	for msg := next(c, cmd.Next); msg != nil; msg = next(c, cmd.Next) {
		uid, lit, err := bodyOf(msg, raws)
		if err == nil && raws[uid].Size > commitBefore {
			err = b.commit(ctx, &stored)
		}
		if err == nil {
			err = b.stage(ctx, raws[uid], lit)
		}
		if err != nil {
			// Nothing uncommitted is marked: it comes again next time.
			// Dropping the connection releases the client's reader at
			// once; Close then reads no more.
			c.Close()
			if lit != nil {
				_, _ = io.Copy(io.Discard, lit)
			}
			_ = cmd.Close()
			if uid != 0 {
				return 0, fmt.Errorf("uid %d: %w", uid, err)
			}
			return 0, err
		}
	}
	if err := c.wait(cmd.Close); err != nil {
		return 0, fmt.Errorf("fetch bodies: %w", err)
	}
	if err := b.commit(ctx, &stored); err != nil {
		return 0, err
	}
	// Stored but not yet marked: the window a crash may hit. Whatever ended
	// ctx, nothing more may happen on the server.
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(stored) > 0 {
		in.mark(c, stored)
	}
	return b.fresh, nil
}

// commitBefore is the size above which a message's body takes long enough
// to stream and write that the messages staged before it are committed
// (and handed to the engine) first.
const commitBefore = 256 << 10

// bodyOf reads the items of one FETCH answer up to the body and says which
// of the messages asked for it is.
func bodyOf(msg *imapclient.FetchMessageData, raws map[imap.UID]Raw) (imap.UID, imap.LiteralReader, error) {
	var (
		uid imap.UID
		lit imap.LiteralReader
	)
	// Stop at the body: the next item comes only once it has been read.
	for item := msg.Next(); item != nil; item = msg.Next() {
		if u, ok := item.(imapclient.FetchItemDataUID); ok {
			uid = u.UID
		}
		if b, ok := item.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
			lit = b.Literal
			break
		}
	}
	_, asked := raws[uid]
	switch {
	case lit == nil:
		return uid, nil, errors.New("fetch body: server sent no body")
	case uid == 0:
		return 0, lit, errors.New("fetch body: server sent a body before its UID")
	case !asked:
		return uid, lit, errors.New("fetch body: server sent a message that was not asked for")
	}
	return uid, lit, nil
}

// batch is the messages of one FETCH read into the spool and not yet
// committed.
type batch struct {
	in     *Ingester
	raws   []Raw
	staged []Staged
	began  []time.Time
	fresh  int // committed as new, not as duplicates
}

// stage reads one body into the spool.
func (b *batch) stage(ctx context.Context, raw Raw, lit imap.LiteralReader) error {
	began := time.Now()
	body := &countingReader{r: lit}
	st, err := b.in.spool.Stage(ctx, raw, body)
	if err == nil && body.n != lit.Size() {
		err = fmt.Errorf("spool read %d of %d bytes", body.n, lit.Size())
	}
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	b.raws = append(b.raws, raw)
	b.staged = append(b.staged, st)
	b.began = append(b.began, began)
	return nil
}

// commit records what is staged, adds it to stored (to be marked), and
// hands each new message to the engine (Notify).
func (b *batch) commit(ctx context.Context, stored *imap.UIDSet) error {
	if len(b.staged) == 0 {
		return nil
	}
	res, err := b.in.spool.Commit(ctx, b.staged)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	in := b.in
	for i, raw := range b.raws {
		stored.AddNum(imap.UID(raw.UID))
		// INTERNALDATE has whole seconds: the lag is logged as that, not
		// to the millisecond it is not known to.
		lag := in.opts.Now().Sub(raw.InternalDate)
		in.log.Info("mail ingested", "uid", raw.UID, "size", raw.Size, "oversize", raw.Oversize,
			"id", res[i].ID, "duplicate", res[i].Duplicate, "lag", lag.Round(time.Second),
			"took", time.Since(b.began[i]).Round(time.Millisecond))
		if !res[i].Duplicate {
			b.fresh++
			if in.opts.ObserveLag != nil {
				in.opts.ObserveLag(lag)
			}
			if in.opts.Notify != nil {
				in.opts.Notify()
			}
		}
	}
	b.raws, b.staged, b.began = b.raws[:0], b.staged[:0], b.began[:0]
	return nil
}

// mark sends the command that records on the server that the messages are
// stored, and leaves its answer to the next wait (conn.settle): the next
// command goes out behind it at once, which saves a round trip per pass.
// A crash before the answer is a crash before the mark: the spool
// recognises what comes again.
func (in *Ingester) mark(c *conn, uid imap.UIDSet) {
	if in.opts.ProcessedMailbox == "" {
		cmd := c.Store(uid, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil)
		c.marking = func() error {
			if err := cmd.Close(); err != nil {
				return fmt.Errorf("flag \\Seen: %w", err)
			}
			return nil
		}
		return
	}
	// The library falls back to COPY + STORE \Deleted + (UID) EXPUNGE on a
	// server without MOVE.
	cmd := c.Move(uid, in.opts.ProcessedMailbox)
	c.marking = func() error {
		if _, err := cmd.Wait(); err != nil {
			return fmt.Errorf("move to %s: %w", in.opts.ProcessedMailbox, err)
		}
		return nil
	}
}

// idle waits in IDLE until the server reports new mail, PollInterval has
// passed (errIdleTimeout), the connection fails or ctx ends. Leaving IDLE
// every PollInterval, then selecting the mailbox again and searching, means
// a session that failed to report a message — go-imap's in-process server
// can drop an EXISTS that arrives just before IDLE, or miss a message
// appended while the client selects — delays it by one interval, never
// forever; it also re-issues IDLE well within RFC 2177's 29 minutes.
func (in *Ingester) idle(ctx context.Context, c *conn, kick <-chan struct{}) error {
	cmd, err := waitFor(c, c.Idle)
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t := time.NewTimer(in.opts.PollInterval)
	defer t.Stop()
	timedOut := false
	select {
	case <-kick:
	case <-t.C:
		timedOut = true
	case <-ctx.Done():
		_ = cmd.Close()
		<-done
		return ctx.Err()
	case err := <-done:
		_ = cmd.Close()
		if err == nil {
			err = errors.New("server ended IDLE")
		}
		return fmt.Errorf("idle: %w", err)
	}
	if err := cmd.Close(); err != nil {
		<-done
		return fmt.Errorf("idle done: %w", err)
	}
	// DONE is written; the server owes the IDLE's completion.
	if err := c.wait(func() error { return <-done }); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	if timedOut {
		return errIdleTimeout
	}
	return nil
}

// errIdleTimeout ends an IDLE that lasted PollInterval.
var errIdleTimeout = errors.New("idle: poll interval passed")

// selectMailbox selects the mailbox and notices a UIDVALIDITY change.
func (in *Ingester) selectMailbox(c *conn) (*imap.SelectData, error) {
	sel, err := waitFor(c, c.Select(in.opts.Mailbox, nil).Wait)
	if err != nil {
		return nil, fmt.Errorf("select %s: %w", in.opts.Mailbox, err)
	}
	if in.uidValidity != 0 && sel.UIDValidity != in.uidValidity {
		in.log.Warn("UIDVALIDITY changed; fetching every unprocessed message again",
			"old", in.uidValidity, "new", sel.UIDValidity)
	}
	in.uidValidity = sel.UIDValidity
	return sel, nil
}

// poll waits PollInterval for a server without IDLE, then sends NOOP: the
// command that makes a server look for new mail (Dovecot does not rescan
// the mailbox for SEARCH alone).
func (in *Ingester) poll(ctx context.Context, c *conn) error {
	t := time.NewTimer(in.opts.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	if err := c.wait(c.Noop().Wait); err != nil {
		return fmt.Errorf("noop: %w", err)
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	return n, err
}
