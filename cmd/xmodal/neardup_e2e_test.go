package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/testutil"
)

// Photos posted to `xmodal run` with image.neardup_windows get their
// near-duplicate windows at ingest, so `xmodal neardup` finds a crop of one, which whole-image PDQ
// misses, and says it was found by windows; --windows=false does not find
// it. After a restart the windows come back from the store.
func TestNearDupCropThroughRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs xmodal processes")
	}
	root := testutil.MustRepoRoot(t)
	dir := t.TempDir()
	posts, crop, rp := astronautCrop(t, dir)
	data := t.TempDir()
	natsAddr, httpAddr := freePort(t), freePort(t)
	run := startUserRun(t, data, natsAddr, httpAddr, "--image-neardup-windows=true")
	if out := run.mustCLI("post", posts); !strings.Contains(out, "3 indexed") {
		t.Fatalf("posting the photos:\n%s", out)
	}
	find := func() string { return findCropByWindows(t, run, crop) }
	if out := find(); !cropByWindows.MatchString(out) || !strings.Contains(out, "crops searched by windows") {
		t.Fatalf("neardup of a 75%% crop of a posted photo:\n%s", out)
	}
	if out := run.mustCLI("neardup", "--image", crop, "--windows=false"); !strings.Contains(out, "0 matches") {
		t.Errorf("neardup --windows=false found the crop:\n%s", out)
	}
	run.stop()
	run = startUserRun(t, data, natsAddr, httpAddr, "--image-neardup-windows=true")
	if out := find(); !cropByWindows.MatchString(out) {
		t.Errorf("after a restart:\n%s", out)
	}
	// The other way round: the crop posted, the photo with --parts finds
	// it as a part, and where it lies in the photo.
	cropPost := filepath.Join(dir, "crop.jsonl")
	line := fmt.Sprintf(`{"schema":1,"id":"crop-astronaut","author":"reposter","created_at":"2026-11-05T10:00:00Z","text":"a crop","image_file":%q}`+"\n", crop)
	if err := os.WriteFile(cropPost, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run.mustCLI("post", cropPost); !strings.Contains(out, "1 indexed") {
		t.Fatalf("posting the crop:\n%s", out)
	}
	photo := filepath.Join(root, "testdata", "neardup", "photos", "astronaut.jpg")
	sh := rp.Shown
	asPart := regexp.MustCompile(`(?m)^\s+\d+\s+part: \d+ windows, at (\d+),(\d+)-(\d+),(\d+) of the query\s+\d+\s+\S+\s+crop-astronaut\s`)
	var out string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if out = run.mustCLI("neardup", "--image", photo, "--parts"); asPart.MatchString(out) {
			break
		}
	}
	m := asPart.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("neardup --parts of the photo did not find its posted crop (cut at %v):\n%s", sh, out)
	}
	for i, want := range []int{sh.Min.X, sh.Min.Y, sh.Max.X, sh.Max.Y} {
		if got, _ := strconv.Atoi(m[i+1]); got < want-8 || got > want+8 {
			t.Errorf("the crop cut at %v was reported at %v", sh, m[1:])
			break
		}
	}
	if out := run.mustCLI("neardup", "--image", photo); strings.Contains(out, "crop-astronaut") {
		t.Errorf("neardup without --parts found the crop:\n%s", out)
	}
}

// With clusters.regions, a meme (a caption band added) and a screenshot of
// a photo posted to `xmodal run` join the photo's cluster at ingest: the
// media stage gives their records the hashes of their content rectangles.
func TestMemeClustersThroughRun(t *testing.T) {
	clustersThroughRun(t, []reposts.Kind{reposts.Caption, reposts.Screenshot}, "--clusters-regions=true")
}

// TestCropClustersThroughRun: with clusters.windows (and the windows it
// reads, image.neardup_windows), crops of a photo posted through `xmodal
// run` join the photo's cluster.
func TestCropClustersThroughRun(t *testing.T) {
	clustersThroughRun(t, []reposts.Kind{reposts.Crop90, reposts.Crop75}, "--image-neardup-windows=true", "--clusters-windows=true")
}

// clustersThroughRun posts a photo, an unrelated photo and the photo under
// each of kinds through `xmodal run` with flags, and checks that each
// edited copy is in the photo's cluster, of the photo and its copies only.
func clustersThroughRun(t *testing.T, kinds []reposts.Kind, flags ...string) {
	if testing.Short() {
		t.Skip("runs xmodal processes")
	}
	root := testutil.MustRepoRoot(t)
	dir := t.TempDir()
	src := filepath.Join(root, "testdata", "neardup", "photos", "astronaut.jpg")
	img := testutil.DecodeImage(t, src)
	lines := []string{
		fmt.Sprintf(`{"schema":1,"id":"photo","author":"skimage","created_at":"2026-11-01T10:00:00Z","text":"a photo","image_file":%q}`, src),
		fmt.Sprintf(`{"schema":1,"id":"other","author":"skimage","created_at":"2026-11-01T11:00:00Z","text":"a photo","image_file":%q}`,
			filepath.Join(root, "testdata", "neardup", "photos", "coffee.jpg")),
	}
	for i, k := range kinds {
		rp, err := reposts.Apply(img, []reposts.Kind{k}, rand.New(rand.NewPCG(uint64(i), 3)))
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, string(k)+".png")
		writePNG(t, file, rp.Image)
		lines = append(lines, fmt.Sprintf(`{"schema":1,"id":"%s","author":"reposter","created_at":"2026-11-0%dT10:00:00Z","text":"lol","image_file":%q}`, k, i+2, file))
	}
	posts := filepath.Join(dir, "posts.jsonl")
	if err := os.WriteFile(posts, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := startUserRun(t, t.TempDir(), freePort(t), freePort(t), flags...)
	if out := run.mustCLI("post", posts); !strings.Contains(out, fmt.Sprintf("%d indexed", 2+len(kinds))) {
		t.Fatalf("posting:\n%s", out)
	}
	for _, k := range kinds {
		id := string(k)
		res, err := http.Post("http://"+run.http+"/v1/cluster", "application/json", strings.NewReader(`{"post_id":"`+id+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		var cl struct {
			Cluster struct {
				Size           int `json:"size"`
				Representative struct {
					PostID string `json:"post_id"`
				} `json:"representative"`
			} `json:"cluster"`
		}
		err = json.NewDecoder(res.Body).Decode(&cl)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("POST /v1/cluster %s: %d %v", id, res.StatusCode, err)
		}
		if cl.Cluster.Representative.PostID != "photo" || cl.Cluster.Size != 1+len(kinds) {
			t.Errorf("the cluster of %s: %+v, want the photo's, of %d posts", id, cl.Cluster, 1+len(kinds))
		}
	}
}

// writePNG writes img to path as a PNG file.
func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// astronautCrop writes three committed photos as posts (photos.jsonl in
// dir) and a 75 % crop of the first, astronaut.jpg, as crop.png, which
// whole-image PDQ misses.
func astronautCrop(t *testing.T, dir string) (posts, crop string, rp *reposts.Repost) {
	t.Helper()
	root := testutil.MustRepoRoot(t)
	var lines []string
	for i, name := range []string{"astronaut", "coffee", "chelsea"} {
		src := filepath.Join(root, "testdata", "neardup", "photos", name+".jpg")
		lines = append(lines, fmt.Sprintf(`{"schema":1,"id":"photo-%s","author":"skimage","created_at":"2026-11-0%dT10:00:00Z","text":"a photo","image_file":%q}`, name, i+1, src))
	}
	posts = filepath.Join(dir, "photos.jsonl")
	if err := os.WriteFile(posts, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "testdata", "neardup", "photos", "astronaut.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := pdq.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	rp, err = reposts.Apply(img, []reposts.Kind{reposts.Crop75}, rand.New(rand.NewPCG(4, 11)))
	if err != nil {
		t.Fatal(err)
	}
	crop = filepath.Join(dir, "crop.png")
	writePNG(t, crop, rp.Image)
	orig, _ := (&pdq.Hasher{MaxSide: -1}).Hash(img)
	if h, _ := (&pdq.Hasher{MaxSide: -1}).Hash(rp.Image); pdq.Distance(h, orig) <= 31 {
		t.Fatalf("the crop is within PDQ's bound of the original (%d bits): the test shows nothing", pdq.Distance(h, orig))
	}
	return posts, crop, rp
}

// cropByWindows is `xmodal neardup`'s line of astronautCrop's match by windows.
var cropByWindows = regexp.MustCompile(`(?m)^\s+1\s+\d+ of \d+ windows, shows \d+% x \d+%\s+\d+\s+original\s+photo-astronaut\s`)

// findCropByWindows runs `xmodal neardup --image crop` until it finds the
// crop by windows (the window tables take the posts asynchronously), for
// up to 30 s, and returns its last output.
func findCropByWindows(t *testing.T, run *userRun, crop string) string {
	t.Helper()
	var out string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out = run.mustCLI("neardup", "--image", crop)
		if cropByWindows.MatchString(out) {
			break
		}
	}
	return out
}

// On a Milvus index, `xmodal run` with image.neardup_windows computes each
// image's windows at ingest and shares them through JetStream (Milvus rows
// keep whole-image PDQ only); `xmodal neardup` finds a crop of a posted
// photo by them, which whole-image PDQ misses, and says windows were
// searched; after a restart the windows come back from the stream.
// Without the option the same deployment's reply
// says windows are unavailable and finds nothing.
func TestNearDupCropOnMilvus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs xmodal processes and a Milvus server")
	}
	addr := milvusServer.Need(t)
	collection := fmt.Sprintf("t_ndwin_%04x", rand.IntN(1<<16))
	t.Cleanup(func() { dropMilvusCollections(t, addr, collection) })
	dir := t.TempDir()
	posts, crop, _ := astronautCrop(t, dir)
	data := t.TempDir()
	natsAddr, httpAddr := freePort(t), freePort(t)
	flags := []string{"--milvus-address", addr, "--milvus-collection", collection, "--image-neardup-windows=true"}
	run := startUserRun(t, data, natsAddr, httpAddr, flags...)
	if out := run.mustCLI("post", posts); !strings.Contains(out, "3 indexed") {
		t.Fatalf("posting the photos:\n%s", out)
	}
	if out := findCropByWindows(t, run, crop); !cropByWindows.MatchString(out) || !strings.Contains(out, "crops searched by windows") {
		t.Fatalf("neardup of a 75%% crop of a posted photo on Milvus:\n%s", out)
	}
	if out := run.mustCLI("neardup", "--image", crop, "--windows=false"); !strings.Contains(out, "0 matches") {
		t.Errorf("neardup --windows=false found the crop:\n%s", out)
	}
	run.stop()
	// The local copy is rebuilt from the stream (the embedded NATS
	// server's store under data) at every start.
	run = startUserRun(t, data, natsAddr, httpAddr, flags...)
	if out := findCropByWindows(t, run, crop); !cropByWindows.MatchString(out) {
		t.Errorf("after a restart:\n%s", out)
	}
	run.stop()
	run = startUserRun(t, data, natsAddr, httpAddr, flags[:4]...)
	if out := run.mustCLI("neardup", "--image", crop); !strings.Contains(out, "0 matches") || strings.Contains(out, "crops searched by windows") {
		t.Errorf("neardup with image.neardup_windows off:\n%s", out)
	}
}

// dropMilvusCollections drops the alias collection and every collection
// whose name starts with it.
func dropMilvusCollections(t *testing.T, addr, collection string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := milvusclient.New(ctx, &milvusclient.ClientConfig{Address: addr})
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer c.Close(ctx)
	_ = c.DropAlias(ctx, milvusclient.NewDropAliasOption(collection))
	names, err := c.ListCollections(ctx, milvusclient.NewListCollectionOption())
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	for _, n := range names {
		if strings.HasPrefix(n, collection) {
			_ = c.DropCollection(ctx, milvusclient.NewDropCollectionOption(n))
		}
	}
}
