package embedded

import (
	"encoding/binary"
	"encoding/json"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/xmodal/xmodal/domain"
)

// What memory holds of a record is what ranking and filtering read: the
// vector, code and PDQ hash in the segment's arrays, and the primary key,
// post id (a prefix of the key, sharing its bytes), author and model
// version (interned), creation time and labels. What only a reply shows,
// the text, the media URL, the preprocessing mode and the thumbnail, stays
// in the store and is read for the hits of a reply (display). A post's
// thumbnail is stored once, in the thumbs bucket under the post id, however
// many records (image, text, fused) the post has.

var bucketThumbs = []byte("thumbs")

// slim returns the in-memory copy of r (vector, code and PDQ left out; they
// live in the segment's arrays), with its strings interned; callers hold mu
// for writing (or own the index, while loading).
func (ix *Index) slim(r *domain.Record) *domain.Record {
	m := &domain.Record{PK: r.PK, Modality: r.Modality, CreatedAt: r.CreatedAt, PDQQuality: r.PDQQuality}
	if (len(r.PDQRegions) > 0 || r.PDQFramed) && r.Modality == domain.ModalityImage {
		// Clusters link by them (rebuilds, the batch job); most photos
		// have none. A framed image without regions joins no cluster.
		m.PDQRegions, m.PDQFramed = slices.Clone(r.PDQRegions), r.PDQFramed
	}
	if len(r.PostID) < len(r.PK) && r.PK[:len(r.PostID)] == r.PostID {
		m.PostID = r.PK[:len(r.PostID)]
	} else {
		m.PostID = r.PostID
	}
	if ix.cl != nil {
		m.Cluster = ix.cl.ClusterOf(r.PostID)
	}
	if len(r.Matches) > 0 {
		// Filters read the banks (matched_banks); a reply's matches come
		// from the store (display).
		m.Matches = make([]domain.RecordMatch, 0, len(r.Matches))
		for _, x := range r.Matches {
			if !slices.ContainsFunc(m.Matches, func(y domain.RecordMatch) bool { return y.Bank == x.Bank }) {
				m.Matches = append(m.Matches, domain.RecordMatch{Bank: ix.intern(x.Bank)})
			}
		}
	}
	m.Author = ix.intern(r.Author)
	m.ModelVersion = ix.intern(r.ModelVersion)
	if len(r.Labels) > 0 {
		m.Labels = make([]string, len(r.Labels))
		for i, l := range r.Labels {
			m.Labels[i] = ix.intern(l)
		}
	}
	return m
}

// KeepsMatches: records keep their bank matches, and filters read them
// (domain.MatchKeeper).
func (ix *Index) KeepsMatches() bool { return true }

var _ domain.MatchKeeper = (*Index)(nil)

// intern returns the index's copy of s.
func (ix *Index) intern(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := ix.strs[s]; ok {
		return v
	}
	ix.strs[s] = s
	return s
}

// storedMeta is the part of a stored record that display reads.
type storedMeta struct {
	Text       string `json:"text,omitempty"`
	MediaURL   string `json:"media_url,omitempty"`
	Thumbnail  []byte `json:"thumbnail,omitempty"` // a record's own thumbnail (or one written before the thumbs bucket)
	Preprocess string `json:"preprocess,omitempty"`
	PostThumb  bool   `json:"post_thumb,omitempty"`
	// Matches are the bank entries the post matched at ingest.
	Matches []domain.RecordMatch `json:"matches,omitempty"`
}

// readMeta decodes the JSON part of a stored record (not its vector).
func readMeta(b []byte) (storedMeta, error) {
	var m storedMeta
	if len(b) < 2 || b[0] != recordFormat {
		return m, errBadRecord
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || uint64(len(b)-1-k) < n {
		return m, errBadRecord
	}
	err := json.Unmarshal(b[1+k:1+k+int(n)], &m)
	return m, err
}

// display fills what a reply shows (text, media URL, thumbnail) into hits
// and near-duplicate hits, from the store, in one read transaction. A hit
// whose record was deleted meanwhile keeps what memory had.
func (ix *Index) display(hits []domain.Hit, nd []domain.NearDupHit) error {
	if len(hits) == 0 && len(nd) == 0 {
		return nil
	}
	ix.clusterRefs(hits)
	for i := range nd {
		ix.clusterRef(&nd[i].Hit)
	}
	return ix.db.View(func(tx *bolt.Tx) error {
		recs, thumbs := tx.Bucket(bucketRecords), tx.Bucket(bucketThumbs)
		fill := func(h *domain.Hit) {
			v := recs.Get([]byte(h.PK))
			if v == nil {
				return
			}
			m, err := readMeta(v)
			if err != nil {
				return
			}
			h.Text, h.MediaURL = m.Text, m.MediaURL
			h.Thumbnail, h.Matches = m.Thumbnail, m.Matches
			if m.PostThumb {
				if t := thumbs.Get([]byte(h.PostID)); t != nil {
					h.Thumbnail = append([]byte(nil), t...) // bbolt's bytes live only in the transaction
				}
			}
		}
		for i := range hits {
			fill(&hits[i])
		}
		for i := range nd {
			fill(&nd[i].Hit)
		}
		return nil
	})
}

// full fills r's display fields (text, media URL, preprocessing mode,
// thumbnail) from the store, in tx.
func full(tx *bolt.Tx, r *domain.Record) {
	v := tx.Bucket(bucketRecords).Get([]byte(r.PK))
	if v == nil {
		return
	}
	m, err := readMeta(v)
	if err != nil {
		return
	}
	r.Text, r.MediaURL, r.Preprocess, r.Thumbnail, r.Matches = m.Text, m.MediaURL, m.Preprocess, m.Thumbnail, m.Matches
	if m.PostThumb {
		if t := tx.Bucket(bucketThumbs).Get([]byte(r.PostID)); t != nil {
			r.Thumbnail = append([]byte(nil), t...)
		}
	}
}
