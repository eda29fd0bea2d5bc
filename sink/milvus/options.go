package milvus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/milvus-io/milvus/client/v2/entity"
	"google.golang.org/grpc"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/internal/winindex"
)

// Options configure a Milvus index. Zero values take the defaults (see Defaults).
type Options struct {
	// Address is host:port of Milvus's gRPC endpoint, e.g. "127.0.0.1:19530".
	Address  string
	Username string
	Password string
	DBName   string

	// Collection is the base name: the alias that marks the live model version, and the
	// prefix of every collection this index creates (default "xmodal").
	Collection string
	// Dim is the embedding dimension; a collection holding another dimension is refused.
	Dim int
	// ModelVersion names the model whose vectors this index holds. Each model version
	// has collections of its own (<Collection>_<version>...); see SwapAlias.
	ModelVersion string
	// CodeBits is the length of the binary hash code (a multiple of 8; default 64;
	// -1: the records carry no code and no code field is created).
	CodeBits int
	// Coder, when set, gives every record written without a binary code its
	// code (encoders/hash.Coder implements it); its Bits must be CodeBits.
	Coder Coder
	// PDQ keeps the 256-bit PDQ hash of image records in a binary vector field
	// (default true; set DisablePDQ to leave it out).
	DisablePDQ bool

	// FollowAlias makes Open resolve the alias Collection and use the collection it
	// points to (a query process). The collection must hold ModelVersion's vectors:
	// a process never searches with another model's query vectors. Without it, the
	// index uses ModelVersion's own collection and creates the alias only when none
	// exists (an indexer, which may be re-embedding into a collection that is not live yet).
	FollowAlias bool

	// Layout: "auto" (default: one collection with several vector fields when the
	// server supports it, Milvus >= 2.4; otherwise one collection per vector kind),
	// "single" or "split".
	Layout string

	// FloatIndex is the index of the float vector field: IVF_FLAT (default), FLAT or
	// HNSW. The exact plan searches IVF_FLAT with nprobe = nlist (every list, exact
	// distances); FLAT is exact for every plan; HNSW serves the exact plan with ef =
	// ExactEF, which is approximate (documented in docs/milvus.md).
	FloatIndex string
	NList      int // IVF nlist (default 128)
	NProbe     int // IVF nprobe for the ann plan (default 16)
	HNSWM      int // HNSW M (default 16)
	HNSWEfC    int // HNSW efConstruction (default 200)
	EF         int // HNSW ef for the ann plan (default 64; raised to k)
	ExactEF    int // HNSW ef for the exact plan (default 4096)
	// CodeIndex is the index of the binary fields: BIN_FLAT (default) or BIN_IVF_FLAT
	// (searched with nprobe = nlist, so Hamming ranking stays exact).
	CodeIndex string

	// Shards is the shard count of the records collections when they are created
	// (default 1; a cluster with several data nodes spreads writes over more).
	// Replicas is how many in-memory replicas loading asks for (0: the server's
	// default; a cluster with several query nodes serves more queries with more).
	Shards   int
	Replicas int

	// Candidates is C of the hybrid plan when a query does not set it (default 256).
	Candidates int

	// Consistency of searches, Get and Count: Strong, Bounded (default), Session or
	// Eventually.
	Consistency string
	// WriteConsistency of the reads a write round makes (versions, deny rows,
	// records present): Bounded (default; merged with the writer's own writes
	// of the last StaleWindow, and Strong for a StaleWindow after Fence) or
	// Strong (every round waits for a time tick, ~200 ms on Milvus 2.3).
	WriteConsistency string
	// StaleWindow is how long the writer remembers its own writes, and how
	// long rounds read Strong after Fence; it must exceed the server's
	// common.gracefulTime (the staleness of Bounded reads, 5 s by default).
	// Default 10s.
	StaleWindow time.Duration
	// FenceWindow is how long write rounds read Strong after Fence (default
	// 5s, Milvus's default common.gracefulTime: a Bounded read made later
	// shows every write made before the Fence; negative: Fence does nothing).
	FenceWindow time.Duration

	// BatchSize is the most rows one upsert call carries; concurrent Apply calls are
	// coalesced into one write round until it is reached (default 512).
	BatchSize int
	// Linger is how long a write round waits for more Apply calls to join it (default
	// 0: a round starts as soon as a round slot is free; calls that arrive
	// meanwhile join it).
	Linger time.Duration
	// Rounds is how many write rounds write at once; as many more read
	// meanwhile (a two-stage pipeline: the next rounds read what Milvus holds
	// of their posts while the rounds ahead write). Default 1: a round costs
	// one read and one write round trip and about the same server work
	// whatever its size, so on a small server one round writing and one
	// reading, each coalescing every Apply that waits, write more rows per
	// second than several small rounds; a cluster with several data nodes
	// may take more. Rounds in flight never share a post.
	Rounds int
	// UpsertOnly makes every write of a record, code or PDQ row an upsert.
	// By default a post that Milvus holds nothing of (no versions row, read
	// by the round, and no write of this writer within StaleWindow) has its
	// versions row upserted first and its rows inserted after, which costs
	// the server less than an upsert (no delete of the keys). So that its
	// reads show what a writer before it wrote a moment ago, such a writer's
	// rounds of its first StaleWindow read at a timestamp taken after it
	// started; within StaleWindow of a Fence a round upserts every row
	// (docs/milvus.md, "New posts are inserted").
	UpsertOnly bool

	// DialTimeout bounds one connection attempt (default 3s); StartTimeout bounds
	// Open's wait for an unreachable server (default 30s).
	DialTimeout  time.Duration
	StartTimeout time.Duration
	// CallTimeout bounds one RPC attempt (default 30s; loading a collection has its
	// own bound, LoadTimeout, default 5m).
	CallTimeout time.Duration
	LoadTimeout time.Duration
	// Retries is how many times an RPC that failed with Unavailable or
	// ResourceExhausted (gRPC codes, or Milvus's own "service not ready/unavailable",
	// "rate limit", "too many requests", "resource insufficient") is retried, with
	// exponential backoff from RetryBackoff (default 5, 200ms) up to RetryMaxBackoff (default 5s).
	Retries         int
	RetryBackoff    time.Duration
	RetryMaxBackoff time.Duration

	// MaxLabels is the capacity of the labels array (default 64); MaxPostID the
	// length of post ids (default 256 bytes).
	MaxLabels int
	MaxPostID int

	// Windows keeps the records' near-duplicate windows beside Milvus
	// (sink/sharedwindows; nil: none, and window searches find nothing):
	// Apply appends each round's windows after the round lands, and
	// NearDupWindows searches it.
	Windows WindowStore

	Logger *slog.Logger
	// DialOptions are added to the client's gRPC dial options (transport
	// credentials, tracing or metrics interceptors).
	DialOptions []grpc.DialOption
}

// WindowStore keeps the near-duplicate windows of a Milvus index's image
// records outside Milvus, whose rows hold whole-image PDQ only
// (*sharedwindows.Windows).
type WindowStore interface {
	// Record appends the windows of a write round that landed.
	Record(ctx context.Context, changes []domain.Change, outs []domain.Outcome) error
	// Search finds the records whose windows match q (winindex.Index.Search).
	Search(q *neardup.Query, parts bool) ([]winindex.Hit, error)
	// Current reports whether a hit is still its record's windows.
	Current(h *winindex.Hit) bool
	// Stored returns the stored window list of an image record (a
	// rebuild of the shared clusters signs with it).
	Stored(pk string) ([]byte, bool)
	Ready() bool
	Len() int
}

// Coder computes the binary code of a vector of a modality.
type Coder interface {
	Code(vec []float32, m domain.Modality) []byte
	Bits() int
}

// The index types this package creates.
const (
	IndexFlat       = "FLAT"
	IndexIVFFlat    = "IVF_FLAT"
	IndexHNSW       = "HNSW"
	IndexBinFlat    = "BIN_FLAT"
	IndexBinIVFFlat = "BIN_IVF_FLAT"
)

// Layouts.
const (
	LayoutAuto   = "auto"
	LayoutSingle = "single"
	LayoutSplit  = "split"
)

var collectionName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// WithDefaults returns o with the zero fields set to their defaults.
func (o Options) WithDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if o.Collection == "" {
		o.Collection = "xmodal"
	}
	def(&o.CodeBits, 64)
	if o.Layout == "" {
		o.Layout = LayoutAuto
	}
	if o.FloatIndex == "" {
		o.FloatIndex = IndexIVFFlat
	}
	o.FloatIndex = strings.ToUpper(o.FloatIndex)
	if o.CodeIndex == "" {
		o.CodeIndex = IndexBinFlat
	}
	o.CodeIndex = strings.ToUpper(o.CodeIndex)
	def(&o.NList, 128)
	def(&o.NProbe, 16)
	def(&o.HNSWM, 16)
	def(&o.HNSWEfC, 200)
	def(&o.EF, 64)
	def(&o.ExactEF, 4096)
	def(&o.Candidates, 256)
	def(&o.Shards, 1)
	if o.WriteConsistency == "" {
		o.WriteConsistency = "Bounded"
	}
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	if o.FenceWindow == 0 {
		o.FenceWindow = 5 * time.Second
	}
	if o.StaleWindow <= 0 {
		o.StaleWindow = 10 * time.Second
	}
	if o.Consistency == "" {
		o.Consistency = "Bounded"
	}
	def(&o.BatchSize, 512)
	defd(&o.DialTimeout, 3*time.Second)
	defd(&o.StartTimeout, 30*time.Second)
	defd(&o.CallTimeout, 30*time.Second)
	defd(&o.LoadTimeout, 5*time.Minute)
	def(&o.Retries, 5)
	defd(&o.RetryBackoff, 200*time.Millisecond)
	defd(&o.RetryMaxBackoff, 5*time.Second)
	def(&o.MaxLabels, 64)
	def(&o.MaxPostID, 256)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate reports what is wrong with the options (after defaults).
func (o Options) Validate() error {
	o = o.WithDefaults()
	var errs []error
	if o.Address == "" {
		errs = append(errs, errors.New("address is empty (host:port of Milvus's gRPC endpoint)"))
	}
	if o.Dim <= 0 || o.Dim > 32768 {
		errs = append(errs, fmt.Errorf("dimension %d must be in 1..32768", o.Dim))
	}
	if o.ModelVersion == "" {
		errs = append(errs, errors.New("model version is empty (each model version has collections of its own)"))
	}
	if !collectionName.MatchString(o.Collection) {
		errs = append(errs, fmt.Errorf("collection %q: want a letter or _ then letters, digits or _ (at most 64)", o.Collection))
	}
	if o.CodeBits != -1 && (o.CodeBits <= 0 || o.CodeBits%8 != 0 || o.CodeBits > 32768) {
		errs = append(errs, fmt.Errorf("code bits %d must be a positive multiple of 8 (or -1 for no codes)", o.CodeBits))
	}
	switch o.Layout {
	case LayoutAuto, LayoutSingle, LayoutSplit:
	default:
		errs = append(errs, fmt.Errorf("layout %q: want auto, single or split", o.Layout))
	}
	switch o.FloatIndex {
	case IndexFlat, IndexIVFFlat, IndexHNSW:
	default:
		errs = append(errs, fmt.Errorf("float index %q: want FLAT, IVF_FLAT or HNSW", o.FloatIndex))
	}
	switch o.CodeIndex {
	case IndexBinFlat, IndexBinIVFFlat:
	default:
		errs = append(errs, fmt.Errorf("code index %q: want BIN_FLAT or BIN_IVF_FLAT", o.CodeIndex))
	}
	if o.NProbe > o.NList {
		errs = append(errs, fmt.Errorf("nprobe %d exceeds nlist %d", o.NProbe, o.NList))
	}
	if o.WriteConsistency != "" && o.WriteConsistency != "Bounded" && o.WriteConsistency != "Strong" {
		return fmt.Errorf("milvus: write consistency %q: want Bounded or Strong", o.WriteConsistency)
	}
	if o.Coder != nil && o.Coder.Bits() != o.CodeBits && !(o.CodeBits == 0 && o.Coder.Bits() == 64) {
		return fmt.Errorf("milvus: the coder makes %d-bit codes, code_bits is %d", o.Coder.Bits(), o.CodeBits)
	}
	if _, err := parseConsistency(o.Consistency); err != nil {
		errs = append(errs, err)
	}
	if o.BatchSize < 1 || o.Retries < 0 || o.Candidates < 1 || o.Shards < 1 || o.Replicas < 0 {
		errs = append(errs, errors.New("batch size, candidates and shards must be positive, retries and replicas not negative"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("milvus options: %w", errors.Join(errs...))
	}
	return nil
}

func parseConsistency(s string) (entity.ConsistencyLevel, error) {
	switch strings.ToLower(s) {
	case "strong":
		return entity.ClStrong, nil
	case "bounded":
		return entity.ClBounded, nil
	case "session":
		return entity.ClSession, nil
	case "eventually":
		return entity.ClEventually, nil
	}
	return 0, fmt.Errorf("consistency %q: want Strong, Bounded, Session or Eventually", s)
}
