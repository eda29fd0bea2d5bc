package clusters

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
)

// Signer turns a post's records into the signature it joins a cluster with.
// Every index that keeps clusters (the embedded index, the shared clusters
// of a Milvus deployment) signs with it, so that they link the same posts.
type Signer struct {
	// MinQuality: image hashes of lower PDQ quality join no cluster.
	MinQuality int
	// Dihedral, Regions and Windows add the record's canonical dihedral
	// hashes, content rectangles' hashes and stored windows (see
	// sink/embedded.ClusterOptions); Text signs text-only posts by their
	// normalised text.
	Dihedral, Regions, Windows, Text bool
}

// Image is the signature an image joins its cluster with: its PDQ hash h,
// its canonical dihedral hashes (with Dihedral) and the hashes of its
// content rectangles (with Regions). A framed image (domain.Record.
// PDQFramed: a screenshot, whose whole-image hash is mostly its frame's)
// links by its regions alone, and with none (its picture too flat to hash)
// joins no cluster: Image returns nil. With Windows it is a Union
// signature: that PDQ signature and the stored windows (empty when the
// record has none).
func (s Signer) Image(h, canon, regions []byte, framed bool, windows []byte) []byte {
	if !s.Dihedral {
		canon = nil
	}
	var sig []byte
	switch {
	case !s.Regions:
		sig = PDQSignature(h, canon)
	case framed && len(regions) >= domain.PDQBytes:
		sig = PDQSignature(regions[:domain.PDQBytes], regions[domain.PDQBytes:])
	case framed:
		// The whole-image hash is the frame's: two screenshots of
		// different dark pictures in one app lie within the threshold.
		return nil
	default:
		sig = PDQSignature(h, canon, regions)
	}
	if s.Windows {
		return UnionSignature(sig, windows)
	}
	return sig
}

// Record is the signature an image record joins with (nil: it joins none:
// not an image, no PDQ hash, a hash of low quality, or a framed image
// without a picture to hash).
func (s Signer) Record(r *domain.Record) []byte {
	if r.Modality != domain.ModalityImage || len(r.PDQ) != domain.PDQBytes || r.PDQQuality < s.MinQuality {
		return nil
	}
	return s.Image(r.PDQ, r.PDQCanonical, r.PDQRegions, r.PDQFramed, r.Windows)
}

// TextOnly is the signature a text-only post joins a text cluster with (nil:
// text clusters are off, or the text normalises to nothing).
func (s Signer) TextOnly(text string) []byte {
	if !s.Text {
		return nil
	}
	return TextSignature(banks.NormalizeText(text))
}

// Action is what one change does to the clusters: its post joins with Sig
// at At, or (Leave) leaves its cluster.
type Action struct {
	Post  string
	Leave bool
	At    time.Time
	Sig   []byte
}

// Action returns what an index's outcome of a change does to the clusters
// (false: nothing, a stale or denied change). A deleted post leaves; an
// applied version joins with its image record's signature, or a text-only
// post with its text's, and a version with neither leaves.
func (s Signer) Action(ch *domain.Change, out domain.Outcome) (Action, bool) {
	switch out {
	case domain.Deleted:
		return Action{Post: ch.PostID, Leave: true}, true
	case domain.Applied:
	default:
		return Action{}, false
	}
	var text *domain.Record
	hasImage := false
	for j := range ch.Records {
		r := &ch.Records[j]
		if sig := s.Record(r); sig != nil {
			return Action{Post: ch.PostID, At: r.CreatedAt, Sig: sig}, true
		}
		switch r.Modality {
		case domain.ModalityImage:
			hasImage = true
		case domain.ModalityText:
			text = r
		}
	}
	if text != nil && !hasImage {
		if sig := s.TextOnly(text.Text); sig != nil {
			return Action{Post: ch.PostID, At: text.CreatedAt, Sig: sig}, true
		}
	}
	return Action{Post: ch.PostID, Leave: true}, true
}

// Do applies an action in t.
func (t *Txn) Do(a Action) error {
	if a.Leave {
		return t.Leave(a.Post)
	}
	_, err := t.Join(a.Post, a.At, a.Sig)
	return err
}

// MaxPage bounds a page of cluster members (xmodal.v1.cluster).
const MaxPage = 1000

// PageQuery resolves a cluster query against s: the cluster's id (the
// post's cluster when the query names a post) and the decoded cursor.
// Errors wrap domain.ErrInvalidQuery or domain.ErrNotFound.
func (s *Store) PageQuery(q domain.ClusterQuery) (id uint64, cursor []byte, err error) {
	if q.Limit <= 0 || q.Limit > MaxPage {
		return 0, nil, fmt.Errorf("%w: limit %d is outside 1..%d", domain.ErrInvalidQuery, q.Limit, MaxPage)
	}
	id = q.ID
	if q.PostID != "" {
		if id = s.ClusterOf(q.PostID); id == 0 {
			return 0, nil, fmt.Errorf("%w: post %q is in no cluster", domain.ErrNotFound, q.PostID)
		}
	}
	if q.Cursor != "" {
		if cursor, err = hex.DecodeString(q.Cursor); err != nil {
			return 0, nil, fmt.Errorf("%w: cursor %q is not one this cluster's pages gave", domain.ErrInvalidQuery, q.Cursor)
		}
	}
	return id, cursor, nil
}

// PageError maps an error of Members for cluster id and cursor to the
// domain's errors (nil stays nil).
func PageError(err error, id uint64, cursor string) error {
	switch {
	case errors.Is(err, ErrNoCluster):
		return fmt.Errorf("%w: cluster %d", domain.ErrNotFound, id)
	case errors.Is(err, ErrBadCursor):
		return fmt.Errorf("%w: cursor %q is not one of cluster %d's pages", domain.ErrInvalidQuery, cursor, id)
	}
	return err
}
