package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/internal/dedup"
	"github.com/xmodal/xmodal/internal/testutil"
)

// TestDedupThroughTheBinary: xmodal run indexes the demo posts and three
// re-posts of one of their pictures and a mirrored copy of another; the
// re-posts join the original's
// cluster at ingest (xmodal.v1.cluster over the HTTP gateway), and xmodal
// dedup, started from the CLI, runs in the serving process and writes the
// same cluster (drift 0), its JSON Lines and its report.
func TestDedupThroughTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs xmodal processes")
	}
	root := testutil.MustRepoRoot(t)
	data := t.TempDir()
	run := startUserRun(t, data, freePort(t), freePort(t))
	run.mustCLI("post", filepath.Join(root, "testdata", "demo", "posts.jsonl"))
	var lines []string
	for i := 1; i <= 3; i++ {
		lines = append(lines, fmt.Sprintf(`{"schema":1,"id":"copy-%d","author":"reposter","created_at":"2026-11-2%dT10:00:00Z","text":"look at this","image_file":%q}`,
			i, i, filepath.Join(root, "testdata", "demo", "images", "demo-000013.jpg")))
	}
	// A mirrored copy of another picture joins by a canonical dihedral hash
	// (clusters.dihedral). (demo-000002: on these 128-pixel pictures PDQ's
	// DCT-derived mirror hash is 20-60 bits from the mirrored file's hash,
	// 22 for this one: TestCanonicalRealPhotos has the figures for photos.)
	mirrored := filepath.Join(t.TempDir(), "mirrored.jpg")
	writeMirrored(t, filepath.Join(root, "testdata", "demo", "images", "demo-000002.jpg"), mirrored)
	lines = append(lines, fmt.Sprintf(`{"schema":1,"id":"mirror-1","author":"reposter","created_at":"2026-11-25T10:00:00Z","text":"flipped","image_file":%q}`, mirrored))
	own := filepath.Join(t.TempDir(), "copies.jsonl")
	if err := os.WriteFile(own, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run.mustCLI("post", own); !strings.Contains(out, "4 indexed") {
		t.Fatalf("posting the copies:\n%s", out)
	}
	// Clustered at ingest.
	res, err := http.Post("http://"+run.http+"/v1/cluster", "application/json", strings.NewReader(`{"post_id":"copy-2"}`))
	if err != nil {
		t.Fatal(err)
	}
	var cl struct {
		Cluster struct {
			ID             uint64 `json:"id"`
			Size           int    `json:"size"`
			Representative struct {
				PostID string `json:"post_id"`
			} `json:"representative"`
		} `json:"cluster"`
		Members []struct {
			PostID string `json:"post_id"`
		} `json:"members"`
	}
	err = json.NewDecoder(res.Body).Decode(&cl)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("POST /v1/cluster: %d %v", res.StatusCode, err)
	}
	if cl.Cluster.Size < 4 || cl.Cluster.Representative.PostID != "post-demo-000013" || len(cl.Members) == 0 || cl.Members[0].PostID != "copy-3" {
		t.Fatalf("cluster of copy-2: %+v (want the original post-demo-000013 as representative, copy-3 newest)", cl)
	}
	copies := cl.Cluster.Size
	res, err = http.Post("http://"+run.http+"/v1/cluster", "application/json", strings.NewReader(`{"post_id":"mirror-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	cl.Members = nil
	err = json.NewDecoder(res.Body).Decode(&cl)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 || cl.Cluster.Representative.PostID != "post-demo-000002" {
		t.Fatalf("cluster of the mirrored copy: %d %v %+v (want post-demo-000002's)", res.StatusCode, err, cl)
	}

	out := run.mustCLI("dedup")
	if !strings.Contains(out, ": done") || !strings.Contains(out, "posts grouped differently by the incremental clusters: 0") {
		t.Fatalf("xmodal dedup:\n%s", out)
	}
	id := regexp.MustCompile(`job (dedup-\S+): done`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("no job id in:\n%s", out)
	}
	dir := filepath.Join(data, "dedup", id[1])
	b, err := os.ReadFile(filepath.Join(dir, "clusters.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	found, mirror := false, false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var c dedup.Cluster
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(c.Members, "copy-1") {
			found = c.Representative == "post-demo-000013" && slices.Contains(c.Members, "copy-3") && c.Size == copies
		}
		if slices.Contains(c.Members, "mirror-1") {
			mirror = c.Representative == "post-demo-000002"
		}
	}
	if !found || !mirror {
		t.Fatalf("clusters.jsonl lacks the copies' cluster of %d, or the mirrored copy's (%v):\n%s", copies, mirror, b)
	}
	if h, err := os.ReadFile(filepath.Join(dir, "report.html")); err != nil || !bytes.Contains(h, []byte("data:image/jpeg;base64,")) {
		t.Fatalf("report.html: %v", err)
	}
	// Status of the finished job, and a bad request.
	if out := run.mustCLI("dedup", "--status", id[1], "--json"); !strings.Contains(out, `"state": "done"`) {
		t.Fatalf("dedup --status:\n%s", out)
	}
	if out, err := run.cli("dedup", "--threshold", "300"); err == nil || !strings.Contains(out, "threshold 300") {
		t.Fatalf("dedup --threshold 300: %v\n%s", err, out)
	}
}

// writeMirrored writes the JPEG src mirrored left to right to dst (quality 95).
func writeMirrored(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	r := img.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
	for y := 0; y < r.Dy(); y++ {
		for x := 0; x < r.Dx(); x++ {
			out.Set(r.Dx()-1-x, y, img.At(r.Min.X+x, r.Min.Y+y))
		}
	}
	var enc bytes.Buffer
	if err := jpeg.Encode(&enc, out, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, enc.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
