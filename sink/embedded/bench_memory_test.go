package embedded

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
)

// procStatus returns fields of /proc/self/status in bytes (VmRSS, RssAnon,
// RssFile, ...).
func procStatus() map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 2 && fs[1] == "kB" {
			n, _ := strconv.ParseInt(fs[0], 10, 64)
			out[k] = n << 10
		}
	}
	return out
}

// BenchmarkMemoryPerRecord fills an index through Apply with synthetic
// records of realistic size (XMODAL_BENCH_RECORDS, default 100,000, dim
// XMODAL_BENCH_DIM, default 256): posts of an image and a caption, each
// giving an image, a text and a fused record, with a 3.5 KB thumbnail, a
// 60-250 byte text, an author among 10,000, 0-3 labels, PDQ hash and a
// 64-bit code. It then reopens the index (what `xmodal run` does on start)
// and reports the Go heap per record, the process RSS split into anonymous
// memory and mapped file pages (the bbolt file; RssFile), against the raw
// vectors. With XMODAL_BENCH_WINDOWS=1 (image.neardup_windows) each image record also carries MaxWindows (64) near-duplicate
// windows (random hashes and geometry) and the reopened index has built
// their tables before it is measured. It prints a table; b.N is ignored.
func BenchmarkMemoryPerRecord(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("XMODAL_BENCH_RECORDS")); err == nil && v > 0 {
		n = v
	}
	dim := 256
	if v, err := strconv.Atoi(os.Getenv("XMODAL_BENCH_DIM")); err == nil && v > 0 {
		dim = v
	}
	windows := os.Getenv("XMODAL_BENCH_WINDOWS") == "1"
	path := filepath.Join(b.TempDir(), "index.db")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	runtime.GC()
	debug.FreeOSMemory()
	empty := procStatus()

	ix, err := Open(ctx, Options{Path: path, Dim: dim, ModelVersion: "bench@1", Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	thumb := make([]byte, 3500)
	for i := range thumb {
		thumb[i] = byte(rng.Uint32())
	}
	words := strings.Fields("sunset bridge city rain coffee morning run marathon council bike lanes ramen night weather alert weekend photo friends family dog cat beach")
	labels := []string{"cat", "dog", "news", "sport", "food", "travel", "art", "music"}
	start := time.Now()
	const perTx = 600
	var changes []domain.Change
	written := 0
	for post := 0; written < n; post++ {
		id := fmt.Sprintf("post-%09d", post)
		var text strings.Builder
		for text.Len() < 60+rng.IntN(190) {
			text.WriteString(words[rng.IntN(len(words))] + " ")
		}
		var ls []string
		for range rng.IntN(4) {
			ls = append(ls, labels[rng.IntN(len(labels))])
		}
		base := domain.Record{PostID: id, Author: fmt.Sprintf("user%05d", rng.IntN(10000)), ModelVersion: "bench@1",
			CreatedAt: time.Unix(1_790_000_000+int64(post), 0).UTC(), Labels: ls, Text: text.String(),
			MediaURL: "https://cdn.example.com/img/" + id + ".jpg", Thumbnail: thumb, Preprocess: "fast"}
		var recs []domain.Record
		for _, m := range domain.Modalities {
			if written == n {
				break
			}
			r := base
			r.Modality, r.PK = m, domain.PrimaryKey(id, m)
			r.Vector = make([]float32, dim)
			for i := range r.Vector {
				r.Vector[i] = float32(rng.NormFloat64())
			}
			r.Code = make([]byte, 8)
			for i := range r.Code {
				r.Code[i] = byte(rng.Uint32())
			}
			if m == domain.ModalityImage {
				r.PDQ = make([]byte, domain.PDQBytes)
				for i := range r.PDQ {
					r.PDQ[i] = byte(rng.Uint32())
				}
				r.PDQQuality = 90
				if windows {
					sig := make([]neardup.RegionHash, neardup.MaxWindows)
					for k := range sig {
						w := &sig[k]
						w.Kind = neardup.Window
						for i := range w.Hash {
							w.Hash[i] = byte(rng.Uint32())
						}
						w.Region = neardup.Region{CX: rng.Float32(), CY: rng.Float32(), Side: 0.1 + 0.5*rng.Float32(), Angle: 6 * (rng.Float32() - 0.5)}
					}
					r.Windows = neardup.AppendWindows(nil, 640, 480, sig)
				}
			}
			recs = append(recs, r)
			written++
		}
		changes = append(changes, domain.Change{PostID: id, Seq: uint64(post + 1), Records: recs})
		if len(changes)*3 >= perTx || written == n {
			if _, err := ix.Apply(ctx, changes); err != nil {
				b.Fatal(err)
			}
			changes = changes[:0]
		}
	}
	fill := time.Since(start)
	ix.Close()
	st, _ := os.Stat(path)
	runtime.GC()
	debug.FreeOSMemory()

	start = time.Now()
	ix, err = Open(ctx, Options{Path: path, Dim: dim, ModelVersion: "bench@1", Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	for !ix.WindowsReady() {
		time.Sleep(10 * time.Millisecond)
	}
	load := time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	after := procStatus()
	// Searching touches the vectors only; a reply reads its hits' display
	// fields from the store.
	if _, err := ix.Search(ctx, domain.VectorQuery{Vector: make([]float32, dim), K: 10}); err != nil {
		b.Fatal(err)
	}
	searched := procStatus()

	raw := int64(n) * int64(dim) * 4
	mb := func(v int64) string { return fmt.Sprintf("%.1f MB", float64(v)/1e6) }
	fmt.Printf("\nnear-duplicate windows: %v (%d per image record)", windows, neardup.MaxWindows)
	fmt.Printf("\n%d records (dim %d), store file %s, filled in %v, loaded in %v\n", n, dim, mb(st.Size()), fill.Round(time.Millisecond), load.Round(time.Millisecond))
	fmt.Printf("raw vectors                     %s (%d bytes per record)\n", mb(raw), raw/int64(n))
	fmt.Printf("Go heap in use after load       %s (%d bytes per record; vectors included)\n", mb(int64(ms.HeapInuse)), int64(ms.HeapInuse)/int64(n))
	fmt.Printf("RSS before the index            %s (anon %s, file %s)\n", mb(empty["VmRSS"]), mb(empty["RssAnon"]), mb(empty["RssFile"]))
	fmt.Printf("RSS after load                  %s (anon %s, mapped file pages %s)\n", mb(after["VmRSS"]), mb(after["RssAnon"]), mb(after["RssFile"]))
	fmt.Printf("RSS after a search              %s (anon %s, mapped file pages %s)\n", mb(searched["VmRSS"]), mb(searched["RssAnon"]), mb(searched["RssFile"]))
	grown := after["VmRSS"] - empty["VmRSS"]
	fmt.Printf("RSS growth per record           %d bytes (anon %d, file %d)\n", grown/int64(n),
		(after["RssAnon"]-empty["RssAnon"])/int64(n), (after["RssFile"]-empty["RssFile"])/int64(n))
	fmt.Printf("RSS / (raw vectors + RSS before) %.2f   (target <= 3)\n", float64(after["VmRSS"])/float64(raw+empty["VmRSS"]))
}
