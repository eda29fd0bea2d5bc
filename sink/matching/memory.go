package matching

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// MemoryBucket is the JetStream key-value bucket of what each post matched
// last.
const MemoryBucket = "XMODAL_MATCH_MEMORY"

// Memo is what one post matched last: the version whose matches it holds and
// their (bank, entry) keys ("<bank>/<entry id>"), sorted.
type Memo struct {
	PostID  string   `json:"post_id"`
	Version uint64   `json:"version"`
	Entries []string `json:"entries"`
}

// Memory remembers, per post, the bank entries its last matched version
// matched, so that an edit whose matches did not change adds no event
// (Writer). It lives in a JetStream key-value bucket shared by every
// indexer; a watcher keeps the set of posts that have a memo, so that a post
// that matches nothing costs no lookup unless it had matched before.
type Memory struct {
	kv      jetstream.KeyValue
	timeout time.Duration
	stop    context.CancelFunc
	done    chan struct{}

	mu sync.RWMutex
	// known holds the keys with a memo and the revision of their latest
	// put, from the watcher and from this process's own writes (which the
	// watcher reports a moment later: an older delete it reports after a
	// newer put does not hide the memo).
	known map[string]uint64
}

// MemoryConfig configures the bucket.
type MemoryConfig struct {
	Replicas int
	Timeout  time.Duration // bounds each request (default 10s)
}

// OpenMemory creates or opens the bucket and loads the keys it holds (its
// watcher then follows every indexer's changes).
func OpenMemory(ctx context.Context, js jetstream.JetStream, cfg MemoryConfig) (*Memory, error) {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(rctx, jetstream.KeyValueConfig{Bucket: MemoryBucket,
		Description: "xmodal: per post, the bank entries its last matched version matched",
		History:     1, Storage: jetstream.FileStorage, Replicas: cfg.Replicas})
	if err != nil {
		return nil, fmt.Errorf("matching: memory bucket %s: %w", MemoryBucket, err)
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w, err := kv.WatchAll(wctx, jetstream.MetaOnly())
	if err != nil {
		stop()
		return nil, fmt.Errorf("matching: watch %s: %w", MemoryBucket, err)
	}
	m := &Memory{kv: kv, timeout: cfg.Timeout, stop: stop, done: make(chan struct{}), known: map[string]uint64{}}
	loaded := make(chan struct{})
	go func() {
		defer close(m.done)
		defer w.Stop()
		initial := true
		for e := range w.Updates() {
			if e == nil {
				if initial {
					initial = false
					close(loaded)
				}
				continue
			}
			m.mu.Lock()
			if rev, k := e.Revision(), e.Key(); rev > m.known[k] {
				if e.Operation() == jetstream.KeyValuePut {
					m.known[k] = rev
				} else {
					delete(m.known, k)
				}
			}
			m.mu.Unlock()
		}
		if initial {
			close(loaded)
		}
	}()
	select {
	case <-loaded:
	case <-ctx.Done():
		m.Close()
		return nil, ctx.Err()
	}
	return m, nil
}

// Close stops the watcher.
func (m *Memory) Close() {
	m.stop()
	<-m.done
}

// memoKey is a post's key in the bucket: post ids may hold characters keys
// cannot.
func memoKey(postID string) string {
	h := sha256.Sum256([]byte(postID))
	return "p." + hex.EncodeToString(h[:16])
}

// Known says whether the post had a memo when the watcher last heard (a
// change by another indexer a moment ago may not be seen yet).
func (m *Memory) Known(postID string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.known[memoKey(postID)]
	return ok
}

// Last reads the post's memo from the bucket (nil when it has none).
func (m *Memory) Last(ctx context.Context, postID string) (*Memo, error) {
	rctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	e, err := m.kv.Get(rctx, memoKey(postID))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("match memory of %q: %w", postID, err)
	}
	var mo Memo
	if err := json.Unmarshal(e.Value(), &mo); err != nil {
		return nil, fmt.Errorf("match memory of %q: %w", postID, err)
	}
	return &mo, nil
}

// Remember records memos (one with no entries forgets its post); it returns
// once every one is durable.
func (m *Memory) Remember(ctx context.Context, memos []Memo) error {
	rctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(memos))
	for i, mo := range memos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := memoKey(mo.PostID)
			if len(mo.Entries) == 0 {
				err := m.kv.Delete(rctx, k)
				if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
					errs[i] = fmt.Errorf("forget matches of %q: %w", mo.PostID, err)
					return
				}
				m.mu.Lock()
				delete(m.known, k) // a stale put reported later costs one lookup, nothing more
				m.mu.Unlock()
				return
			}
			b, err := json.Marshal(mo)
			var rev uint64
			if err == nil {
				rev, err = m.kv.Put(rctx, k, b)
			}
			if err != nil {
				errs[i] = fmt.Errorf("remember matches of %q: %w", mo.PostID, err)
				return
			}
			m.mu.Lock()
			m.known[k] = max(m.known[k], rev)
			m.mu.Unlock()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// entryKey is a match's key in a memo.
func entryKey(bank, entryID string) string { return bank + "/" + entryID }

// sameEntries says whether two sorted key lists are equal.
func sameEntries(a, b []string) bool { return slices.Equal(a, b) }
