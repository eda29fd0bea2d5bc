package query

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"slices"
	"strings"
	"time"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
)

// Banks is the moderation banks the service answers lookups from and
// changes (internal/bankstore.Store implements it over JetStream).
type Banks interface {
	// State is the local copy (call it for every read: a reload replaces it).
	State() *banks.State
	// Sync brings the local copy up to every change recorded before it.
	Sync(ctx context.Context) error
	// Do records a change durably and returns what it changed once the
	// local copy holds it.
	Do(ctx context.Context, op banks.Op) (banks.Result, error)
	// Match looks q up in the local copy.
	Match(ctx context.Context, q banks.Query) ([]banks.Match, error)
}

// Sweeper runs retro sweeps: the posts already indexed looked up against a
// bank's new entries (sink/matching.Sweeper implements it).
type Sweeper interface {
	Start(bank banks.BankInfo, entries []banks.Entry) banks.SweepStatus
	Status() []banks.SweepStatus
}

// MatchEvents reads the newest match events (sink/matching.EventStream).
type MatchEvents interface {
	Latest(ctx context.Context, bank string, n int) ([]json.RawMessage, error)
}

// EventsRequest is the body of xmodal.v1.banks.events: the newest match
// events, of one bank or all.
type EventsRequest struct {
	Bank  string `json:"bank,omitempty"`
	Limit int    `json:"limit,omitempty"` // default 50, at most 500
}

// EventsResponse is the reply of xmodal.v1.banks.events: events as
// sink/matching.Event encodes them, newest first.
type EventsResponse struct {
	Events []json.RawMessage `json:"events"`
}

func (s *Service) banksEvents(ctx context.Context, data []byte) (any, error) {
	var r EventsRequest
	if err := decodeOptional(data, &r); err != nil {
		return nil, err
	}
	if r.Bank != "" {
		if err := banks.ValidateName(r.Bank); err != nil {
			return nil, bankErr(err)
		}
	}
	if r.Limit == 0 {
		r.Limit = 50
	}
	if r.Limit < 1 || r.Limit > 500 {
		return nil, errorf(CodeBadRequest, "limit %d: want 1..500", r.Limit)
	}
	if s.d.Events == nil {
		return &EventsResponse{Events: []json.RawMessage{}}, nil
	}
	evs, err := s.d.Events.Latest(ctx, r.Bank, r.Limit)
	if err != nil {
		return nil, errorf(CodeUnavailable, "match events: %v", err)
	}
	return &EventsResponse{Events: evs}, nil
}

// Limits of bank requests.
const (
	MaxBankEntriesPerAdd = 10_000
	MaxBankPage          = 10_000
	DefaultBankPage      = 1_000
	// MaxImportErrors is how many bad lines an import reply lists (all
	// are counted).
	MaxImportErrors = 1000
	MaxActorBytes   = banks.MaxActorBytes
)

// BankRequest is the body of xmodal.v1.admin.banks.create: the bank's
// configuration (banks.Bank; enabled defaults to true) and who asks.
type BankRequest struct {
	Name        string           `json:"name"`
	Description string           `json:"description,omitempty"`
	Labels      []string         `json:"labels,omitempty"`
	Enabled     *bool            `json:"enabled,omitempty"`
	Action      banks.Action     `json:"action,omitempty"`
	Thresholds  banks.Thresholds `json:"thresholds,omitzero"`
	// PDQDihedral: fast (default), exact or off (banks.DihedralMode).
	PDQDihedral banks.DihedralMode `json:"pdq_dihedral,omitempty"`
	StoreMedia  bool               `json:"store_media,omitempty"`
	Actor       string             `json:"actor,omitempty"`
}

// BankNameRequest names a bank: xmodal.v1.admin.banks.delete and
// xmodal.v1.banks.get (with Entries, a page of its entries).
type BankNameRequest struct {
	Name  string `json:"name"`
	Actor string `json:"actor,omitempty"`
	// Entries asks banks.get for a page of entries (vectors and windows
	// left out: BankInfo.Windows counts the entries that have windows),
	// Limit of them (default 1000, at most 10,000) from Cursor ("" first).
	Entries bool   `json:"entries,omitempty"`
	Limit   int    `json:"limit,omitempty"`
	Cursor  string `json:"cursor,omitempty"`
}

// BankChangeResponse is the reply of every admin.banks change.
type BankChangeResponse struct {
	Bank   string       `json:"bank"`
	Result banks.Result `json:"result"`
	// Seq is the banks' stream sequence after the change: every process
	// synced past it holds it.
	Seq uint64 `json:"seq"`
	// Sweep is the retro sweep the change started (entries added to an
	// enabled bank), when this server runs them.
	Sweep *banks.SweepStatus `json:"sweep,omitempty"`
	// Crops, for an image added with crops to an enabled bank, is what the
	// parts search of the image found among the posts already indexed
	// (the embedded index with image.neardup_windows): their events are
	// made before the reply (source sweep, region window).
	Crops *CropsSwept `json:"crops,omitempty"`
}

// CropsSwept is what a crops entry's parts search found among the posts
// already indexed: Found posts got an event, Known already carried the
// entry's match.
type CropsSwept struct {
	Found int `json:"found"`
	Known int `json:"known"`
}

// cropsSweeper is a Sweeper that also makes the events of the posts that
// the query service found for a new entry (sink/matching.Sweeper.Found).
type cropsSweeper interface {
	Found(ctx context.Context, bank banks.BankInfo, entry banks.Entry, hits []domain.NearDupHit, w, h int) (found, known int, err error)
}

// SweepsResponse is the reply of xmodal.v1.banks.sweeps.
type SweepsResponse struct {
	Sweeps []banks.SweepStatus `json:"sweeps"`
}

// BanksListResponse is the reply of xmodal.v1.banks.list.
type BanksListResponse struct {
	Banks []banks.BankInfo `json:"banks"`
	Seq   uint64           `json:"seq"`
}

// BankGetResponse is the reply of xmodal.v1.banks.get.
type BankGetResponse struct {
	Bank       banks.BankInfo `json:"bank"`
	Entries    []banks.Entry  `json:"entries,omitempty"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// BankAddRequest is the body of xmodal.v1.admin.banks.add: entries
// (signal_type and signal; tags, note, source and disabled optional), an
// image whose PDQ hash and MD5 are added (the image itself is not kept),
// or both. The entries of one request are added atomically.
type BankAddRequest struct {
	Bank    string        `json:"bank"`
	Entries []banks.Entry `json:"entries,omitempty"`
	Image   []byte        `json:"image,omitempty"` // base64 in JSON
	// Exemplar adds the image as an exemplar (an embedding entry: the
	// model's vector of it, matched by cosine at the bank's image_image and
	// image_text thresholds) instead of its PDQ hash and MD5. The image is
	// not kept: after a model change the entry is stale.
	Exemplar bool `json:"exemplar,omitempty"`
	// Crops also keeps the image's near-duplicate windows on its PDQ
	// entry (banks.Entry.Windows: up to 64 window hashes, its area and cleaned
	// hashes and a 24 x 24 grey patch that verifies window matches, about
	// 3.3 KB), so that crops of it, alone or inside a meme or a
	// screenshot, match an image lookup (region and shown in the match).
	// The image itself is not kept. An image under 16 pixels a side or
	// too flat for any window is refused (add it without crops).
	Crops bool `json:"crops,omitempty"`
	// Tags, Note and Source apply to the image's entries, and to entries
	// that have none of their own.
	Tags   []string `json:"tags,omitempty"`
	Note   string   `json:"note,omitempty"`
	Source string   `json:"source,omitempty"`
	Actor  string   `json:"actor,omitempty"`
}

// BankRemoveRequest is the body of xmodal.v1.admin.banks.remove: entry
// ids to remove, or (with Disabled set) to disable or enable again.
type BankRemoveRequest struct {
	Bank     string   `json:"bank"`
	IDs      []string `json:"ids"`
	Disabled *bool    `json:"disabled,omitempty"`
	Actor    string   `json:"actor,omitempty"`
}

// BankImportRequest is the body of xmodal.v1.admin.banks.import: a file
// of signals (docs/moderation.md: python-threatexchange lines or CSV) in
// Data. Good lines are added; bad ones are reported by number and reason.
// Larger files: the CLI (`xmodal bank import`) streams them in parts.
type BankImportRequest struct {
	Bank       string           `json:"bank"`
	Data       string           `json:"data"`
	Format     banks.Format     `json:"format,omitempty"`
	SignalType banks.SignalType `json:"signal_type,omitempty"`
	Source     string           `json:"source,omitempty"`
	Actor      string           `json:"actor,omitempty"`
}

// BankImportResponse is the reply of xmodal.v1.admin.banks.import.
type BankImportResponse struct {
	Bank     string    `json:"bank"`
	Format   string    `json:"format"`
	Lines    int       `json:"lines"` // good lines
	Added    int       `json:"added"`
	Replaced int       `json:"replaced"`
	Bad      int       `json:"bad"`
	Errors   []BadLine `json:"errors,omitempty"` // the first MaxImportErrors bad lines
	Seq      uint64    `json:"seq"`
	// Sweep is the retro sweep of the imported PDQ entries.
	Sweep *banks.SweepStatus `json:"sweep,omitempty"`
}

// BadLine is a line of an import that was not imported, and why.
type BadLine struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

// BankExportRequest is the body of xmodal.v1.admin.banks.export: a page of
// a bank's entries in a file format (lines or csv), from Cursor ("" first).
type BankExportRequest struct {
	Bank   string       `json:"bank"`
	Format banks.Format `json:"format,omitempty"`
	Limit  int          `json:"limit,omitempty"`
	Cursor string       `json:"cursor,omitempty"`
}

// BankExportResponse is a page of an export; concatenate the pages' Data
// (the CSV header comes with the first page only).
type BankExportResponse struct {
	Data       string `json:"data"`
	Written    int    `json:"written"`
	Skipped    int    `json:"skipped"` // embedding entries: no file form
	NextCursor string `json:"next_cursor,omitempty"`
}

// MatchRequest is the body of xmodal.v1.match: any of an image (bytes or
// URL, fetched behind the same SSRF guard as ingest), a PDQ hex, an MD5, a
// text and URLs; every entry of an enabled bank that matches one of them
// is returned. An image matches by its eight dihedral PDQ hashes, its
// bytes' MD5, its URL and (when a bank holds embeddings) its vector; a
// text by its normalised form, the URLs in it and its vector.
type MatchRequest struct {
	Image    []byte   `json:"image,omitempty"`
	ImageURL string   `json:"image_url,omitempty"`
	PDQ      string   `json:"pdq,omitempty"`
	MD5      string   `json:"md5,omitempty"`
	Text     string   `json:"text,omitempty"`
	URLs     []string `json:"urls,omitempty"`
	// Banks restricts the lookup to these banks (default: every enabled one).
	Banks []string `json:"banks,omitempty"`
}

// MatchResponse is the reply of xmodal.v1.match.
type MatchResponse struct {
	Matches []BankMatch `json:"matches"`
	// PDQ and Quality are the image's hash and its quality; MD5 the hex MD5
	// of its bytes (image queries).
	PDQ     string  `json:"pdq,omitempty"`
	Quality *int    `json:"quality,omitempty"`
	MD5     string  `json:"md5,omitempty"`
	TookMS  float64 `json:"took_ms"`
	Seq     uint64  `json:"seq"`
}

// BankMatch is one match of xmodal.v1.match. Region is set when a PDQ
// entry matched a content rectangle of the query image rather than the
// whole image: the picture inside a meme's caption band, an app's or a
// browser's frame, or borders (x0, y0, x1, y1 in the query's pixels, as
// xmodal.v1.neardup reports it). A whole-image match has no region.
type BankMatch struct {
	banks.Match
	Region []int `json:"region,omitempty"`
	// Cleaned: the query's cleaned hash matched (a watermarked copy;
	// banks.RegionMatch).
	Cleaned bool `json:"cleaned,omitempty"`
	// Shown, for a crop of an entry added with crops (its windows
	// matched: banks.RegionMatch), is the part of the banked image the
	// query shows, as fractions of its width and height (x0, y0, x1, y1);
	// Windows is the number of agreeing windows, Pixels the pixel check's
	// correlation with the banked image (banks.RegionMatch.Pixels).
	Shown   []float32 `json:"shown,omitempty"`
	Windows int       `json:"windows,omitempty"`
	Pixels  float64   `json:"pixels,omitempty"`
}

// bankErr maps the banks errors to codes: malformed input 400, a signal
// too long 413, a missing bank 404, a name taken 409, the shared state
// out of reach 503.
func bankErr(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, banks.ErrBankNotFound):
		return errorf(CodeNotFound, "%v", err)
	case errors.Is(err, banks.ErrBankExists):
		return errorf(CodeConflict, "%v", err)
	case errors.Is(err, banks.ErrSignalTooLong):
		return errorf(CodeTooLarge, "%v", err)
	case errors.Is(err, banks.ErrInvalidName), errors.Is(err, banks.ErrInvalidBank), errors.Is(err, banks.ErrThresholdBelowNoise),
		errors.Is(err, banks.ErrUnknownSignalType), errors.Is(err, banks.ErrMalformedSignal), errors.Is(err, banks.ErrInvalidEntry),
		errors.Is(err, banks.ErrInvalidOp), errors.Is(err, banks.ErrNoSignal), errors.Is(err, banks.ErrInvalidQuery),
		errors.Is(err, banks.ErrEmptyFile), errors.Is(err, banks.ErrBinaryFile), errors.Is(err, banks.ErrMissingColumn):
		return errorf(CodeBadRequest, "%v", err)
	}
	return errorf(CodeUnavailable, "banks: %v", err)
}

func (s *Service) syncBanks(ctx context.Context) error {
	if err := s.d.Banks.Sync(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errorf(CodeUnavailable, "the banks cannot be brought up to date (NATS JetStream unreachable?): %v", err)
	}
	return nil
}

// syncedBank brings the banks up to date and returns their state and the
// named bank in it (404 when there is none).
func (s *Service) syncedBank(ctx context.Context, name string) (*banks.State, banks.BankInfo, error) {
	if err := s.syncBanks(ctx); err != nil {
		return nil, banks.BankInfo{}, err
	}
	st := s.d.Banks.State()
	info, err := st.Bank(name)
	if err != nil {
		return nil, banks.BankInfo{}, bankErr(err)
	}
	return st, info, nil
}

func checkActor(a string) error {
	if len(a) > MaxActorBytes || strings.ContainsAny(a, "\x00\n\r") {
		return errorf(CodeBadRequest, "actor: at most %d bytes on one line", MaxActorBytes)
	}
	return nil
}

// decodeBank decodes the body of a bank request into v and checks the
// fields of v it is given: the actor of a change, the bank's name.
func decodeBank(data []byte, v any, actor, name *string) error {
	if err := decodeStrict(data, v); err != nil {
		return err
	}
	if actor != nil {
		if err := checkActor(*actor); err != nil {
			return err
		}
	}
	if name != nil {
		return bankErr(banks.ValidateName(*name))
	}
	return nil
}

// decodeOptional decodes a body that may be empty (then v is left as it is).
func decodeOptional(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	return decodeStrict(data, v)
}

// banksSeq is the banks' stream sequence this process holds (0 when the
// banks do not say).
func (s *Service) banksSeq() uint64 {
	if sq, ok := s.d.Banks.(interface{ Seq() uint64 }); ok {
		return sq.Seq()
	}
	return 0
}

func actorOr(a string) string {
	if a == "" {
		return "anonymous"
	}
	return a
}

// change records op and writes the audit line.
func (s *Service) change(ctx context.Context, op banks.Op, detail ...any) (*BankChangeResponse, error) {
	op.Actor = actorOr(op.Actor)
	res, err := s.d.Banks.Do(ctx, op)
	if err != nil {
		return nil, bankErr(err)
	}
	seq := s.banksSeq()
	args := append([]any{"op", string(op.Kind), "bank", op.Bank, "actor", op.Actor, "added", res.Added, "replaced", res.Replaced,
		"removed", res.Removed, "updated", res.Updated, "banks_seq", seq}, detail...)
	s.d.Logger.Info("audit: bank change", args...)
	return &BankChangeResponse{Bank: op.Bank, Result: res, Seq: seq}, nil
}

func (s *Service) bankCreate(ctx context.Context, data []byte) (any, error) {
	var r BankRequest
	if err := decodeBank(data, &r, &r.Actor, nil); err != nil {
		return nil, err
	}
	b := banks.Bank{Name: r.Name, Description: r.Description, Labels: r.Labels, Enabled: r.Enabled == nil || *r.Enabled,
		Action: r.Action, Thresholds: r.Thresholds, PDQDihedral: r.PDQDihedral, StoreMedia: r.StoreMedia}
	if err := s.checkBank(b); err != nil {
		return nil, err
	}
	return s.change(ctx, banks.Op{Kind: banks.OpCreateBank, Bank: r.Name, Actor: r.Actor, Config: &b})
}

// checkBank validates a configuration, embedding thresholds against the
// model's calibration (none: embedding thresholds are refused).
func (s *Service) checkBank(b banks.Bank) error {
	b = b.WithDefaults()
	return bankErr(b.ValidateWith(s.d.Calibration))
}

// bankUpdate changes the fields the request gives and keeps the others
// (thresholds are replaced as a whole when given).
func (s *Service) bankUpdate(ctx context.Context, data []byte) (any, error) {
	var fields map[string]json.RawMessage
	if err := decodeStrict(data, &fields); err != nil {
		return nil, err
	}
	var r BankRequest
	if err := decodeBank(data, &r, &r.Actor, nil); err != nil {
		return nil, err
	}
	_, cur, err := s.syncedBank(ctx, r.Name)
	if err != nil {
		return nil, err
	}
	// The current configuration, with the given fields laid over it.
	cb, _ := json.Marshal(cur.Bank)
	var merged map[string]json.RawMessage
	if err := json.Unmarshal(cb, &merged); err != nil {
		return nil, errorf(CodeInternal, "bank configuration: %v", err)
	}
	var changed []string
	for k, v := range fields {
		if k == "actor" {
			continue
		}
		merged[k] = v
		changed = append(changed, k)
	}
	mb, _ := json.Marshal(merged)
	var b banks.Bank
	if err := json.Unmarshal(mb, &b); err != nil {
		return nil, errorf(CodeBadRequest, "malformed request: %v", err)
	}
	if err := s.checkBank(b); err != nil {
		return nil, err
	}
	return s.change(ctx, banks.Op{Kind: banks.OpUpdateBank, Bank: r.Name, Actor: r.Actor, Config: &b}, "fields", changed)
}

func (s *Service) bankDelete(ctx context.Context, data []byte) (any, error) {
	var r BankNameRequest
	if err := decodeBank(data, &r, &r.Actor, &r.Name); err != nil {
		return nil, err
	}
	if err := s.syncBanks(ctx); err != nil {
		return nil, err
	}
	return s.change(ctx, banks.Op{Kind: banks.OpDeleteBank, Bank: r.Name, Actor: r.Actor})
}

func (s *Service) bankAdd(ctx context.Context, data []byte) (any, error) {
	var r BankAddRequest
	if err := decodeBank(data, &r, &r.Actor, nil); err != nil {
		return nil, err
	}
	if len(r.Entries) == 0 && len(r.Image) == 0 {
		return nil, errorf(CodeBadRequest, "give entries or an image")
	}
	if len(r.Entries) > MaxBankEntriesPerAdd {
		return nil, errorf(CodeTooLarge, "%d entries in one request (at most %d; xmodal bank import sends larger lists in parts)", len(r.Entries), MaxBankEntriesPerAdd)
	}
	if err := checkImageSize(r.Image); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	actor := actorOr(r.Actor)
	entries := make([]banks.Entry, 0, len(r.Entries)+2)
	var parts *cropsPartsQuery // the crops sweep's query (sweepCrops)
	for _, e := range r.Entries {
		if e.Tags == nil {
			e.Tags = r.Tags
		}
		if e.Note == "" {
			e.Note = r.Note
		}
		if e.Source == "" {
			e.Source = r.Source
		}
		e.AddedAt, e.AddedBy = now, actor
		entries = append(entries, e)
	}
	if r.Exemplar && len(r.Image) == 0 {
		return nil, errorf(CodeBadRequest, "exemplar: give the image")
	}
	if r.Crops && (r.Exemplar || len(r.Image) == 0) {
		return nil, errorf(CodeBadRequest, "crops: give an image to add by its PDQ hash (not an exemplar)")
	}
	// Written concepts without a vector are embedded here, by the text tower.
	if err := s.embedConcepts(ctx, entries); err != nil {
		return nil, err
	}
	if len(r.Image) > 0 {
		dec, err := s.decodeImage(ctx, r.Image)
		if err != nil {
			return nil, err
		}
		if r.Exemplar {
			v, err := s.d.Encoder.EmbedImages(ctx, []image.Image{dec.Image})
			dec.Release()
			if err != nil {
				return nil, errorf(CodeInternal, "encode image: %v", err)
			}
			sum := sha256.Sum256(r.Image)
			entries = append(entries, banks.Entry{Type: banks.SignalEmbedding, Modality: "image", Value: hex.EncodeToString(sum[:]),
				Vector: v[0], ModelVersion: s.d.Encoder.Version(), Tags: r.Tags, Note: r.Note, Source: r.Source, AddedAt: now, AddedBy: actor})
		} else {
			in := dec.HashInput
			if in == nil {
				in = dec.Image
			}
			h, _ := (&pdq.Hasher{MaxSide: PDQMaxSide}).Hash(in)
			var wins []byte
			if r.Crops {
				var err error
				if wins, err = cropWindows(in); err != nil {
					dec.Release()
					return nil, err
				}
				parts = s.cropsQuery(r.Bank, in)
			}
			dec.Release()
			sum := md5.Sum(r.Image)
			for _, sig := range []struct {
				t banks.SignalType
				v string
			}{{banks.SignalPDQ, h.String()}, {banks.SignalMD5, hex.EncodeToString(sum[:])}} {
				e := banks.Entry{Type: sig.t, Value: sig.v, Tags: r.Tags, Note: r.Note, Source: r.Source, AddedAt: now, AddedBy: actor}
				if sig.t == banks.SignalPDQ {
					e.Windows = wins
				}
				entries = append(entries, e)
			}
		}
	}
	for i := range entries {
		e := entries[i]
		if err := e.Normalize(); err != nil {
			return nil, bankErr(fmt.Errorf("entry %d: %w", i, err))
		}
	}
	if err := s.syncBanks(ctx); err != nil {
		return nil, err
	}
	res, err := s.change(ctx, banks.Op{Kind: banks.OpAddEntries, Bank: r.Bank, Actor: actor, At: now, Entries: entries})
	if err != nil {
		return nil, err
	}
	res.Sweep = s.startSweep(r.Bank, entries)
	if parts != nil {
		if res.Crops, err = s.sweepCrops(ctx, r.Bank, entries, parts); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// cropsPartsQuery is an image's parts query for the crops sweep, with the
// image's size.
type cropsPartsQuery struct {
	q    *neardup.Query
	w, h int
}

// cropsQuery is the parts query of an image added with crops to bank, when
// the posts already indexed can be searched for its crops: the bank is
// enabled, the sweeper makes found events, and the index holds windows.
// nil otherwise.
func (s *Service) cropsQuery(bank string, img image.Image) *cropsPartsQuery {
	if _, ok := s.d.Sweeper.(cropsSweeper); !ok {
		return nil
	}
	ws, ok := s.d.Index.(windowSearcher)
	if !ok || !ws.WindowsReady() || ws.WindowImages() == 0 {
		return nil
	}
	if info, err := s.d.Banks.State().Bank(bank); err != nil || !info.Enabled {
		return nil
	}
	q, err := neardup.NewHasher(neardup.Options{PDQMaxSide: PDQMaxSide}).PartsQuery(img)
	if err != nil {
		return nil // cropWindows accepted the image: not expected
	}
	b := img.Bounds()
	return &cropsPartsQuery{q: q, w: b.Dx(), h: b.Dy()}
}

// sweepCrops searches the posts already indexed for the crops of an image
// just added with crops (and for the posts that show it, by windows), and
// has the sweeper make their events: a retro sweep of a PDQ entry finds
// copies by the whole-image hash, and a crop only by the picture, which
// the entry does not keep.
func (s *Service) sweepCrops(ctx context.Context, bank string, entries []banks.Entry, pq *cropsPartsQuery) (*CropsSwept, error) {
	i := slices.IndexFunc(entries, func(e banks.Entry) bool { return e.Type == banks.SignalPDQ && len(e.Windows) > 0 })
	if i < 0 {
		return nil, nil
	}
	info, err := s.d.Banks.State().Bank(bank)
	if err != nil || !info.Enabled {
		return nil, nil
	}
	hits, err := s.d.Index.(windowSearcher).NearDupWindows(ctx, pq.q, domain.WindowSearch{Parts: true})
	if err != nil {
		return nil, indexErr(err)
	}
	hits = slices.DeleteFunc(hits, func(h domain.NearDupHit) bool { return s.d.Deny.Denied(h.PostID) })
	found, known, err := s.d.Sweeper.(cropsSweeper).Found(ctx, info, entries[i], hits, pq.w, pq.h)
	if err != nil {
		return nil, errorf(CodeUnavailable, "crops sweep: %v", err)
	}
	return &CropsSwept{Found: found, Known: known}, nil
}

// startSweep starts a retro sweep of entries just added to an enabled bank
// (nil when this server runs none).
func (s *Service) startSweep(bank string, entries []banks.Entry) *banks.SweepStatus {
	if s.d.Sweeper == nil {
		return nil
	}
	info, err := s.d.Banks.State().Bank(bank)
	if err != nil || !info.Enabled {
		return nil
	}
	st := s.d.Sweeper.Start(info, entries)
	return &st
}

// bankSweep sweeps the index for every entry of a bank (after enabling it,
// or to repeat a sweep that failed).
func (s *Service) bankSweep(ctx context.Context, data []byte) (any, error) {
	var r BankNameRequest
	if err := decodeStrict(data, &r); err != nil {
		return nil, err
	}
	if s.d.Sweeper == nil {
		return nil, errorf(CodeUnavailable, "this server runs no sweeps (its index has no near-duplicate search)")
	}
	st, info, err := s.syncedBank(ctx, r.Name)
	if err != nil {
		return nil, err
	}
	if !info.Enabled {
		return nil, errorf(CodeBadRequest, "bank %s is disabled: enable it first", r.Name)
	}
	var all []banks.Entry
	for cursor := 0; ; {
		page, next, err := st.Entries(r.Name, cursor, MaxBankPage)
		if err != nil {
			return nil, bankErr(err)
		}
		for _, e := range page {
			if e.Type == banks.SignalPDQ {
				e.Vector, e.Windows = nil, nil // sweeps match whole-image hashes
				all = append(all, e)
			}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	sw := s.d.Sweeper.Start(info, all)
	s.d.Logger.Info("audit: bank sweep", "bank", r.Name, "actor", actorOr(r.Actor), "entries", sw.Entries)
	return &sw, nil
}

func (s *Service) banksSweeps(_ context.Context, data []byte) (any, error) {
	if err := decodeOptional(data, &struct{}{}); err != nil {
		return nil, err
	}
	res := &SweepsResponse{Sweeps: []banks.SweepStatus{}}
	if s.d.Sweeper != nil {
		res.Sweeps = s.d.Sweeper.Status()
	}
	return res, nil
}

// embedConcepts computes the vectors of written concepts (embedding entries
// of modality text given without one) in one call of the text tower; an
// exemplar image must come as an image (exemplar: true), and a vector given
// with an entry must name its model version.
func (s *Service) embedConcepts(ctx context.Context, entries []banks.Entry) error {
	var idx []int
	var texts []string
	for i := range entries {
		e := &entries[i]
		t, err := banks.ParseSignalType(string(e.Type))
		if err != nil || t != banks.SignalEmbedding || len(e.Vector) > 0 {
			continue
		}
		e.Type = t
		switch e.Modality {
		case "text":
			v, err := banks.CanonicalEmbedding("text", e.Value)
			if err != nil {
				return bankErr(fmt.Errorf("entry %d: %w", i, err))
			}
			idx, texts = append(idx, i), append(texts, v)
		case "image":
			return errorf(CodeBadRequest, "entry %d: an exemplar image is added as image with exemplar: true", i)
		default:
			return errorf(CodeBadRequest, "entry %d: an embedding entry needs modality text (a written concept) or image", i)
		}
	}
	if len(texts) == 0 {
		return nil
	}
	vs, err := s.d.Encoder.EmbedTexts(ctx, texts)
	if err != nil {
		return errorf(CodeInternal, "encode concepts: %v", err)
	}
	for j, i := range idx {
		entries[i].Vector, entries[i].ModelVersion = vs[j], s.d.Encoder.Version()
	}
	return nil
}

func (s *Service) bankRemove(ctx context.Context, data []byte) (any, error) {
	var r BankRemoveRequest
	if err := decodeBank(data, &r, &r.Actor, nil); err != nil {
		return nil, err
	}
	if len(r.IDs) == 0 {
		return nil, errorf(CodeBadRequest, "give the ids of the entries")
	}
	if len(r.IDs) > MaxBankEntriesPerAdd {
		return nil, errorf(CodeTooLarge, "%d ids in one request (at most %d)", len(r.IDs), MaxBankEntriesPerAdd)
	}
	if err := s.syncBanks(ctx); err != nil {
		return nil, err
	}
	op := banks.Op{Kind: banks.OpRemoveEntries, Bank: r.Bank, Actor: r.Actor, IDs: r.IDs}
	if r.Disabled != nil {
		op.Kind, op.Disabled = banks.OpSetEntries, r.Disabled
	}
	return s.change(ctx, op)
}

func (s *Service) bankImport(ctx context.Context, data []byte) (any, error) {
	var r BankImportRequest
	if err := decodeBank(data, &r, &r.Actor, &r.Bank); err != nil {
		return nil, err
	}
	im, err := banks.NewImporter(strings.NewReader(r.Data), banks.ImportOptions{Format: r.Format, SignalType: r.SignalType})
	if err != nil {
		return nil, bankErr(err)
	}
	if _, _, err := s.syncedBank(ctx, r.Bank); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	actor := actorOr(r.Actor)
	res := &BankImportResponse{Bank: r.Bank, Format: string(im.Format())}
	bt := banks.OpBatcher{Bank: r.Bank, Actor: actor, At: now}
	var swept []banks.Entry
	send := func(op *banks.Op) error {
		ch, err := s.change(ctx, *op, "import_lines", len(op.Entries))
		if err != nil {
			return err
		}
		for _, e := range op.Entries {
			if e.Type == banks.SignalPDQ {
				swept = append(swept, e)
			}
		}
		res.Added += ch.Result.Added
		res.Replaced += ch.Result.Replaced
		res.Seq = ch.Seq
		return nil
	}
	entry := func(sig banks.ImportedSignal) banks.Entry { return sig.Entry(now, actor, r.Source) }
	res.Lines, err = bt.AddAll(im, entry, send, func(le *banks.LineError) {
		res.Bad++
		if len(res.Errors) < MaxImportErrors {
			res.Errors = append(res.Errors, BadLine{Line: le.Line, Reason: le.Err.Error()})
		}
	})
	if err != nil {
		return nil, bankErr(err)
	}
	res.Sweep = s.startSweep(r.Bank, swept)
	return res, nil
}

// cursor reads a page cursor ("" is the first page).
func parseCursor(c string) (int, error) {
	if c == "" {
		return 0, nil
	}
	var n int
	if _, err := fmt.Sscanf(c, "%d", &n); err != nil || n <= 0 || fmt.Sprint(n) != c {
		return 0, errorf(CodeBadRequest, "cursor %q is not one a previous page gave", c)
	}
	return n, nil
}

func pageLimit(n int) (int, error) {
	if n == 0 {
		return DefaultBankPage, nil
	}
	if n < 1 || n > MaxBankPage {
		return 0, errorf(CodeBadRequest, "limit %d: want 1..%d", n, MaxBankPage)
	}
	return n, nil
}

// parsePage reads the cursor and limit of a page request.
func parsePage(cursor string, limit int) (from, n int, err error) {
	if from, err = parseCursor(cursor); err != nil {
		return 0, 0, err
	}
	if n, err = pageLimit(limit); err != nil {
		return 0, 0, err
	}
	return from, n, nil
}

func nextCursor(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprint(n)
}

func (s *Service) bankExport(ctx context.Context, data []byte) (any, error) {
	var r BankExportRequest
	if err := decodeStrict(data, &r); err != nil {
		return nil, err
	}
	if r.Format == "" {
		r.Format = banks.FormatLines
	}
	f, err := banks.ParseFormat(string(r.Format))
	if err != nil {
		return nil, errorf(CodeBadRequest, "%v", err)
	}
	from, limit, err := parsePage(r.Cursor, r.Limit)
	if err != nil {
		return nil, err
	}
	if err := s.syncBanks(ctx); err != nil {
		return nil, err
	}
	page, next, err := s.d.Banks.State().Entries(r.Bank, from, limit)
	if err != nil {
		return nil, bankErr(err)
	}
	var buf bytes.Buffer
	x, err := banks.NewExporter(&buf, f)
	if err != nil {
		return nil, errorf(CodeBadRequest, "%v", err)
	}
	for _, e := range page {
		if err := x.Write(e); err != nil {
			return nil, bankErr(err)
		}
	}
	if err := x.Close(); err != nil {
		return nil, errorf(CodeInternal, "export: %v", err)
	}
	out := buf.String()
	if f == banks.FormatCSV && from > 0 {
		// The header belongs to the first page only.
		_, out, _ = strings.Cut(out, "\n")
	}
	return &BankExportResponse{Data: out, Written: x.Stats.Written, Skipped: x.Stats.Skipped, NextCursor: nextCursor(next)}, nil
}

func (s *Service) banksList(ctx context.Context, data []byte) (any, error) {
	if err := decodeOptional(data, &struct{}{}); err != nil {
		return nil, err
	}
	if err := s.syncBanks(ctx); err != nil {
		return nil, err
	}
	return &BanksListResponse{Banks: s.d.Banks.State().Banks(), Seq: s.banksSeq()}, nil
}

func (s *Service) bankGet(ctx context.Context, data []byte) (any, error) {
	var r BankNameRequest
	if err := decodeBank(data, &r, nil, &r.Name); err != nil {
		return nil, err
	}
	from, limit, err := parsePage(r.Cursor, r.Limit)
	if err != nil {
		return nil, err
	}
	st, info, err := s.syncedBank(ctx, r.Name)
	if err != nil {
		return nil, err
	}
	res := &BankGetResponse{Bank: info}
	if r.Entries {
		page, next, err := st.Entries(r.Name, from, limit)
		if err != nil {
			return nil, bankErr(err)
		}
		for i := range page {
			page[i].Vector, page[i].Windows = nil, nil
		}
		res.Entries, res.NextCursor = page, nextCursor(next)
	}
	return res, nil
}

// ParseMatch decodes and validates a match request (exported for the fuzz
// test and the HTTP gateway).
func ParseMatch(data []byte) (*MatchRequest, error) {
	var r MatchRequest
	if err := decodeStrict(data, &r); err != nil {
		return nil, err
	}
	if len(r.Image) > 0 && r.ImageURL != "" {
		return nil, errorf(CodeBadRequest, "give image or image_url, not both")
	}
	if len(r.Image) == 0 && r.ImageURL == "" && r.PDQ == "" && r.MD5 == "" && strings.TrimSpace(r.Text) == "" && len(r.URLs) == 0 {
		return nil, errorf(CodeBadRequest, "%v: give an image, image_url, pdq, md5, text or urls", banks.ErrNoSignal)
	}
	if err := checkImageSize(r.Image); err != nil {
		return nil, err
	}
	if r.PDQ != "" && (len(r.Image) > 0 || r.ImageURL != "") {
		return nil, errorf(CodeBadRequest, "give an image or its pdq, not both")
	}
	if err := checkPDQHex(r.PDQ); err != nil {
		return nil, err
	}
	if len(r.Text) > MaxQueryText {
		return nil, errorf(CodeTooLarge, "text is %d bytes, over %d", len(r.Text), MaxQueryText)
	}
	for _, b := range r.Banks {
		if err := banks.ValidateName(b); err != nil {
			return nil, errorf(CodeBadRequest, "%v", err)
		}
	}
	return &r, nil
}

// embeddingKinds says whether any enabled bank holds written concepts or
// exemplar images (only then is a query's vector worth computing).
func embeddingKinds(st *banks.State) (any bool) {
	for _, b := range st.Banks() {
		if b.Enabled && (b.Counts["embedding_text"] > 0 || b.Counts["embedding_image"] > 0) {
			return true
		}
	}
	return false
}

// cropWindows is the stored form of an image's near-duplicate windows
// for its bank entry (BankAddRequest.Crops).
func cropWindows(img image.Image) ([]byte, error) {
	sig, err := neardup.NewHasher(neardup.Options{PDQMaxSide: PDQMaxSide}).Signatures(img)
	if err != nil {
		return nil, errorf(CodeBadRequest, "crops: %v", err)
	}
	if !slices.ContainsFunc(sig, func(r neardup.RegionHash) bool { return r.Kind == neardup.Window }) {
		return nil, errorf(CodeBadRequest, "crops: the image is too flat for near-duplicate windows; add it without crops")
	}
	b := img.Bounds()
	return neardup.AppendWindows(nil, b.Dx(), b.Dy(), sig), nil
}

// windowBanks says whether any enabled bank (of only, when given) holds
// entries with windows: only then does an image query hash its windows.
func windowBanks(st *banks.State, only []string) bool {
	for _, b := range st.Banks() {
		if b.Enabled && b.Windows > 0 && (len(only) == 0 || slices.Contains(only, b.Name)) {
			return true
		}
	}
	return false
}

// pdqBanks says whether any enabled bank (of only, when given) holds PDQ
// entries: only then are an image query's content rectangles worth cutting.
func pdqBanks(st *banks.State, only []string) bool {
	for _, b := range st.Banks() {
		if b.Enabled && b.Counts[string(banks.SignalPDQ)] > 0 && (len(only) == 0 || slices.Contains(only, b.Name)) {
			return true
		}
	}
	return false
}

// contentMatches matches the content rectangles of an image query (nq: the
// picture cut from a caption band, a frame or borders by encoders/neardup,
// as xmodal.v1.neardup does) against the PDQ entries of the banks, and
// returns the entries that whole is missing: a meme or a screenshot of a
// banked image, whose whole-image hash is far from the entry's, and, by
// the cleaned hashes of the whole image and of the rectangles, a
// watermarked copy. An image under neardup's size floor (nq nil) has no
// rectangles and adds nothing.
func (s *Service) contentMatches(ctx context.Context, nq *neardup.Query, only []string, whole []banks.Match) ([]BankMatch, error) {
	if nq == nil {
		return nil, nil
	}
	// The whole image's plain hashes (rectangle 0) were matched with the
	// rest of the query; its cleaned hash was not.
	content := *nq
	content.Hashes = slices.DeleteFunc(slices.Clone(nq.Hashes), func(h neardup.QueryHash) bool { return h.Kind == neardup.Whole && h.Rect == 0 && !h.Cleaned })
	if len(content.Hashes) == 0 {
		return nil, nil
	}
	rms, err := s.d.Banks.State().MatchRegions(ctx, &content, only)
	if err != nil {
		return nil, err
	}
	type key struct{ bank, entry string }
	seen := map[key]bool{}
	for _, m := range whole {
		seen[key{m.Bank, m.EntryID}] = true
	}
	var out []BankMatch
	for _, rm := range rms {
		if seen[key{rm.Bank, rm.EntryID}] {
			continue
		}
		m := BankMatch{Match: rm.Match, Cleaned: rm.Cleaned, Windows: rm.Windows, Pixels: rm.Pixels}
		if rm.Region != "whole" {
			m.Region = rm.Rect[:]
		}
		if rm.Shown != nil {
			m.Shown = rm.Shown[:]
		}
		out = append(out, m)
	}
	return out, nil
}

// mergeMatches adds content-rectangle matches to the whole query's,
// keeping Match's order: banks by name, and within a bank its PDQ matches
// (whole and content together) by distance, then entry id, where its PDQ
// matches stood (first, as Match orders signal types).
func mergeMatches(whole []banks.Match, content []BankMatch) []BankMatch {
	out := make([]BankMatch, 0, len(whole)+len(content))
	for _, m := range whole {
		out = append(out, BankMatch{Match: m})
	}
	if len(content) == 0 {
		return out
	}
	var merged []BankMatch
	for len(out) > 0 || len(content) > 0 {
		// The next bank in name order, from either list.
		var bank string
		switch {
		case len(out) == 0:
			bank = content[0].Bank
		case len(content) == 0:
			bank = out[0].Bank
		default:
			bank = min(out[0].Bank, content[0].Bank)
		}
		var pdqs, rest []BankMatch
		for len(out) > 0 && out[0].Bank == bank {
			if out[0].SignalType == banks.SignalPDQ {
				pdqs = append(pdqs, out[0])
			} else {
				rest = append(rest, out[0])
			}
			out = out[1:]
		}
		for len(content) > 0 && content[0].Bank == bank {
			pdqs = append(pdqs, content[0])
			content = content[1:]
		}
		slices.SortStableFunc(pdqs, func(a, b BankMatch) int {
			return cmp.Or(cmp.Compare(*a.Distance, *b.Distance), strings.Compare(a.EntryID, b.EntryID))
		})
		merged = append(merged, pdqs...)
		merged = append(merged, rest...)
	}
	return merged
}

func (s *Service) match(ctx context.Context, data []byte) (any, error) {
	start := time.Now()
	r, err := ParseMatch(data)
	if err != nil {
		return nil, err
	}
	if err := s.syncBanks(ctx); err != nil {
		return nil, err
	}
	res := &MatchResponse{}
	q := banks.Query{MD5: r.MD5, Text: r.Text, URLs: r.URLs, Banks: r.Banks}
	var nq *neardup.Query // an image query's content rectangles, when a bank holds PDQ entries
	wantVec := embeddingKinds(s.d.Banks.State())
	if r.PDQ != "" {
		h, _ := pdq.ParseHex(r.PDQ)
		q.PDQ = []pdq.Hash{h}
		res.PDQ = h.String()
	}
	if len(r.Image) > 0 || r.ImageURL != "" {
		raw := r.Image
		if r.ImageURL != "" {
			b, err := s.fetchImage(ctx, r.ImageURL)
			if err != nil {
				return nil, err
			}
			raw = b
			q.URLs = append(q.URLs, r.ImageURL)
		}
		sum := md5.Sum(raw)
		res.MD5 = hex.EncodeToString(sum[:])
		if q.MD5 != "" && !strings.EqualFold(q.MD5, res.MD5) {
			return nil, errorf(CodeBadRequest, "md5 %s is not the image's (%s): give one or the other", q.MD5, res.MD5)
		}
		q.MD5 = res.MD5
		dec, err := s.decodeImage(ctx, raw)
		if err != nil {
			return nil, err
		}
		in := dec.HashInput
		if in == nil {
			in = dec.Image
		}
		vs, qual := (&pdq.Hasher{MaxSide: PDQMaxSide}).Dihedral(in)
		q.PDQ = vs[:]
		res.PDQ, res.Quality = vs[pdq.Original].String(), &qual
		if st := s.d.Banks.State(); pdqBanks(st, r.Banks) {
			// Under neardup's size floor there is nothing to cut: nq stays
			// nil. The windows too where a bank holds entries with windows.
			nh := neardup.NewHasher(neardup.Options{PDQMaxSide: PDQMaxSide})
			if windowBanks(st, r.Banks) {
				nq, _ = nh.Query(in)
			} else {
				nq, _ = nh.QueryRects(in)
			}
		}
		if wantVec {
			v, err := s.d.Encoder.EmbedImages(ctx, []image.Image{dec.Image})
			if err != nil {
				dec.Release()
				return nil, errorf(CodeInternal, "encode image: %v", err)
			}
			q.Vector, q.Modality = v[0], "image"
		}
		dec.Release()
	} else if wantVec && strings.TrimSpace(r.Text) != "" {
		v, err := s.d.Encoder.EmbedTexts(ctx, []string{r.Text})
		if err != nil {
			return nil, errorf(CodeInternal, "encode text: %v", err)
		}
		q.Vector, q.Modality = v[0], "text"
	}
	if q.Vector != nil {
		q.ModelVersion = s.d.Encoder.Version()
	}
	ms, err := s.d.Banks.Match(ctx, q)
	if err != nil {
		return nil, bankErr(err)
	}
	content, err := s.contentMatches(ctx, nq, r.Banks, ms)
	if err != nil {
		return nil, bankErr(err)
	}
	res.Matches, res.Seq = mergeMatches(ms, content), s.banksSeq()
	res.TookMS = tookMS(start)
	return res, nil
}

// startBanks registers the bank endpoints: banks.list, banks.get and match
// for readers, admin.banks.* for moderators (covered by the admin rules of
// deploy/nats).
func (s *Service) startBanks(svc *microService) error {
	if s.d.Banks == nil {
		return nil
	}
	eps := []struct {
		name string
		h    func(context.Context, []byte) (any, error)
	}{
		{"banks.list", s.banksList},
		{"banks.get", s.bankGet},
		{"banks.sweeps", s.banksSweeps},
		{"banks.events", s.banksEvents},
		{"admin.banks.sweep", s.bankSweep},
		{"match", s.match},
		{"admin.banks.create", s.bankCreate},
		{"admin.banks.update", s.bankUpdate},
		{"admin.banks.delete", s.bankDelete},
		{"admin.banks.add", s.bankAdd},
		{"admin.banks.remove", s.bankRemove},
		{"admin.banks.import", s.bankImport},
		{"admin.banks.export", s.bankExport},
	}
	for _, ep := range eps {
		s.register(ep.name, ep.h)
		if err := svc.add(strings.ReplaceAll(ep.name, ".", "-"), SubjectPrefix+"."+ep.name, s.handler(ep.name, ep.h)); err != nil {
			return fmt.Errorf("endpoint %s: %w", ep.name, err)
		}
	}
	return nil
}
