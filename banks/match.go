package banks

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/internal/hamming"
)

// Query is a lookup against the banks: any combination of signals; every
// entry of an enabled bank that matches one of them is returned.
type Query struct {
	// PDQ holds an image's eight dihedral hashes (pdq.FromImageDihedral,
	// in pdq.Dihedral order: rotated and mirrored copies match too), or
	// one hash (a PDQ hex query, matched as given: the variants come from
	// the image's DCT, not from its hash). At most 8.
	PDQ []pdq.Hash
	// MD5 is the hex MD5 of the media file's bytes.
	MD5 string
	// Text is matched as a text signal (NormalizeText), and the URLs in
	// it (ExtractURLs) as url signals.
	Text string
	// URLs are matched as url signals (NormalizeURL); an image's URL goes
	// here.
	URLs []string
	// Vector is an embedding of the query content by ModelVersion, of
	// Modality "image" or "text"; it matches embedding entries of the same
	// model version at the bank's threshold for the pair of modalities.
	Vector       []float32
	Modality     string
	ModelVersion string
	// Banks restricts the lookup to these banks (empty: all). Disabled
	// banks never match.
	Banks []string
}

// Match is an entry that matched.
type Match struct {
	Bank       string     `json:"bank"`
	Labels     []string   `json:"labels,omitempty"`
	Action     Action     `json:"action"`
	EntryID    string     `json:"entry_id"`
	SignalType SignalType `json:"signal_type"`
	// Signal is the entry's canonical value (texts cut to 256 bytes).
	Signal string `json:"signal"`
	// Distance is the PDQ Hamming distance; Transform the dihedral
	// variant of an image query that matched (original, rotate90, ...).
	Distance  *int   `json:"distance,omitempty"`
	Transform string `json:"transform,omitempty"`
	// Score is the cosine similarity of an embedding match, Modality the
	// entry's modality (text: a written concept; image: an exemplar).
	Score    *float32 `json:"score,omitempty"`
	Modality string   `json:"modality,omitempty"`
	Tags     []string `json:"tags,omitempty"`
}

// MaxQueryURLs bounds the URLs of a query.
const MaxQueryURLs = 256

// Match returns every match of q across the enabled banks (or q.Banks),
// ordered by bank, signal type, distance (ascending) or score
// (descending), then entry id. A query without any signal is ErrNoSignal;
// a malformed part (a bad MD5, more than 8 PDQ hashes, a vector without
// its model version) is ErrInvalidQuery naming it. A text or URL that
// does not normalise simply matches nothing.
func (s *State) Match(ctx context.Context, q Query) ([]Match, error) {
	pq, err := prepare(q)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := q.Banks
	if len(names) == 0 {
		names = make([]string, 0, len(s.banks))
		for n := range s.banks {
			names = append(names, n)
		}
		slices.Sort(names)
	}
	enabled, err := s.enabled(names, len(q.Banks) > 0)
	if err != nil {
		return nil, err
	}
	var out []Match
	for _, b := range enabled {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out, err = b.match(&pq, out, true)
		if err != nil {
			return nil, err
		}
	}
	sortMatches(out)
	return out, nil
}

// MatchResult is the answer to one query of MatchAll: what Match returns
// for it, or the error Match returns for a malformed query.
type MatchResult struct {
	Matches []Match
	Err     error
}

// MatchAll matches many queries at once (a write batch's posts): out[i] is
// exactly what Match(ctx, qs[i]) returns, matches or error (a malformed
// query fails alone). The embedding entries are scanned once for all the
// queries' vectors, a block of rows at a time, instead of once per query:
// at 10,000 concepts of 512 dimensions the rows (20 MB) do not stay in the
// cache between queries. The returned error is the context's, or a bank
// of a query's Banks that does not exist (as Match).
func (s *State) MatchAll(ctx context.Context, qs []Query) ([]MatchResult, error) {
	out := make([]MatchResult, len(qs))
	pqs := make([]prepared, len(qs))
	for i, q := range qs {
		pqs[i], out[i].Err = prepare(q)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var all []string
	for i, q := range qs {
		if out[i].Err == nil && len(q.Banks) == 0 && all == nil {
			all = make([]string, 0, len(s.banks))
			for n := range s.banks {
				all = append(all, n)
			}
			slices.Sort(all)
		}
	}
	// Per bank, the queries that look in it (vector queries gathered for one
	// scan of its embedding entries).
	order := []string{}
	asked := map[string][]int{}
	for i, q := range qs {
		if out[i].Err != nil {
			continue
		}
		names := q.Banks
		if len(names) == 0 {
			names = all
		}
		enabled, err := s.enabled(names, len(q.Banks) > 0)
		if err != nil {
			return nil, err
		}
		for _, b := range enabled {
			name := b.cfg.Name
			if _, ok := asked[name]; !ok {
				order = append(order, name)
			}
			asked[name] = append(asked[name], i)
		}
	}
	for _, name := range order {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := s.banks[name]
		var err error
		for _, i := range asked[name] {
			if out[i].Matches, err = b.match(&pqs[i], out[i].Matches, false); err != nil {
				return nil, err
			}
		}
		for k, x := range b.emb {
			if x == nil || x.len() == 0 {
				continue
			}
			entryModality := embModality(k)
			var vqs [][]float32
			var thrs []float32
			var who []int
			for _, i := range asked[name] {
				q := &pqs[i]
				if q.vector == nil {
					continue
				}
				thr := b.cfg.Thresholds.Embedding.Get(PairOf(entryModality, q.modality))
				if thr <= 0 {
					continue
				}
				vqs, thrs, who = append(vqs, q.vector), append(thrs, thr), append(who, i)
			}
			if len(vqs) == 0 {
				continue
			}
			x.scanMany(vqs, thrs, func(j int, slot uint32, score float32) {
				i := who[j]
				if mt, ok := b.vectorMatch(slot, score, entryModality, pqs[i].model); ok {
					out[i].Matches = append(out[i].Matches, mt)
				}
			})
		}
	}
	for i := range out {
		sortMatches(out[i].Matches)
	}
	return out, nil
}

// enabled returns the enabled banks among names, in order; a name with no
// bank is ErrBankNotFound when named is set (the query named its banks),
// else skipped. The caller holds the read lock.
func (s *State) enabled(names []string, named bool) ([]*bankState, error) {
	out := make([]*bankState, 0, len(names))
	for _, name := range names {
		b := s.banks[name]
		if b == nil {
			if named {
				return nil, fmt.Errorf("%w: %s", ErrBankNotFound, name)
			}
			continue
		}
		if b.cfg.Enabled {
			out = append(out, b)
		}
	}
	return out, nil
}

// prepared is a query in canonical form.
type prepared struct {
	pdq       []hamming.Code
	md5       string // canonical hex
	text      string // normalised
	urls      []string
	vector    []float32
	modality  string
	model     string
	hasSignal bool
}

func prepare(q Query) (prepared, error) {
	var p prepared
	if len(q.PDQ) > 8 {
		return p, fmt.Errorf("%w: %d PDQ hashes (at most 8: an image's dihedral variants)", ErrInvalidQuery, len(q.PDQ))
	}
	for _, h := range q.PDQ {
		c, _ := hamming.FromBytes(h[:])
		p.pdq = append(p.pdq, c)
	}
	if q.MD5 != "" {
		v, err := canonicalHex(q.MD5, "md5", 16)
		if err != nil {
			return p, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
		}
		p.md5 = v
	}
	if q.Text != "" {
		if len(q.Text) > MaxRawSignalBytes {
			return p, fmt.Errorf("%w: a text of %d bytes (at most %d)", ErrInvalidQuery, len(q.Text), MaxRawSignalBytes)
		}
		p.text = NormalizeText(q.Text)
		p.urls = ExtractURLs(q.Text)
	}
	if len(q.URLs) > MaxQueryURLs {
		return p, fmt.Errorf("%w: %d URLs (at most %d)", ErrInvalidQuery, len(q.URLs), MaxQueryURLs)
	}
	for _, u := range q.URLs {
		if v, err := NormalizeURL(u); err == nil && !slices.Contains(p.urls, v) {
			p.urls = append(p.urls, v)
		}
	}
	if len(q.Vector) > 0 {
		if q.Modality != "image" && q.Modality != "text" {
			return p, fmt.Errorf("%w: vector modality %s (want image or text)", ErrInvalidQuery, quote(q.Modality))
		}
		if q.ModelVersion == "" {
			return p, fmt.Errorf("%w: a vector without its model version", ErrInvalidQuery)
		}
		v, err := normalized(q.Vector)
		if err != nil {
			return p, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
		}
		p.vector, p.modality, p.model = v, q.Modality, q.ModelVersion
	}
	p.hasSignal = len(q.PDQ) > 0 || q.MD5 != "" || strings.TrimSpace(q.Text) != "" || len(q.URLs) > 0 || len(q.Vector) > 0
	if !p.hasSignal {
		return p, fmt.Errorf("%w: give an image's PDQ hashes, an MD5, a text, URLs or a vector", ErrNoSignal)
	}
	return p, nil
}

// searchPDQ searches b's PDQ entries for an image's eight dihedral hashes
// (or one hash) as the bank's dihedral mode says: the first hash exactly
// within the threshold, the seven others exactly, by probing (DihedralFast)
// or not at all. One match per entry, at its smallest distance (the first
// hash's on a tie), Query indexing qs.
func (b *bankState) searchPDQ(qs []hamming.Code) ([]hamming.Match, error) {
	thr := b.cfg.Thresholds.PDQThreshold()
	mode := b.cfg.PDQDihedral
	if len(qs) < 2 || mode == DihedralExact {
		return b.pdq.Search(qs, thr, nil)
	}
	ms, err := b.pdq.Search(qs[:1], thr, nil)
	if err != nil || mode == DihedralOff {
		return ms, err
	}
	own := len(ms)
	if ms, err = b.pdq.SearchProbe(qs[1:], thr, DihedralProbeBits, ms); err != nil {
		return nil, err
	}
	for i := own; i < len(ms); i++ {
		ms[i].Query++
	}
	if own == 0 || own == len(ms) {
		return ms, nil
	}
	// An entry both searches found: keep its nearer match.
	slices.SortStableFunc(ms, func(a, b hamming.Match) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Distance, b.Distance))
	})
	return slices.CompactFunc(ms, func(a, b hamming.Match) bool { return a.ID == b.ID }), nil
}

// match appends b's matches of q (the caller holds the read lock); with
// vectors false, all but the embedding entries' (MatchAll scans those for
// many queries at once).
func (b *bankState) match(q *prepared, out []Match, vectors bool) ([]Match, error) {
	if len(q.pdq) > 0 && b.pdq != nil {
		ms, err := b.searchPDQ(q.pdq)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			slot := uint32(m.ID)
			if !b.usable(slot) {
				continue
			}
			transform := ""
			if len(q.pdq) == 8 {
				transform = pdq.Dihedral(m.Query).String()
			}
			out = append(out, b.distanceMatch(slot, m.Distance, transform))
		}
	}
	exact := func(t SignalType, canonical string) {
		k := kindOf(t, "")
		slot, ok := b.findValue(k, storedValue(k, canonical), idTag(entryHash(t, "", canonical)))
		if ok && b.usable(slot) {
			out = append(out, b.newMatch(slot))
		}
	}
	if q.md5 != "" && b.counts[kindMD5] > 0 {
		exact(SignalMD5, q.md5)
	}
	if q.text != "" && b.counts[kindText] > 0 {
		exact(SignalText, q.text)
	}
	if b.counts[kindURL] > 0 {
		for _, u := range q.urls {
			exact(SignalURL, u)
		}
	}
	if q.vector != nil && vectors {
		for i, x := range b.emb {
			if x == nil || x.len() == 0 {
				continue
			}
			entryModality := embModality(i)
			thr := b.cfg.Thresholds.Embedding.Get(PairOf(entryModality, q.modality))
			if thr <= 0 {
				continue
			}
			x.scan(q.vector, thr, func(slot uint32, score float32) {
				if mt, ok := b.vectorMatch(slot, score, entryModality, q.model); ok {
					out = append(out, mt)
				}
			})
		}
	}
	return out, nil
}

// embModality is the modality of the entries of b.emb[i]: 0 written
// concepts (text), 1 exemplar images.
func embModality(i int) string {
	if i == 1 {
		return "image"
	}
	return "text"
}

// vectorMatch is the match of the embedding entry in slot at score, unless
// the entry is not usable, stale, or of another model than the query's.
func (b *bankState) vectorMatch(slot uint32, score float32, modality, model string) (Match, bool) {
	if !b.usable(slot) || b.recs[slot].flags&flagStale != 0 || b.metas[b.recs[slot].meta].modelVersion != model {
		return Match{}, false
	}
	mt := b.newMatch(slot)
	mt.Score = &score
	mt.Modality = modality
	return mt, true
}

// usable reports whether the entry in slot is live and enabled.
func (b *bankState) usable(slot uint32) bool {
	if int(slot) >= len(b.recs) {
		return false
	}
	f := b.recs[slot].flags
	return f&flagLive != 0 && f&flagDisabled == 0
}

// distanceMatch is the match of the pdq entry in slot at distance d, the
// query's transform named (or "").
func (b *bankState) distanceMatch(slot uint32, d int, transform string) Match {
	mt := b.newMatch(slot)
	mt.Distance, mt.Transform = &d, transform
	return mt
}

func (b *bankState) newMatch(slot uint32) Match {
	r := &b.recs[slot]
	t, modality := r.kind.signal()
	var buf [32]byte
	v := canonicalValue(r.kind, b.value(slot, &buf))
	return Match{
		Bank: b.cfg.Name, Labels: slices.Clone(b.cfg.Labels), Action: b.cfg.Action,
		EntryID: EntryID(t, modality, v), SignalType: t, Signal: domain.TruncateText(v, 256),
		Tags: slices.Clone(b.metas[r.meta].tags),
	}
}

var typeOrder = map[SignalType]int{SignalPDQ: 0, SignalMD5: 1, SignalText: 2, SignalURL: 3, SignalEmbedding: 4}

func sortMatches(ms []Match) {
	slices.SortFunc(ms, func(a, b Match) int {
		if c := strings.Compare(a.Bank, b.Bank); c != 0 {
			return c
		}
		if c := cmp.Compare(typeOrder[a.SignalType], typeOrder[b.SignalType]); c != 0 {
			return c
		}
		if a.Distance != nil && b.Distance != nil {
			if c := cmp.Compare(*a.Distance, *b.Distance); c != 0 {
				return c
			}
		}
		if a.Score != nil && b.Score != nil {
			if c := cmp.Compare(*b.Score, *a.Score); c != 0 {
				return c
			}
		}
		return strings.Compare(a.EntryID, b.EntryID)
	})
}

// ValidateQuery checks q as Match does (ErrNoSignal, ErrInvalidQuery),
// without matching: callers that split a query into parts check the
// whole first.
func ValidateQuery(q Query) error {
	_, err := prepare(q)
	return err
}

// SortMatches orders matches as Match returns them: by bank, signal type,
// distance (ascending) or score (descending), then entry id.
func SortMatches(ms []Match) { sortMatches(ms) }
