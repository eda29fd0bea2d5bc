package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/xmodal/xmodal/domain"
)

// scanChunk is how many records ScanRecords reads per read transaction.
const scanChunk = 256

// ScanRecords calls fn for every stored record (with its vector, text and
// media URL; thumbnails and windows left out) in primary-key order after
// the key after. Records are read scanChunk at a time, each chunk in its
// own read transaction that is closed before fn runs, so fn may write to
// the index (a bbolt write that grows the file waits for open reads).
func (ix *Index) ScanRecords(ctx context.Context, after string, fn func(r *domain.Record) error) error {
	next := []byte(after)
	started := after == ""
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var chunk []*domain.Record
		err := ix.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketRecords).Cursor()
			var k, v []byte
			if started {
				k, v = c.First()
				started = false
			} else {
				k, v = c.Seek(next)
				if k != nil && bytes.Equal(k, next) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(chunk) < scanChunk; k, v = c.Next() {
				r, err := decodeRecord(v)
				if err != nil {
					return fmt.Errorf("record %q: %w", k, err)
				}
				r.Thumbnail, r.Windows = nil, nil
				chunk = append(chunk, r)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("embedded index: scan: %w", err)
		}
		if len(chunk) == 0 {
			return nil
		}
		for _, r := range chunk {
			if err := fn(r); err != nil {
				return err
			}
		}
		next = []byte(chunk[len(chunk)-1].PK)
	}
}

// AddMatches adds bank matches to the posts' stored records (every record
// of each post, as ingest does) in one durable transaction, and to what
// filters read in memory. Matches already there (same bank and entry) are
// not added again; posts not indexed are skipped.
func (ix *Index) AddMatches(ctx context.Context, posts []domain.PostMatches) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	type upd struct {
		pk      string
		matches []domain.RecordMatch
	}
	var upds []upd
	err := ix.db.Update(func(tx *bolt.Tx) error {
		recs, postsB := tx.Bucket(bucketRecords), tx.Bucket(bucketPosts)
		for _, p := range posts {
			v := postsB.Get([]byte(p.PostID))
			if v == nil {
				continue
			}
			var pe postEntry
			if err := json.Unmarshal(v, &pe); err != nil {
				return fmt.Errorf("post %q entry: %w", p.PostID, err)
			}
			for _, pk := range pe.PKs {
				old := recs.Get([]byte(pk))
				if old == nil {
					continue
				}
				r, postThumb, err := decodeStored(old)
				if err != nil {
					return fmt.Errorf("record %q: %w", pk, err)
				}
				n := len(r.Matches)
				for _, m := range p.Matches {
					if !slices.ContainsFunc(r.Matches, func(x domain.RecordMatch) bool { return x.Bank == m.Bank && x.EntryID == m.EntryID }) {
						r.Matches = append(r.Matches, m)
					}
				}
				if len(r.Matches) == n {
					continue
				}
				b, err := encodeStored(r, postThumb)
				if err != nil {
					return err
				}
				if err := recs.Put([]byte(pk), b); err != nil {
					return err
				}
				upds = append(upds, upd{pk, r.Matches})
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("embedded index: add matches: %w", err)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, u := range upds {
		l, ok := ix.slotOf[u.pk]
		if !ok {
			continue
		}
		s := ix.segs[l.seg]
		old := s.recs[l.pos]
		m := *old // a copy: a hit built before holds the old one
		m.Matches = nil
		for _, x := range u.matches {
			if !slices.ContainsFunc(m.Matches, func(y domain.RecordMatch) bool { return y.Bank == x.Bank }) {
				m.Matches = append(m.Matches, domain.RecordMatch{Bank: ix.intern(x.Bank)})
			}
		}
		s.recs[l.pos] = &m
	}
	return nil
}

var (
	_ domain.RecordScanner = (*Index)(nil)
	_ domain.MatchRecorder = (*Index)(nil)
)
