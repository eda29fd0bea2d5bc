package milvus

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/milvus-io/milvus/client/v2/column"
	"github.com/milvus-io/milvus/client/v2/entity"
	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/xmodal/xmodal/domain"
)

// ErrClosed is returned by Apply after Close.
var ErrClosed = errors.New("milvus index: closed")

// The writer coalesces concurrent Apply calls into rounds. A round works out
// every change's outcome with domain.Decide (the rule the embedded index
// applies) from what it knows of its posts, then writes, all at once: the
// deletes, the upserts of the records (and codes, PDQ hashes), the version
// and deny-list rows (they never touch one key twice).
// Every RPC is retried on Unavailable/ResourceExhausted (bounded); a round that
// fails fails every Apply call in it, and since every write is idempotent the
// caller's redelivery converges. Apply returns only after Milvus acknowledged
// every write.
//
// What a round knows of a post, without waiting for a Strong read:
//   - the versions row (its version, or denyMark for a takedown) and the
//     record rows, read at Bounded consistency (no
//     wait for a time tick; they show every write older than Milvus's graceful
//     time, 5 s by default), merged with
//   - what this writer itself wrote in the last StaleWindow (its own recent
//     writes, which a Bounded read may not show yet).
//
// Between them nothing a round needs is missing as long as each post is
// written by one writer at a time, which Kafka gives (a post's versions share
// a partition, and a partition has one owner). When a partition moves to
// another indexer, the previous owner's last writes may be younger than the
// graceful time: Fence makes the next FenceWindow of rounds read Strong (the
// Kafka source calls it on every assignment). Takedowns are decided by the
// replicated deny-list before Apply (workers), so the marks read here are
// a second line, not the gate.
type writer struct {
	ix     *Index
	reqs   chan *applyReq
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	rounding sync.WaitGroup // rounds in flight
	busyMu   sync.Mutex
	busyCond *sync.Cond
	busy     map[string]int // post id → rounds in flight that hold it

	mu          sync.Mutex
	recent      map[string]*recentPost // this writer's writes of the last StaleWindow
	recentQ     []recentEntry          // recent's entries, oldest first
	strongUntil time.Time              // Fence: read at least at fenceTS until then
	insertFrom  time.Time              // rounds may insert new posts' rows from then (mayInsert)
	fenceEpoch  int                    // Fence calls so far
	fenceTS     uint64                 // server timestamp taken after the latest Fence (0: not yet)
	fenceTSOf   int                    // the fenceEpoch fenceTS was taken for
	fenceMu     sync.Mutex             // one timestamp request at a time

	markMu sync.Mutex  // one ensureDenyMarks at a time
	marked atomic.Bool // the deny rows are marked in the versions collection

	rounds, rows, strongRounds atomic.Int64
	insertedPosts              atomic.Int64 // posts whose rows were inserted (new to Milvus)
	readNanos, writeNanos      atomic.Int64
	waitNanos                  atomic.Int64 // rounds read, waiting for a write slot
}

type recentEntry struct {
	id string
	rp *recentPost
}

// recentPost is what this writer wrote of a post lately.
type recentPost struct {
	st   domain.PostState
	mods [3]bool // modalities written (records present)
	at   time.Time
}

type applyReq struct {
	changes []domain.Change
	out     []domain.Outcome
	err     error
	done    chan struct{}
}

func newWriter(ix *Index) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{ix: ix, reqs: make(chan *applyReq), ctx: ctx, cancel: cancel, recent: map[string]*recentPost{}, busy: map[string]int{}}
	if !ix.opt.UpsertOnly {
		// A writer that inserts the rows of the posts it reads as new must
		// see what a writer before it (this process before a restart) wrote
		// a moment ago, which a Bounded read may not show: its rounds of the
		// first StaleWindow read at a timestamp taken after the start.
		w.strongUntil, w.fenceEpoch = time.Now().Add(max(ix.opt.FenceWindow, ix.opt.StaleWindow)), 1
	}
	w.busyCond = sync.NewCond(&w.busyMu)
	w.wg.Add(1)
	go w.loop()
	return w
}

func (w *writer) close() {
	w.cancel()
	w.wg.Wait()
}

func rowsOf(r *applyReq) int {
	n := 0
	for i := range r.changes {
		n += max(1, len(r.changes[i].Records))
	}
	return n
}

// loop forms rounds: a round takes the requests that wait (up to BatchSize
// rows, or what arrives within Linger) and starts when a read slot is free.
// A round runs in two stages, a pipeline: it reads what Milvus holds of its
// posts holding one of Rounds read slots, then waits for one of Rounds write
// slots and only then gives its read slot to the next round. So while Rounds
// rounds write, the next Rounds rounds read (and wait, their reads done, for
// the writers), and the requests that arrive meanwhile gather into the round
// after them: a round costs about max(read, write) rather than their sum.
// Rounds in flight at once never share a post (a round whose posts are in a
// running round waits for it), so each post's writes stay in order, and a
// round's read never races a write of its own posts.
func (w *writer) loop() {
	defer w.wg.Done()
	o := w.ix.opt
	slots := make(chan struct{}, o.Rounds)  // read slots
	wslots := make(chan struct{}, o.Rounds) // write slots
	var carry *applyReq                     // a request that did not fit the last round
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-w.reqs:
			case <-w.ctx.Done():
				w.rounding.Wait()
				return
			}
		}
		batch := []*applyReq{first}
		n := rowsOf(first)
		take := func(r *applyReq) bool {
			if n+rowsOf(r) > o.BatchSize {
				carry = r
				return false
			}
			batch = append(batch, r)
			n += rowsOf(r)
			return true
		}
		if o.Linger > 0 {
			t := time.NewTimer(o.Linger)
		collect:
			for carry == nil && n < o.BatchSize {
				select {
				case r := <-w.reqs:
					take(r)
				case <-t.C:
					break collect
				case <-w.ctx.Done():
					break collect
				}
			}
			t.Stop()
		}
		// Wait for a free round, gathering what arrives meanwhile.
	wait:
		for {
			if carry != nil || n >= o.BatchSize {
				select {
				case slots <- struct{}{}:
					break wait
				case <-w.ctx.Done():
					w.fail(batch, ErrClosed)
					w.rounding.Wait()
					return
				}
			}
			select {
			case slots <- struct{}{}:
				break wait
			case r := <-w.reqs:
				take(r)
			case <-w.ctx.Done():
				w.fail(batch, ErrClosed)
				w.rounding.Wait()
				return
			}
		}
		ids := w.claim(batch)
		w.rounding.Add(1)
		go func() {
			defer w.rounding.Done()
			const reading, writing, closed = 0, 1, 2
			stage := reading
			err := w.round(w.ctx, batch, func() bool {
				select {
				case wslots <- struct{}{}:
					stage = writing
				case <-w.ctx.Done():
					stage = closed
				}
				<-slots
				return stage == writing
			})
			w.release(ids)
			switch stage {
			case reading:
				<-slots
			case writing:
				<-wslots
			}
			for _, r := range batch {
				if err != nil {
					r.err = err
					r.out = nil
				}
				close(r.done)
			}
		}()
	}
}

func (w *writer) fail(batch []*applyReq, err error) {
	for _, r := range batch {
		r.err, r.out = err, nil
		close(r.done)
	}
}

// claim waits until no running round holds any of the batch's posts, then
// marks them as held.
func (w *writer) claim(batch []*applyReq) []string {
	var ids []string
	for _, r := range batch {
		for i := range r.changes {
			ids = append(ids, r.changes[i].PostID)
		}
	}
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	for slices.ContainsFunc(ids, func(id string) bool { return w.busy[id] > 0 }) {
		w.busyCond.Wait()
	}
	for _, id := range ids {
		w.busy[id]++
	}
	return ids
}

func (w *writer) release(ids []string) {
	w.busyMu.Lock()
	for _, id := range ids {
		if w.busy[id]--; w.busy[id] == 0 {
			delete(w.busy, id)
		}
	}
	w.busyMu.Unlock()
	w.busyCond.Broadcast()
}

// Fence makes the write rounds of the next FenceWindow read Strong: call it
// when this writer may take over posts another writer wrote a moment ago (a
// Kafka partition assigned to this indexer). It narrows, not closes, a
// window: the new owner re-applies every version from the committed offset
// on, in order, so the index converges to each post's latest version anyway;
// what Fence spares is a transient regression to an older version while it
// catches up (docs/milvus.md, "Versions after a rebalance").
func (ix *Index) Fence() {
	ix.w.mu.Lock()
	ix.w.strongUntil = time.Now().Add(ix.opt.FenceWindow)
	ix.w.insertFrom = time.Now().Add(ix.opt.StaleWindow)
	ix.w.fenceEpoch++
	ix.w.mu.Unlock()
}

// readLevel is the consistency of a round's reads, and the context they run
// under: Bounded; Strong with WriteConsistency Strong; within FenceWindow of
// a Fence, Session at a guarantee timestamp taken from the server after the
// Fence (fence.go), which sees every write acknowledged before the Fence
// without waiting for a time tick on every read (Strong where the server
// gives no timestamp).
func (w *writer) readLevel(ctx context.Context) (context.Context, entity.ConsistencyLevel) {
	if w.ix.opt.WriteConsistency == "Strong" {
		return ctx, entity.ClStrong
	}
	w.mu.Lock()
	fenced, epoch := time.Now().Before(w.strongUntil), w.fenceEpoch
	w.mu.Unlock()
	if !fenced {
		return ctx, entity.ClBounded
	}
	w.fenceMu.Lock()
	defer w.fenceMu.Unlock()
	w.mu.Lock()
	ts, of := w.fenceTS, w.fenceTSOf
	w.mu.Unlock()
	if ts == 0 || of != epoch {
		var err error
		if ts, err = w.ix.serverTimestamp(ctx); err != nil {
			w.ix.log.Warn("milvus: no fence timestamp; this round reads Strong", "err", err)
			return ctx, entity.ClStrong
		}
		w.mu.Lock()
		w.fenceTS, w.fenceTSOf = ts, epoch
		w.mu.Unlock()
	}
	return withGuarantee(ctx, ts), entity.ClSession
}

// Apply writes the changes (see domain.Writer): it returns when Milvus acknowledged
// every write of the round that carried them.
func (ix *Index) Apply(ctx context.Context, changes []domain.Change) ([]domain.Outcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(changes) == 0 {
		return []domain.Outcome{}, nil
	}
	if c := ix.opt.Coder; c != nil {
		for i := range changes {
			for j := range changes[i].Records {
				if r := &changes[i].Records[j]; len(r.Code) == 0 && len(r.Vector) > 0 {
					r.Code = c.Code(r.Vector, r.Modality)
				}
			}
		}
	}
	if err := ix.validate(changes); err != nil {
		return nil, err
	}
	r := &applyReq{changes: changes, out: make([]domain.Outcome, len(changes)), done: make(chan struct{})}
	select {
	case ix.w.reqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-ix.w.ctx.Done():
		return nil, ErrClosed
	}
	select {
	case <-r.done:
		if r.err == nil && ix.opt.Windows != nil {
			// After the round landed: a failure fails the round, and the
			// retried round appends them again.
			if err := ix.opt.Windows.Record(ctx, changes, r.out); err != nil {
				return nil, fmt.Errorf("milvus index: the round's near-duplicate windows: %w", err)
			}
		}
		return r.out, r.err
	case <-ctx.Done():
		// The round goes on; its writes are idempotent, and the caller will not ack.
		return nil, ctx.Err()
	}
}

func (ix *Index) validate(changes []domain.Change) error {
	o := ix.opt
	for i := range changes {
		ch := &changes[i]
		if ch.PostID == "" || len(ch.PostID) > o.MaxPostID {
			return fmt.Errorf("milvus index: post id %q: want 1..%d bytes", ch.PostID, o.MaxPostID)
		}
		if ch.Seq > math.MaxInt64 {
			return fmt.Errorf("milvus index: post %q: version %d is over %d (the versions row holds an int64)", ch.PostID, ch.Seq, int64(math.MaxInt64))
		}
		for j := range ch.Records {
			r := &ch.Records[j]
			switch {
			case len(r.Vector) != o.Dim:
				return fmt.Errorf("milvus index: record %q has dimension %d, want %d", r.PK, len(r.Vector), o.Dim)
			case r.PostID != ch.PostID || r.PK != domain.PrimaryKey(r.PostID, r.Modality) || !r.Modality.Valid():
				return fmt.Errorf("milvus index: record %q does not belong to post %q", r.PK, ch.PostID)
			case len(r.Code) > 0 && o.CodeBits <= 0:
				return fmt.Errorf("milvus index: record %q carries a hash code but milvus.code_bits is off", r.PK)
			case len(r.Code) > 0 && len(r.Code)*8 != o.CodeBits:
				return fmt.Errorf("milvus index: record %q has a %d-bit code, the collection holds %d-bit codes", r.PK, len(r.Code)*8, o.CodeBits)
			case len(r.PDQ) > 0 && len(r.PDQ) != pdqBits/8:
				return fmt.Errorf("milvus index: record %q has a %d-byte PDQ hash, want %d", r.PK, len(r.PDQ), pdqBits/8)
			case len(r.Author) > maxAuthor:
				return fmt.Errorf("milvus index: record %q: author longer than %d bytes", r.PK, maxAuthor)
			case len(r.Labels) > o.MaxLabels:
				return fmt.Errorf("milvus index: record %q has %d labels, the collection holds at most %d (milvus.max_labels)", r.PK, len(r.Labels), o.MaxLabels)
			case len(r.Text) > maxText:
				return fmt.Errorf("milvus index: record %q: text longer than %d bytes", r.PK, maxText)
			case len(r.MediaURL) > maxMediaURL:
				return fmt.Errorf("milvus index: record %q: media URL longer than %d bytes", r.PK, maxMediaURL)
			case len(r.ModelVersion) > maxModelVer:
				return fmt.Errorf("milvus index: record %q: model version longer than %d bytes", r.PK, maxModelVer)
			}
			for _, l := range r.Labels {
				if len(l) > maxLabel {
					return fmt.Errorf("milvus index: record %q: label longer than %d bytes", r.PK, maxLabel)
				}
			}
		}
	}
	return nil
}

// denyMark is the seq of the versions row of a post on the deny-list. Rounds
// read one collection (versions) to learn both a post's version and its
// takedown; the deny rows (shared by every model version) stay the durable
// record the replicated deny-list is seeded from.
const denyMark int64 = -1

// denyMarksRow is the post id of the versions row that says the collection's
// takedowns are marked in it (no post can have it: '~' is not allowed in a
// post id); its seq is denyMarksDone.
const (
	denyMarksRow        = "~deny-marks"
	denyMarksDone int64 = 1
)

// ensureDenyMarks makes sure that every deny row has its mark in this model
// version's versions collection, once per process: a collection made before
// versions rows held the mark (or for a new model version, whose collections
// start empty while the deny rows are shared) has the deny rows copied into
// it, then the marker row written. Until that has succeeded no round reads.
// A takedown written by an older build while this runs is not marked; the
// pipeline's replicated deny-list (the gate before Apply) still refuses the
// post.
func (w *writer) ensureDenyMarks(ctx context.Context) error {
	if w.marked.Load() {
		return nil
	}
	w.markMu.Lock()
	defer w.markMu.Unlock()
	if w.marked.Load() {
		return nil
	}
	ix := w.ix
	// The marker row is old news on every start but the first: a Bounded
	// read finds it without waiting for a time tick; only its absence is
	// confirmed at Strong.
	m, err := ix.queryInt64(ctx, ix.l.posts.name, fPostID, fSeq, []string{denyMarksRow}, entity.ClBounded)
	if err == nil && m[denyMarksRow] != denyMarksDone {
		m, err = ix.queryInt64(ctx, ix.l.posts.name, fPostID, fSeq, []string{denyMarksRow}, entity.ClStrong)
	}
	if err != nil {
		return err
	}
	if m[denyMarksRow] != denyMarksDone {
		var ids []string
		flush := func() error {
			if len(ids) == 0 {
				return nil
			}
			seqs := make([]int64, len(ids))
			for i := range seqs {
				seqs[i] = denyMark
			}
			err := ix.upsert(ctx, ix.l.posts.name, []column.Column{
				column.NewColumnVarChar(fPostID, ids), column.NewColumnInt64(fSeq, seqs), dummyColumn(len(ids))})
			ids = ids[:0]
			return err
		}
		n := 0
		err := ix.DeniedIDs(ctx, func(id string, _ time.Time) error {
			ids = append(ids, id)
			n++
			if len(ids) >= ix.opt.BatchSize {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err == nil {
			err = ix.upsert(ctx, ix.l.posts.name, []column.Column{
				column.NewColumnVarChar(fPostID, []string{denyMarksRow}), column.NewColumnInt64(fSeq, []int64{denyMarksDone}), dummyColumn(1)})
		}
		if err != nil {
			return fmt.Errorf("milvus: marking the deny-list's posts in %s: %w", ix.l.posts.name, err)
		}
		ix.log.Info("marked the deny-list's posts in the versions collection", "collection", ix.l.posts.name, "posts", n)
		if n > 0 {
			// A Bounded read may not show the marks yet: the next rounds
			// read at a timestamp taken after them.
			ix.Fence()
		}
	}
	w.marked.Store(true)
	return nil
}

// postState is what a round knows of a post while it works out outcomes.
type postState struct {
	st      domain.PostState
	newDeny bool
	final   int // 0 untouched, 1 upsert, 2 delete
	records []domain.Record
	present [3]bool // modalities with a record row (read or written lately)
	// held: Milvus holds a versions row of the post, or this writer wrote
	// it within StaleWindow; fresh: its rows are inserted, not upserted.
	held, fresh bool
}

const (
	finalNone = iota
	finalUpsert
	finalDelete
)

func modIndex(m domain.Modality) int {
	switch m {
	case domain.ModalityImage:
		return 0
	case domain.ModalityText:
		return 1
	}
	return 2
}

// round works out the batch's outcomes and writes them. Between the two it
// calls toWrite, which waits for a write slot (false: the writer closed).
func (w *writer) round(ctx context.Context, batch []*applyReq, toWrite func() bool) error {
	ix := w.ix
	w.rounds.Add(1)
	var ids []string
	states := map[string]*postState{}
	for _, r := range batch {
		for i := range r.changes {
			id := r.changes[i].PostID
			if states[id] == nil {
				states[id] = &postState{}
				ids = append(ids, id)
			}
		}
	}
	// 1. what Milvus holds: versions (and takedowns) and the records present,
	// read at Bounded consistency (Strong after a Fence), merged with this
	// writer's own recent writes. One read: a post's versions row holds its
	// version, or denyMark for a post on the deny-list (ensureDenyMarks
	// copied the deny rows written before versions rows held the mark).
	if err := w.ensureDenyMarks(ctx); err != nil {
		return err
	}
	rctx, cl := w.readLevel(ctx)
	if cl != entity.ClBounded {
		w.strongRounds.Add(1)
	}
	readStart := time.Now()
	seqs, err := ix.queryInt64(rctx, ix.l.posts.name, fPostID, fSeq, ids, cl)
	if err != nil {
		return err
	}
	// The records present, for the posts that have a version (a new post has
	// none: most rounds of a live feed skip this read). By primary key (the
	// three a post may have): a key lookup, where a post_id filter would scan
	// the collection.
	present := map[string]bool{}
	var cands []string
	w.mu.Lock()
	for _, id := range ids {
		if s, ok := seqs[id]; (!ok || s == denyMark) && w.recent[id] == nil {
			continue
		}
		for _, m := range domain.Modalities {
			cands = append(cands, domain.PrimaryKey(id, m))
		}
	}
	w.mu.Unlock()
	if len(cands) > 0 {
		pks, err := ix.queryStrings(rctx, ix.l.records.name, fPK, fPK, cands, cl)
		if err != nil {
			return err
		}
		for _, pk := range pks {
			present[pk] = true
		}
	}
	now := time.Now()
	w.readNanos.Add(int64(now.Sub(readStart)))
	w.mu.Lock()
	w.expireRecent(now)
	for id, ps := range states {
		switch s, ok := seqs[id]; {
		case ok && s == denyMark:
			ps.st.Denied = true
		case ok && s >= 0:
			ps.st.Exists, ps.st.Seq = true, uint64(s)
		}
		_, ps.held = seqs[id]
		for _, m := range domain.Modalities {
			ps.present[modIndex(m)] = present[domain.PrimaryKey(id, m)]
		}
		if rp := w.recent[id]; rp != nil {
			ps.held = true
			// Our own write may not be visible to a Bounded read yet: it is
			// the newest state of the post this writer knows.
			switch {
			case !rp.st.Exists:
				ps.st.Exists, ps.st.Seq = false, 0 // our delete
			case !ps.st.Exists || rp.st.Seq >= ps.st.Seq:
				ps.st.Exists, ps.st.Seq = true, rp.st.Seq
			}
			ps.st.Denied = ps.st.Denied || rp.st.Denied
			for i := range ps.present {
				ps.present[i] = ps.present[i] || rp.mods[i]
			}
		}
	}
	w.mu.Unlock()
	// 2. outcomes, in order, by the rule every index applies.
	for _, r := range batch {
		for i := range r.changes {
			ch := &r.changes[i]
			ps := states[ch.PostID]
			out, next, newDeny := domain.Decide(ps.st, ch)
			r.out[i] = out
			ps.st = next
			ps.newDeny = ps.newDeny || newDeny
			switch out {
			case domain.Deleted:
				ps.final, ps.records = finalDelete, nil
			case domain.Applied:
				ps.final, ps.records = finalUpsert, ch.Records
			}
		}
	}
	// 2b. New posts: a post Milvus holds nothing of gets its versions row
	// inserted now, while the rounds ahead write, and its rows are inserted
	// below (an insert costs the server less than an upsert, which first
	// deletes the keys). The versions row lands first, so a round redone after a
	// crash between the two reads the post as held and upserts: a
	// redelivery never inserts a key twice. Within StaleWindow of a Fence
	// (the posts' previous owner may still be writing them) a round upserts
	// all.
	var freshIDs []string
	var freshSeqs []int64
	if !ix.opt.UpsertOnly && w.mayInsert() {
		for _, id := range ids {
			if ps := states[id]; ps.final == finalUpsert && !ps.held && !ps.newDeny && !ps.st.Denied {
				ps.fresh = true
				freshIDs, freshSeqs = append(freshIDs, id), append(freshSeqs, int64(ps.st.Seq))
			}
		}
		if err := parallel(w.versionWrites(ctx, freshIDs, freshSeqs, true)...); err != nil {
			return err
		}
		// From now on the posts are held, whatever happens to the inserts:
		// if this round fails (an insert whose acknowledgement was lost may
		// have landed), the round that retries it must read them as held
		// and upsert, though a Bounded read may not show the versions rows.
		w.remember(freshIDs, states)
		w.insertedPosts.Add(int64(len(freshIDs)))
	}
	// 3. the writes, once a write slot is free (the round holds its posts
	// meanwhile: nothing else of this writer writes them).
	waitStart := time.Now()
	if !toWrite() {
		return ErrClosed
	}
	writeStart := time.Now()
	w.waitNanos.Add(int64(writeStart.Sub(waitStart)))
	defer func() { w.writeNanos.Add(int64(time.Since(writeStart))) }()
	var (
		recs, ins                         []*domain.Record
		delRec, delCode, delPDQ, delPosts []string
		postIDs                           []string
		postSeqs                          []int64
		denyIDs                           []string
	)
	for _, id := range ids {
		ps := states[id]
		switch ps.final {
		case finalDelete:
			for _, m := range domain.Modalities {
				pk := domain.PrimaryKey(id, m)
				delRec, delCode, delPDQ = append(delRec, pk), append(delCode, pk), append(delPDQ, pk)
			}
			if ps.st.Denied {
				// The versions row keeps the takedown: the next round that
				// reads this post sees it without reading the deny rows.
				postIDs = append(postIDs, id)
				postSeqs = append(postSeqs, denyMark)
			} else {
				delPosts = append(delPosts, id)
			}
		case finalUpsert:
			if ps.fresh {
				for j := range ps.records {
					ins = append(ins, &ps.records[j])
				}
				break // nothing to remove; the versions row is written
			}
			has := map[domain.Modality]*domain.Record{}
			for j := range ps.records {
				has[ps.records[j].Modality] = &ps.records[j]
				recs = append(recs, &ps.records[j])
			}
			// Remove what the post had and the new version lacks (a code or PDQ
			// row exists only while its record does: see the write order below).
			for _, m := range domain.Modalities {
				pk := domain.PrimaryKey(id, m)
				if !ps.present[modIndex(m)] {
					continue
				}
				r := has[m]
				if r == nil {
					delRec = append(delRec, pk)
				}
				if r == nil || len(r.Code) == 0 {
					delCode = append(delCode, pk)
				}
				if r == nil || len(r.PDQ) == 0 {
					delPDQ = append(delPDQ, pk)
				}
			}
			postIDs = append(postIDs, id)
			postSeqs = append(postSeqs, int64(ps.st.Seq))
		}
		if ps.newDeny {
			denyIDs = append(denyIDs, id)
		}
	}
	// One phase: every delete and upsert of the round runs at once. Within a
	// round they never touch the same key of a collection (a key is deleted
	// only when the new version lacks it), so their order does not matter to
	// the outcome, and a round costs one write round trip whatever it holds.
	// Through a crash mid-round any subset of the writes may have landed: a
	// round that fails is redone whole by the caller's redelivery (the same
	// version re-applies, and the pipeline retries a failing write until it
	// lands, never dropping it), so what a crash leaves behind is transient.
	// Meanwhile readers drop a code or PDQ hit whose record is missing
	// (hydrate, rerank), and a version row without records reads as a post
	// whose records are absent. Phases with nothing to do make no call.
	l := ix.l
	side := func(t *table) bool { return t != nil && !l.single }
	bs := ix.opt.BatchSize
	var fns []func() error
	if side(l.code) && len(delCode) > 0 {
		fns = append(fns, func() error { return ix.deleteIn(ctx, l.code.name, fPK, delCode) })
	}
	if side(l.pdq) && len(delPDQ) > 0 {
		fns = append(fns, func() error { return ix.deleteIn(ctx, l.pdq.name, fPK, delPDQ) })
	}
	if len(delPosts) > 0 {
		fns = append(fns, func() error { return ix.deleteIn(ctx, l.posts.name, fPostID, delPosts) })
	}
	if len(delRec) > 0 {
		fns = append(fns, func() error { return ix.deleteIn(ctx, l.records.name, fPK, delRec) })
	}
	for _, rs := range []struct {
		recs   []*domain.Record
		insert bool
	}{{recs, false}, {ins, true}} {
		write := ix.upsert
		if rs.insert {
			write = ix.insert
		}
		for from := 0; from < len(rs.recs); from += bs {
			chunk := rs.recs[from:min(from+bs, len(rs.recs))]
			fns = append(fns, func() error {
				if err := write(ctx, l.records.name, ix.recordColumns(chunk)); err != nil {
					return err
				}
				w.rows.Add(int64(len(chunk)))
				return nil
			})
			for _, t := range []struct {
				t     *table
				field string
			}{{l.code, fCode}, {l.pdq, fPDQ}} {
				if !side(t.t) {
					continue
				}
				if cols := ix.sideColumns(chunk, t.field); cols != nil {
					fns = append(fns, func() error { return write(ctx, t.t.name, cols) })
				}
			}
		}
	}
	fns = append(fns, w.versionWrites(ctx, postIDs, postSeqs, false)...)
	deniedAt := now.UnixNano()
	for from := 0; from < len(denyIDs); from += bs {
		to := min(from+bs, len(denyIDs))
		ts := make([]int64, to-from)
		for i := range ts {
			ts[i] = deniedAt
		}
		cols := []column.Column{
			column.NewColumnVarChar(fPostID, denyIDs[from:to]),
			column.NewColumnInt64(fDeniedAt, ts),
			dummyColumn(to - from),
		}
		fns = append(fns, func() error { return ix.upsert(ctx, l.deny.name, cols) })
	}
	if err := parallel(fns...); err != nil {
		return err
	}
	// 4. remember what this round wrote, for the rounds of the next
	// StaleWindow (from now: the writes were acknowledged just now).
	var wrote []string
	for _, id := range ids {
		if ps := states[id]; ps.final != finalNone || ps.newDeny {
			wrote = append(wrote, id)
		}
	}
	w.remember(wrote, states)
	return nil
}

// remember records the posts' states as this writer's latest writes of them,
// for the rounds of the next StaleWindow.
func (w *writer) remember(ids []string, states map[string]*postState) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		ps := states[id]
		rp := &recentPost{st: ps.st, at: now}
		for j := range ps.records {
			rp.mods[modIndex(ps.records[j].Modality)] = true
		}
		w.recent[id] = rp
		w.recentQ = append(w.recentQ, recentEntry{id, rp})
	}
}

// versionWrites returns the writes of the posts' versions rows, in calls of
// at most BatchSize rows: inserts (posts new to Milvus) or upserts.
func (w *writer) versionWrites(ctx context.Context, ids []string, seqs []int64, insert bool) []func() error {
	ix := w.ix
	write := ix.upsert
	if insert {
		write = ix.insert
	}
	var fns []func() error
	for from := 0; from < len(ids); from += ix.opt.BatchSize {
		to := min(from+ix.opt.BatchSize, len(ids))
		cols := []column.Column{
			column.NewColumnVarChar(fPostID, ids[from:to]),
			column.NewColumnInt64(fSeq, seqs[from:to]),
			dummyColumn(to - from),
		}
		fns = append(fns, func() error { return write(ctx, ix.l.posts.name, cols) })
	}
	return fns
}

// mayInsert says whether a round may insert the rows of the posts its read
// found new: not within StaleWindow of a Fence, when the posts' previous
// owner may still be writing them.
func (w *writer) mayInsert() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return time.Now().After(w.insertFrom)
}

// expireRecent forgets the writes older than StaleWindow (w.mu held). The
// queue holds them in the order they were remembered, so it costs what
// expires, not what is remembered.
func (w *writer) expireRecent(now time.Time) {
	n := 0
	for n < len(w.recentQ) && now.Sub(w.recentQ[n].rp.at) > w.ix.opt.StaleWindow {
		if e := w.recentQ[n]; w.recent[e.id] == e.rp {
			delete(w.recent, e.id)
		}
		w.recentQ[n] = recentEntry{}
		n++
	}
	w.recentQ = w.recentQ[n:]
}

// parallel runs the functions concurrently and joins their errors.
func parallel(fns ...func() error) error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, f := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func dummyColumn(n int) column.Column {
	v := make([][]float32, n)
	for i := range v {
		v[i] = []float32{0, 0}
	}
	return column.NewColumnFloatVector(fDummy, 2, v)
}

// encodeTime stores a time as Unix nanoseconds; the zero time as MinInt64 (before
// every Since, so filters treat it as the embedded index does).
func encodeTime(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

func decodeTime(n int64) time.Time {
	if n == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func labelsOf(r *domain.Record) []string {
	if r.Labels == nil {
		return []string{}
	}
	return r.Labels
}

func (ix *Index) recordColumns(recs []*domain.Record) []column.Column {
	n := len(recs)
	var (
		pk, post, mod, author, mv, text, url, thumb, codeHex, pdqHex = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		created, pdqQ                                                = make([]int64, n), make([]int64, n)
		labels                                                       = make([][]string, n)
		vecs                                                         = make([][]float32, n)
		codes, pdqs                                                  = make([][]byte, n), make([][]byte, n)
		hasCode, hasPDQ                                              = make([]bool, n), make([]bool, n)
		matches                                                      = make([]string, n)
		banks                                                        = make([][]string, n)
	)
	codeBytes := max(ix.l.codeBits/8, 0)
	for i, r := range recs {
		matches[i], banks[i] = ix.matchesOf(r)
		pk[i], post[i], mod[i], author[i], mv[i] = r.PK, r.PostID, string(r.Modality), r.Author, r.ModelVersion
		text[i], url[i] = r.Text, r.MediaURL
		if len(r.Thumbnail) > 0 {
			if s := base64.StdEncoding.EncodeToString(r.Thumbnail); len(s) <= maxThumbnail {
				thumb[i] = s
			} else {
				ix.log.Warn("thumbnail too large for milvus, left out", "pk", r.PK, "bytes", len(r.Thumbnail))
			}
		}
		codeHex[i], pdqHex[i] = hex.EncodeToString(r.Code), hex.EncodeToString(r.PDQ)
		created[i], pdqQ[i] = encodeTime(r.CreatedAt), int64(r.PDQQuality)
		labels[i], vecs[i] = labelsOf(r), r.Vector
		hasCode[i], hasPDQ[i] = len(r.Code) > 0, len(r.PDQ) > 0
		codes[i], pdqs[i] = r.Code, r.PDQ
		if !hasCode[i] {
			codes[i] = make([]byte, codeBytes)
		}
		if !hasPDQ[i] {
			pdqs[i] = make([]byte, pdqBits/8)
		}
	}
	cols := []column.Column{
		column.NewColumnVarChar(fPK, pk), column.NewColumnVarChar(fPostID, post), column.NewColumnVarChar(fModality, mod),
		column.NewColumnVarChar(fAuthor, author), column.NewColumnInt64(fCreatedAt, created),
		column.NewColumnVarCharArray(fLabels, labels), column.NewColumnVarChar(fModelVersion, mv),
		column.NewColumnVarChar(fText, text), column.NewColumnVarChar(fMediaURL, url), column.NewColumnVarChar(fThumbnail, thumb),
		column.NewColumnFloatVector(fVector, ix.opt.Dim, vecs),
	}
	if ix.l.schema >= schemaMatches {
		cols = append(cols, column.NewColumnVarChar(fMatches, matches), column.NewColumnVarCharArray(fMatchedBanks, banks))
	}
	if ix.l.codeBits > 0 {
		cols = append(cols, column.NewColumnVarChar(fCodeHex, codeHex))
	}
	if !ix.opt.DisablePDQ {
		cols = append(cols, column.NewColumnVarChar(fPDQHex, pdqHex), column.NewColumnInt64(fPDQQuality, pdqQ))
	}
	if ix.l.single {
		if ix.l.codeBits > 0 {
			cols = append(cols, column.NewColumnBool(fHasCode, hasCode), column.NewColumnBinaryVector(fCode, ix.l.codeBits, codes))
		}
		if !ix.opt.DisablePDQ {
			cols = append(cols, column.NewColumnBool(fHasPDQ, hasPDQ), column.NewColumnBinaryVector(fPDQ, pdqBits, pdqs))
		}
	}
	return cols
}

// sideColumns builds the rows of the code or PDQ collection (split layout) for the
// records that carry one; nil when none does.
func (ix *Index) sideColumns(recs []*domain.Record, field string) []column.Column {
	var pk, post, mod, author []string
	var created, quality []int64
	var labels, banks [][]string
	var vecs [][]byte
	for _, r := range recs {
		v := r.Code
		if field == fPDQ {
			v = r.PDQ
		}
		if len(v) == 0 {
			continue
		}
		pk, post, mod, author = append(pk, r.PK), append(post, r.PostID), append(mod, string(r.Modality)), append(author, r.Author)
		created, labels, vecs = append(created, encodeTime(r.CreatedAt)), append(labels, labelsOf(r)), append(vecs, v)
		quality = append(quality, int64(r.PDQQuality))
		if ix.l.schema >= schemaMatches {
			_, b := ix.matchesOf(r)
			banks = append(banks, b)
		}
	}
	if len(pk) == 0 {
		return nil
	}
	dim := ix.l.codeBits
	if field == fPDQ {
		dim = pdqBits
	}
	cols := []column.Column{
		column.NewColumnVarChar(fPK, pk), column.NewColumnVarChar(fPostID, post), column.NewColumnVarChar(fModality, mod),
		column.NewColumnVarChar(fAuthor, author), column.NewColumnInt64(fCreatedAt, created),
		column.NewColumnVarCharArray(fLabels, labels), column.NewColumnBinaryVector(field, dim, vecs),
	}
	if field == fPDQ {
		cols = append(cols, column.NewColumnInt64(fPDQQuality, quality))
	}
	if ix.l.schema >= schemaMatches {
		cols = append(cols, column.NewColumnVarCharArray(fMatchedBanks, banks))
	}
	return cols
}

// matchesOf returns what a record's row holds of its bank matches (schema 2):
// the matches as JSON ("" without any) and the distinct banks, for filters.
// Matches past maxMatches bytes of JSON, or banks past maxBanks, are left out
// (logged): the events still carry every match.
func (ix *Index) matchesOf(r *domain.Record) (string, []string) {
	if ix.l.schema < schemaMatches || len(r.Matches) == 0 {
		return "", []string{}
	}
	ms := r.Matches
	var js []byte
	for {
		js, _ = json.Marshal(ms) // plain structs: cannot fail
		if len(js) <= maxMatches || len(ms) == 0 {
			break
		}
		ms = ms[:len(ms)/2]
	}
	if len(ms) < len(r.Matches) {
		ix.log.Warn("a record's bank matches are too many for its milvus row; the first are kept", "pk", r.PK, "matches", len(r.Matches), "kept", len(ms))
	}
	banks := []string{}
	for _, m := range ms {
		if !slices.Contains(banks, m.Bank) && len(banks) < maxBanks && len(m.Bank) <= maxBankName {
			banks = append(banks, m.Bank)
		}
	}
	if len(ms) == 0 {
		return "", banks
	}
	return string(js), banks
}

// insert writes rows whose keys the collection does not hold (see
// Options.UpsertOnly). It is not retried: an insert whose acknowledgement
// was lost (a dropped connection) may have landed, and a second one would
// hold the keys twice; the round fails instead, and the round that retries
// its posts reads them as held (remember) and upserts.
func (ix *Index) insert(ctx context.Context, coll string, cols []column.Column) error {
	o := ix.opt
	o.Retries = 0
	return retry(ctx, o, "insert into "+coll, o.CallTimeout, func(ctx context.Context) error {
		_, err := ix.c.Insert(ctx, milvusclient.NewColumnBasedInsertOption(coll, cols...), noRetry)
		return err
	}, nil)
}

func (ix *Index) upsert(ctx context.Context, coll string, cols []column.Column) error {
	return ix.call(ctx, "upsert into "+coll, func(ctx context.Context) error {
		_, err := ix.c.Upsert(ctx, milvusclient.NewColumnBasedInsertOption(coll, cols...), noRetry)
		return err
	})
}

// inChunk is how many values one `in [...]` expression carries.
const inChunk = 1000

func quoteList(vals []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(v))
	}
	b.WriteByte(']')
	return b.String()
}

func (ix *Index) deleteIn(ctx context.Context, coll, field string, vals []string) error {
	for from := 0; from < len(vals); from += inChunk {
		expr := field + " in " + quoteList(vals[from:min(from+inChunk, len(vals))])
		err := ix.call(ctx, "delete from "+coll, func(ctx context.Context) error {
			_, err := ix.c.Delete(ctx, milvusclient.NewDeleteOption(coll).WithExpr(expr), noRetry)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// queryInt64 returns key → value of an int64 field for the keys present.
func (ix *Index) queryInt64(ctx context.Context, coll, keyField, valField string, keys []string, cl entity.ConsistencyLevel) (map[string]int64, error) {
	out := map[string]int64{}
	for from := 0; from < len(keys); from += inChunk {
		chunk := keys[from:min(from+inChunk, len(keys))]
		var rs milvusclient.ResultSet
		err := ix.call(ctx, "query "+coll, func(ctx context.Context) error {
			var err error
			rs, err = ix.c.Query(ctx, milvusclient.NewQueryOption(coll).WithFilter(keyField+" in "+quoteList(chunk)).
				WithOutputFields(keyField, valField).WithConsistencyLevel(cl), noRetry)
			return err
		})
		if err != nil {
			return nil, err
		}
		kc, vc := rs.GetColumn(keyField), rs.GetColumn(valField)
		if kc == nil || vc == nil {
			if rs.ResultCount == 0 {
				continue
			}
			return nil, fmt.Errorf("milvus: query %s returned no %s/%s column", coll, keyField, valField)
		}
		for i := 0; i < kc.Len(); i++ {
			k, err := kc.GetAsString(i)
			if err != nil {
				return nil, err
			}
			v, err := vc.GetAsInt64(i)
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
	}
	return out, nil
}

// queryStrings returns the values of field out of the rows whose keyField is one
// of keys.
func (ix *Index) queryStrings(ctx context.Context, coll, keyField, out string, keys []string, cl entity.ConsistencyLevel) ([]string, error) {
	var vals []string
	for from := 0; from < len(keys); from += inChunk {
		chunk := keys[from:min(from+inChunk, len(keys))]
		var rs milvusclient.ResultSet
		err := ix.call(ctx, "query "+coll, func(ctx context.Context) error {
			var err error
			rs, err = ix.c.Query(ctx, milvusclient.NewQueryOption(coll).WithFilter(keyField+" in "+quoteList(chunk)).
				WithOutputFields(out).WithConsistencyLevel(cl), noRetry)
			return err
		})
		if err != nil {
			return nil, err
		}
		c := rs.GetColumn(out)
		if c == nil {
			continue
		}
		for i := 0; i < c.Len(); i++ {
			v, err := c.GetAsString(i)
			if err != nil {
				return nil, err
			}
			vals = append(vals, v)
		}
	}
	return vals, nil
}

// IsDenied reports whether the post id is on the index's deny rows (Strong:
// an operator's check; the pipeline and the query service use the replicated
// deny-list, internal/denylist).
func (ix *Index) IsDenied(ctx context.Context, postID string) (bool, error) {
	m, err := ix.queryInt64(ctx, ix.l.deny.name, fPostID, fDeniedAt, []string{postID}, entity.ClStrong)
	if err != nil {
		return false, err
	}
	_, ok := m[postID]
	return ok, nil
}

// DeniedIDs calls fn for every post id of the deny rows, with the time it was
// denied (internal/denylist seeds a new replicated list from it). Pages of
// 16384 rows follow the primary key (Milvus returns a limited query's rows in
// key order; a page that is not is an error, never a silent skip).
func (ix *Index) DeniedIDs(ctx context.Context, fn func(postID string, at time.Time) error) error {
	const page = 16384
	last := ""
	for {
		expr := fPostID + ` != ""`
		if last != "" {
			expr = fPostID + " > " + strconv.Quote(last)
		}
		var rs milvusclient.ResultSet
		err := ix.call(ctx, "query "+ix.l.deny.name, func(ctx context.Context) error {
			var err error
			rs, err = ix.c.Query(ctx, milvusclient.NewQueryOption(ix.l.deny.name).WithFilter(expr).
				WithOutputFields(fPostID, fDeniedAt).WithLimit(page).WithConsistencyLevel(entity.ClStrong), noRetry)
			return err
		})
		if err != nil {
			return err
		}
		kc, vc := rs.GetColumn(fPostID), rs.GetColumn(fDeniedAt)
		if kc == nil || kc.Len() == 0 {
			return nil
		}
		for i := 0; i < kc.Len(); i++ {
			id, err := kc.GetAsString(i)
			if err != nil {
				return err
			}
			if id <= last {
				return fmt.Errorf("milvus: deny rows came back out of key order (%q after %q): cannot page through them", id, last)
			}
			at, err := vc.GetAsInt64(i)
			if err != nil {
				return err
			}
			if err := fn(id, time.Unix(0, at).UTC()); err != nil {
				return err
			}
			last = id
		}
		if kc.Len() < page {
			return nil
		}
	}
}

// DeleteAuthor removes every post of an author (a takedown), deny-listing each when
// deny is set, and returns the post ids it removed. It goes through Apply, so the
// versions and the deny-list stay consistent.
func (ix *Index) DeleteAuthor(ctx context.Context, author string, deny bool) ([]string, error) {
	var removed []string
	seen := map[string]bool{}
	for round := 0; round < 1000; round++ {
		var rs milvusclient.ResultSet
		err := ix.call(ctx, "query "+ix.l.records.name, func(ctx context.Context) error {
			var err error
			rs, err = ix.c.Query(ctx, milvusclient.NewQueryOption(ix.l.records.name).
				WithFilter(fAuthor+" == "+strconv.Quote(author)).WithOutputFields(fPostID).
				WithLimit(4096).WithConsistencyLevel(entity.ClStrong), noRetry)
			return err
		})
		if err != nil {
			return removed, err
		}
		col := rs.GetColumn(fPostID)
		if col == nil || col.Len() == 0 {
			return removed, nil
		}
		var changes []domain.Change
		for i := 0; i < col.Len(); i++ {
			id, _ := col.GetAsString(i)
			if !seen[id] {
				seen[id] = true
				changes = append(changes, domain.Change{PostID: id, Delete: true, Deny: deny})
			}
		}
		if len(changes) == 0 {
			return removed, fmt.Errorf("milvus: records of author %q are still visible after their deletion", author)
		}
		if _, err := ix.Apply(ctx, changes); err != nil {
			return removed, err
		}
		for _, c := range changes {
			removed = append(removed, c.PostID)
		}
	}
	return removed, fmt.Errorf("milvus: author %q has too many posts for one call", author)
}
