package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// follower keeps this instance's subscribers in step with the changes other
// instances commit to a shared PostgreSQL. Every write notifies
// "<seq> <subdomain>" on the schema's channel inside its transaction; the
// follower reads that subdomain's current state and delivers it. Sequences
// commit in order (lockWrites), so having handled sequence n means every
// earlier change was handled; after a lost connection the follower listens
// again and then re-reads every subdomain changed after the last sequence it
// handled, so nothing is dropped.
type follower struct {
	s       *Store
	dsn     string
	channel string

	mu sync.Mutex
	// err is why the feed is down; nil while following.
	err error
	// applied is the highest sequence whose state subscribers have.
	applied int64
	// own holds the sequences of changes this instance is committing or
	// committed and delivered itself, whose notification has not come
	// back yet: it is not read again.
	own map[int64]bool

	// acked wakes the heartbeat loop to record a newly applied sequence.
	acked  chan struct{}
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// startFollower listens before returning, so a store that opens follows
// from the start; later failures are retried in the background.
func startFollower(ctx context.Context, s *Store, dsn, channel string) (*follower, error) {
	f, err := newFollower(ctx, s)
	if err != nil {
		return nil, err
	}
	f.dsn, f.channel = dsn, channel
	conn, err := f.listen(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: follow changes: %w", err)
	}
	f.start(func(ctx context.Context) { f.run(ctx, conn) }, f.heartbeat)
	return f, nil
}

// newFollower starts from the newest change already in the store: the
// store's own load covered everything before it.
func newFollower(ctx context.Context, s *Store) (*follower, error) {
	f := &follower{s: s, own: map[int64]bool{}, acked: make(chan struct{}, 1)}
	if err := s.read.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM changes`).Scan(&f.applied); err != nil {
		return nil, fmt.Errorf("store: follow changes: %w", err)
	}
	return f, nil
}

// start runs loops in the background until stop.
func (f *follower) start(loops ...func(context.Context)) {
	runCtx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	for _, loop := range loops {
		f.done.Add(1)
		go func() {
			defer f.done.Done()
			loop(runCtx)
		}()
	}
}

func (f *follower) stop() {
	f.cancel()
	f.done.Wait()
	if f.channel == "" {
		return // a poller: no instance row
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	f.s.forgetInstance(ctx)
}

// startPoller follows a SQLite file that other processes may write too
// (delegated account, import-acme-dns, while the daemon runs). SQLite cannot
// notify, so the follower looks for newer change sequences every
// PollInterval: one indexed read when nothing changed. It has no channel,
// dsn or heartbeat.
func startPoller(ctx context.Context, s *Store) (*follower, error) {
	f, err := newFollower(ctx, s)
	if err != nil {
		return nil, err
	}
	f.start(f.poll)
	return f, nil
}

// poll catches up every PollInterval until ctx ends.
func (f *follower) poll(ctx context.Context) {
	every(ctx, f.s.opts.PollInterval, func() {
		err := f.catchUp(ctx)
		if ctx.Err() == nil && f.setHealth(err) {
			f.s.log.Error("reading changes made by other processes failed; values they write are not served until it works again", "err", err)
		}
	})
}

func (f *follower) health() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *follower) appliedSeq() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// published records a change this instance is committing and delivers
// itself.
func (f *follower) published(seq int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.own[seq] = true
}

// feed is a listening connection and the notifications it has received but
// the follower has not handled. pgconn hands notifications to a callback
// that runs in the goroutine reading the connection (the follower's own),
// so the queue needs no lock.
type feed struct {
	conn    *pgconn.PgConn
	pending []*pgconn.Notification
}

// listen opens a dedicated connection (LISTEN needs one held open) and
// subscribes to the channel.
func (f *follower) listen(ctx context.Context) (*feed, error) {
	cfg, err := pgconn.ParseConfig(f.dsn)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	fd := &feed{}
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		fd.pending = append(fd.pending, n)
	}
	fd.conn, err = pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if _, err := fd.conn.Exec(ctx, "LISTEN "+pgx.Identifier{f.channel}.Sanitize()).ReadAll(); err != nil {
		fd.conn.Close(ctx)
		return nil, fmt.Errorf("listen: %w", err)
	}
	return fd, nil
}

// run follows until ctx ends, reconnecting after failures.
func (f *follower) run(ctx context.Context, conn *feed) {
	log := f.s.log
	delay := 50 * time.Millisecond
	for {
		var err error
		if conn == nil {
			conn, err = f.listen(ctx)
		}
		if err == nil {
			// Catch up after listening: a change committed in between is
			// both read here and notified, and the second is skipped.
			err = f.catchUp(ctx)
		}
		if err == nil {
			f.setHealth(nil)
			delay = 50 * time.Millisecond
			err = f.receive(ctx, conn)
		}
		if conn != nil {
			closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
			conn.conn.Close(closeCtx)
			cancel()
			conn = nil
		}
		if ctx.Err() != nil {
			return
		}
		if f.setHealth(err) {
			log.Error("change feed lost; this instance may answer stale values until it reconnects", "err", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, f.s.opts.ReconnectDelay)
	}
}

// setHealth records the feed's state and reports whether it just went down.
func (f *follower) setHealth(err error) (wentDown bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	wentDown = f.err == nil && err != nil
	if err != nil {
		err = fmt.Errorf("change feed down: %w", err)
	} else if f.err != nil {
		f.s.log.Info("change feed restored", "applied_seq", f.applied)
	}
	f.err = err
	return wentDown
}

// receive handles notifications until the connection fails.
func (f *follower) receive(ctx context.Context, fd *feed) error {
	for {
		for len(fd.pending) > 0 {
			n := fd.pending[0]
			fd.pending = fd.pending[1:]
			if err := f.handlePayload(ctx, n.Payload); err != nil {
				return err
			}
		}
		fd.pending = nil
		if err := waitNotification(ctx, fd.conn); err != nil {
			return err
		}
	}
}

func (f *follower) handlePayload(ctx context.Context, payload string) error {
	if strings.HasPrefix(payload, confirmRequest) {
		// A writer waits for every instance to have applied its change;
		// notifications arrive in order, so this one has, and its next
		// heartbeat says so now instead of at the next tick.
		f.wakeHeartbeat()
		return nil
	}
	seq, sub, err := parseChange(payload)
	if err != nil {
		f.s.log.Warn("ignoring change notification", "err", err)
		return nil
	}
	return f.handle(ctx, seq, sub)
}

// waitNotification returns once notifications arrived (queued by the
// feed's callback). A connection that died without a TCP reset (server
// host gone) is detected by the periodic ping: waiting longer would leave
// the instance reporting healthy while deaf.
func waitNotification(ctx context.Context, conn *pgconn.PgConn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := conn.WaitForNotification(wctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) || conn.IsClosed() {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("ping: %w", err)
		}
	}
}

// handle applies one notified change.
func (f *follower) handle(ctx context.Context, seq int64, sub string) error {
	f.mu.Lock()
	skip := seq <= f.applied
	skip = skip || f.own[seq]
	// Notifications come in sequence order: own sequences up to seq are
	// settled (one below seq that never came back rolled back).
	for own := range f.own {
		if own <= seq {
			delete(f.own, own)
		}
	}
	f.mu.Unlock()
	if !skip {
		tx, err := f.s.snapshotTx(ctx)
		if err != nil {
			return fmt.Errorf("read change %d: %w", seq, err)
		}
		err = f.s.deliverFollowed(ctx, tx, sub, f.s.opts.Now())
		tx.Rollback()
		if err != nil {
			return fmt.Errorf("read change %d: %w", seq, err)
		}
	}
	f.advance(seq)
	return nil
}

// advance records that subscribers have every change up to seq. With
// ConfirmAll it also wakes the heartbeat loop, so that writers waiting for
// confirmation hear at once rather than at the next heartbeat; without it
// the applied sequence is recorded with the heartbeat only, sparing the
// database a write per change per instance. (Set confirm on every instance:
// a writer waiting on an instance without it waits up to one heartbeat.)
func (f *follower) advance(seq int64) {
	f.mu.Lock()
	if seq > f.applied {
		f.applied = seq
	}
	f.mu.Unlock()
	if f.s.opts.ConfirmAll {
		f.wakeHeartbeat()
	}
}

// wakeHeartbeat makes the heartbeat loop record the applied sequence now.
// Wake-ups coalesce.
func (f *follower) wakeHeartbeat() {
	select {
	case f.acked <- struct{}{}:
	default:
	}
}

// catchUp delivers the current state of every subdomain changed after the
// last applied sequence, read in one snapshot.
func (f *follower) catchUp(ctx context.Context) error {
	from := f.appliedSeq()
	tx, err := f.s.snapshotTx(ctx)
	if err != nil {
		return fmt.Errorf("catch up: %w", err)
	}
	defer tx.Rollback()
	var upTo int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM changes`).Scan(&upTo); err != nil {
		return fmt.Errorf("catch up: %w", err)
	}
	if upTo <= from {
		return nil
	}
	// Compaction removed deletions up to this mark: one this instance had
	// not applied may be among them, and nothing would tell it the name is
	// gone. Only an instance silent for a day gets here (see
	// CompactChanges); a restart reloads everything.
	through, err := f.s.compactedThrough(ctx, tx)
	if err != nil {
		return fmt.Errorf("catch up: %w", err)
	}
	if from < through {
		return fmt.Errorf("catch up: this instance applied changes up to %d but the change feed was compacted through %d, so deletions may have been missed; restart it to reload", from, through)
	}
	rows, err := tx.QueryContext(ctx, f.s.dialect.rebind(`SELECT subdomain, MAX(seq) FROM changes WHERE seq > ? GROUP BY subdomain`), from)
	if err != nil {
		return fmt.Errorf("catch up: %w", err)
	}
	latest := map[string]int64{}
	for rows.Next() {
		var (
			sub string
			seq int64
		)
		if err := rows.Scan(&sub, &seq); err != nil {
			rows.Close()
			return fmt.Errorf("catch up: %w", err)
		}
		latest[sub] = seq
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catch up: %w", err)
	}
	// This instance's own writes were delivered by the writer. Its values
	// state covers another process's earlier change to the same
	// subdomain, but not that change's TSIG key, which is re-read.
	var ownLatest map[string]int64
	f.mu.Lock()
	for sub, seq := range latest {
		if f.own[seq] {
			delete(latest, sub)
			if ownLatest == nil {
				ownLatest = map[string]int64{}
			}
			ownLatest[sub] = seq
		}
	}
	f.mu.Unlock()
	for sub, seq := range ownLatest {
		if err := f.s.deliverKeyOf(ctx, tx, sub, seq); err != nil {
			return fmt.Errorf("catch up: %w", err)
		}
	}
	now := f.s.opts.Now()
	for sub := range latest {
		if err := f.s.deliverFollowed(ctx, tx, sub, now); err != nil {
			return fmt.Errorf("catch up: %w", err)
		}
	}
	f.mu.Lock()
	for own := range f.own {
		if own <= upTo {
			delete(f.own, own)
		}
	}
	f.mu.Unlock()
	if len(latest) > 0 || f.channel != "" {
		// A poller catches up with its own writes all the time; only
		// others' are news.
		f.s.log.Info("caught up with changes", "from_seq", from, "to_seq", upTo, "subdomains", len(latest))
	}
	f.advance(upTo)
	return nil
}
