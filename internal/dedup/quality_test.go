//go:build bench

package dedup

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/internal/hamming"
	"github.com/xmodal/xmodal/internal/testutil"
)

// TestClusterQualityReposts is the quality benchmark of
// bench/results/clusters-quality.txt: the re-post generator's data
// (generated photo-like originals, each under every single edit and
// two-edit combination, plus edited distractors) hashed with whole-image
// PDQ at full resolution; clusters by the batch job and by the incremental
// store (which must agree); pairwise precision and recall against the truth
// (same original), and per edit the share of re-posts clustered with their
// original. Gated: it generates and hashes about 2,000 images.
//
//	XMODAL_CLUSTERQUALITY_ORIGINALS  generated originals (0: skip; 40 in the recorded run)
//	XMODAL_CLUSTERQUALITY_THRESHOLDS comma-separated thresholds (default 31)
//	XMODAL_CLUSTERQUALITY_DIHEDRAL   0: whole-image PDQ only (default: with
//	                                 canonical dihedral hashes, as clusters.dihedral)
//	XMODAL_CLUSTERQUALITY_REGIONS    1: with the hashes of content rectangles, as
//	                                 clusters.regions (default: without, the default)
//	XMODAL_CLUSTERQUALITY_WINDOWS    1: with the window relation, as clusters.windows
//	                                 (stored windows with content rectangles;
//	                                 clusters.Union incrementally, Options.Windows
//	                                 in the batch job)
//	XMODAL_CLUSTERQUALITY_FALSELINKS 1: log every direct link between posts of
//	                                 different pictures (what merged clusters
//	                                 that precision counts); a directory: also
//	                                 copy each link's two images there
//
// Beside the clusters it prints the near-dup method's lookup recall@1 on
// the same data (the target's peer), with windows as the embedded index
// answers with image.neardup_windows, and without them as Milvus (or an
// index without windows) answers: the originals' whole-image PDQ hashes,
// each query's whole-image, content-rectangle and cleaned hashes.
func TestClusterQualityReposts(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("XMODAL_CLUSTERQUALITY_ORIGINALS"))
	if n == 0 {
		t.Skip("set XMODAL_CLUSTERQUALITY_ORIGINALS to run the cluster quality benchmark (docs/clusters.md)")
	}
	thrs := []int{31}
	if s := os.Getenv("XMODAL_CLUSTERQUALITY_THRESHOLDS"); s != "" {
		thrs = nil
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			thrs = append(thrs, v)
		}
	}
	dihedral := os.Getenv("XMODAL_CLUSTERQUALITY_DIHEDRAL") != "0"
	regions := os.Getenv("XMODAL_CLUSTERQUALITY_REGIONS") == "1"
	windows := os.Getenv("XMODAL_CLUSTERQUALITY_WINDOWS") == "1"
	dir := t.TempDir()
	if _, err := reposts.WriteSet(context.Background(), reposts.SetOptions{Generated: n, Distractors: n * 10, Seed: 21, Out: dir}); err != nil {
		t.Fatal(err)
	}
	type post struct{ file, truth, edit string }
	var posts []post
	origs, _ := filepath.Glob(filepath.Join(dir, "originals", "*.jpg"))
	for _, f := range origs {
		posts = append(posts, post{f, strings.TrimSuffix(filepath.Base(f), ".jpg"), "original"})
	}
	mf, err := os.Open(filepath.Join(dir, "manifest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(mf)
	for i := 0; sc.Scan(); i++ {
		var e reposts.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		truth := e.Original
		if truth == "" {
			truth = fmt.Sprintf("distractor-%d", i)
		}
		posts = append(posts, post{filepath.Join(dir, e.File), truth, e.Edit})
	}
	mf.Close()
	items := make([]Item, len(posts))
	variants := make([][8]hamming.Code, len(posts)) // for the lookup's recall beside the clusters'
	hs := pdq.Hasher{MaxSide: -1}
	nd := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	nregions, nframed, nalone := 0, 0, 0
	for i, p := range posts {
		img := decodeFile(t, p.file)
		dih, canon, _ := hs.DihedralCanonical(img)
		for d := range dih {
			variants[i][d], _ = hamming.FromBytes(dih[d][:])
		}
		items[i] = Item{Post: fmt.Sprintf("p%05d", i), At: int64(i), Sig: variants[i][0]}
		if windows { // as cmd/xmodal's ingestWindows with clusters.windows
			ws, content, err := nd.WindowsIn(img)
			if err != nil {
				t.Fatal(err)
			}
			if len(ws) > 0 {
				items[i].Windows = neardup.AppendWindowsIn(nil, img.Bounds().Dx(), img.Bounds().Dy(), ws, content)
			}
		}
		if dihedral {
			for j, d := range canon {
				items[i].Canon[j] = variants[i][d]
			}
			items[i].NCanon = len(canon)
		}
		if regions { // as cmd/xmodal's ingestRegions
			_, _, _, rs, framed, err := nd.ContentHashes(img, dihedral, neardup.DefaultMinQuality)
			if err != nil {
				t.Fatal(err)
			}
			for k := 0; k+32 <= len(rs); k += 32 {
				c, _ := hamming.FromBytes(rs[k : k+32])
				items[i].Regions = append(items[i].Regions, c)
			}
			if len(rs) > 0 {
				nregions++
			}
			switch {
			case framed && len(items[i].Regions) > 0:
				// A framed image links by its regions alone (as the
				// embedded index's signature).
				items[i].Sig, items[i].NCanon, items[i].Regions = items[i].Regions[0], 0, items[i].Regions[1:]
				nframed++
			case framed:
				// Its picture too flat to hash: it joins no cluster
				// (clusters.Signer). A random hash, more than 31 bits
				// from every other with near certainty, stands in.
				h := testutil.RandomPDQ(rand.New(rand.NewPCG(uint64(i), 0x616c6f6e65)))
				c, _ := hamming.FromBytes(h[:])
				items[i] = Item{Post: items[i].Post, At: items[i].At, Sig: c}
				nframed++
				nalone++
			}
		}
	}
	// The near-dup method's lookup on the same data beside the clusters
	// (the target is recall >= its recall@1), as xmodal eval neardup
	// measures it: the originals indexed with their signatures (with
	// windows: whole image, area and cleaned hashes, windows, patch;
	// without: the whole-image hash), each re-post's query (whole image,
	// content rectangles, their cleaned hashes; with windows also area
	// hashes and windows at two scales) searched, the top match its
	// original.
	method := nearDupLookup(t, nd, len(posts), windows, func(i int) (string, string, string) { return posts[i].file, posts[i].truth, posts[i].edit })
	mode := "whole-image PDQ"
	if dihedral {
		mode += ", canonical dihedral hashes (clusters.dihedral)"
	}
	if windows {
		mode += ", windows (clusters.windows)"
	}
	if regions {
		mode += fmt.Sprintf(", the hashes of content rectangles (clusters.regions; %d of %d images have some, %d framed, %d of them with no picture to hash)", nregions, len(posts), nframed, nalone)
	}
	t.Logf("%d originals, %d re-posts, %d distractors (re-post generator, seed 21), %s at full resolution", len(origs), len(posts)-len(origs)-10*n, 10*n, mode)
	for _, thr := range thrs {
		opt := Options{Threshold: thr}
		if windows {
			opt.Windows = neardup.NewLinker()
		}
		start := time.Now()
		uf, err := Components(context.Background(), items, opt)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		start = time.Now()
		part := incremental(t, items, thr, windows)
		t.Logf("threshold %d: batch job %v, incremental %v", thr, took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		if d := Drift(items, uf, part); d != 0 {
			t.Fatalf("threshold %d: the incremental clusters group %d posts differently from the batch job", thr, d)
		}
		var tp, fp, fn int
		for i := range items {
			for j := i + 1; j < len(items); j++ {
				same, truth := uf.Find(i) == uf.Find(j), posts[i].truth == posts[j].truth
				switch {
				case same && truth:
					tp++
				case same:
					fp++
				case truth:
					fn++
				}
			}
		}
		prec, rec := float64(tp)/float64(max(tp+fp, 1)), float64(tp)/float64(max(tp+fn, 1))
		t.Logf("threshold %d: pairwise precision %.4f, recall %.4f (%d true pairs, %d false, %d missed); incremental = batch partition",
			thr, prec, rec, tp, fp, fn)
		if dir := os.Getenv("XMODAL_CLUSTERQUALITY_FALSELINKS"); dir != "" {
			falseLinks(t, items, thr, windows, dir, func(i int) (string, string, string) { return posts[i].file, posts[i].truth, posts[i].edit })
		}
		origIdx := map[string]int{}
		for i, p := range posts {
			if p.edit == "original" {
				origIdx[p.truth] = i
			}
		}
		// Beside each edit's share of re-posts in their original's cluster,
		// the share a near-dup lookup finds (xmodal.v1.neardup without
		// windows: the re-post's eight dihedral hashes, the original's PDQ
		// hash within the threshold).
		hit, tot, look, meth := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
		for i, p := range posts {
			o, ok := origIdx[p.truth]
			if !ok || p.edit == "original" {
				continue
			}
			tot[p.edit]++
			if uf.Find(i) == uf.Find(o) {
				hit[p.edit]++
			}
			if method[i] {
				meth[p.edit]++
			}
			for _, v := range variants[i] {
				if hamming.Distance(v, items[o].Sig) <= thr {
					look[p.edit]++
					break
				}
			}
		}
		edits := make([]string, 0, len(tot))
		for e := range tot {
			edits = append(edits, e)
		}
		sort.Strings(edits)
		slices.SortStableFunc(edits, func(a, b string) int { return strings.Count(a, "+") - strings.Count(b, "+") })
		var b strings.Builder
		var sh, st, ch, ct, sl, cl, sm, cm int
		for _, e := range edits {
			fmt.Fprintf(&b, "\n  %22s %4d  %.3f  %.3f", e, tot[e], float64(hit[e])/float64(tot[e]), float64(look[e])/float64(tot[e]))
			if method != nil {
				fmt.Fprintf(&b, "  %.3f", float64(meth[e])/float64(tot[e]))
			}
			if strings.Contains(e, "+") {
				ch, ct, cl, cm = ch+hit[e], ct+tot[e], cl+look[e], cm+meth[e]
			} else {
				sh, st, sl, sm = sh+hit[e], st+tot[e], sl+look[e], sm+meth[e]
			}
		}
		if method != nil {
			how := "with windows"
			if !windows {
				how = "whole-image hashes indexed, as on Milvus"
			}
			fmt.Fprintf(&b, "\n  near-dup method's lookup (last column; %s), recall@1: single edits %.3f, two-edit combos %.3f", how, float64(sm)/float64(st), float64(cm)/float64(ct))
		}
		t.Logf("threshold %d: share of re-posts in their original's cluster, then found by a near-dup lookup, per edit:%s\n  all single edits %.3f (lookup %.3f), all two-edit combos %.3f (lookup %.3f)",
			thr, b.String(), float64(sh)/float64(st), float64(sl)/float64(st), float64(ch)/float64(ct), float64(cl)/float64(ct))
	}
}

// falseLinks logs, and counts by the two posts' edits, every direct link
// between posts of different pictures: by hashes (which of each post's
// hashes: 0 its Sig, then its canonical and region hashes as the job
// searches them) and by windows (with windows set). One such link merges
// two clusters and costs their product in false pairs. Unless dir is "1",
// it is a directory where the two images of each link are copied
// (link-N-0, link-N-1).
func falseLinks(t *testing.T, items []Item, thr int, windows bool, dir string, post func(i int) (file, truth, edit string)) {
	t.Helper()
	codes := make([][]hamming.Code, len(items))
	for i := range items {
		codes[i] = append([]hamming.Code{items[i].Sig}, items[i].extra()...)
	}
	byEdits := map[string]int{}
	n := 0
	note := func(i, j int, how string) {
		fi, ti, ei := post(i)
		fj, tj, ej := post(j)
		t.Logf("false link %d: %s (%s) ~ %s (%s): %s", n, ti, ei, tj, ej, how)
		if dir != "1" { // a directory: the two images of each link
			for k, f := range []string{fi, fj} {
				if b, err := os.ReadFile(f); err == nil {
					os.WriteFile(filepath.Join(dir, fmt.Sprintf("link-%d-%d%s", n, k, filepath.Ext(f))), b, 0o644)
				}
			}
		}
		n++
		if ei > ej {
			ei, ej = ej, ei
		}
		byEdits[ei+" ~ "+ej]++
	}
	for i := range items {
		_, ti, _ := post(i)
		for j := range i {
			if _, tj, _ := post(j); tj == ti {
				continue
			}
			best, bi, bj := 257, 0, 0
			for a, ca := range codes[i] {
				for b, cb := range codes[j] {
					if d := hamming.Distance(ca, cb); d < best {
						best, bi, bj = d, a, b
					}
				}
			}
			if best <= thr {
				note(i, j, fmt.Sprintf("hash %d ~ hash %d at %d bits", bi, bj, best))
			}
		}
	}
	if windows {
		linker := neardup.NewLinker()
		for i := range items {
			if items[i].Windows != nil {
				if err := linker.Add(uint64(i), items[i].Windows); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i := range items {
			if items[i].Windows == nil {
				continue
			}
			ns, err := linker.Neighbours(items[i].Windows, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, ti, _ := post(i)
			for _, m := range ns {
				if j := int(m); j < i {
					if _, tj, _ := post(j); tj != ti {
						note(i, j, "windows")
					}
				}
			}
		}
	}
	keys := make([]string, 0, len(byEdits))
	for k := range byEdits {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %5d  %s", byEdits[k], k)
	}
	t.Logf("threshold %d: direct links between different pictures, by the two posts' edits:%s", thr, b.String())
}

// nearDupLookup indexes the originals of n posts (post i: its file, truth
// and edit) by their near-dup signatures (without windows: their
// whole-image hashes only) and reports, for each re-post, whether the top
// match of its query (without windows: Hasher.QueryRects) is its original.
func nearDupLookup(t *testing.T, nd *neardup.Hasher, n int, windows bool, post func(i int) (file, truth, edit string)) map[int]bool {
	t.Helper()
	ix := neardup.NewIndexWith(neardup.NewMIHSearcher(false), neardup.NewMIHSearcher(false))
	orig := map[string]int64{}
	for i := range n {
		f, truth, edit := post(i)
		if edit != "original" {
			continue
		}
		img := decodeFile(t, f)
		sig, err := nd.Signatures(img)
		if err != nil {
			t.Fatal(err)
		}
		if !windows {
			sig = sig[:1] // the whole-image PDQ hash
		}
		ix.Add(int64(i), img.Bounds().Dx(), img.Bounds().Dy(), sig)
		orig[truth] = int64(i)
	}
	found := map[int]bool{}
	for i := range n {
		f, truth, edit := post(i)
		o, ok := orig[truth]
		if !ok || edit == "original" {
			continue
		}
		query := nd.Query
		if !windows {
			query = nd.QueryRects
		}
		q, err := query(decodeFile(t, f))
		if err != nil {
			t.Fatal(err)
		}
		ms := ix.Search(q, neardup.SearchOptions{K: 1})
		found[i] = len(ms) > 0 && ms[0].ID == o
	}
	return found
}

func incremental(t *testing.T, items []Item, thr int, windows bool) map[string]uint64 {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o644, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(clusters.Init); err != nil {
		t.Fatal(err)
	}
	var l clusters.Linker
	l, _ = clusters.NewPDQLinker(thr)
	if windows {
		l = clusters.Union{A: l, B: neardup.NewLinker()}
	}
	var s *clusters.Store
	if err := db.View(func(tx *bolt.Tx) (err error) { s, err = clusters.Open(tx, clusters.Options{Linker: l}); return }); err != nil {
		t.Fatal(err)
	}
	for lo := 0; lo < len(items); lo += 64 {
		if err := s.Update(db, func(tx *clusters.Txn) error {
			for _, it := range items[lo:min(lo+64, len(items))] {
				b := it.Sig.Bytes()
				var canon []byte
				for _, c := range it.Canon[:it.NCanon] {
					cb := c.Bytes()
					canon = append(canon, cb[:]...)
				}
				var rs []byte
				for _, c := range it.Regions {
					cb := c.Bytes()
					rs = append(rs, cb[:]...)
				}
				sig := clusters.PDQSignature(b[:], canon, rs)
				if windows {
					sig = clusters.UnionSignature(sig, it.Windows)
				}
				if _, err := tx.Join(it.Post, time.Unix(0, it.At), sig); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return s.Partition()
}

// decodeFile reads and decodes an image file as the hashers read it.
func decodeFile(t *testing.T, f string) image.Image {
	t.Helper()
	return testutil.DecodeImage(t, f)
}
