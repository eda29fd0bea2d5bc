package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/jpeg"
	_ "image/png"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/image/draw"

	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/query/client"
)

// chromiumPath finds Debian's chromium; the test fails (not skips) without it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found on PATH: the search page test drives headless Chromium (apt-get install -y chromium)")
	return ""
}

// startWebApp runs `xmodal run` in-process with the sample posts indexed and
// returns the page's base URL.
func startWebApp(t *testing.T) (string, *app) {
	t.Helper()
	root := repoRoot(t)
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = freePort(t)
	cfg.HTTP.AdminToken = "e2e-admin-token-0123456789"
	cfg.Ingest.FetchWait = 20 * time.Millisecond
	cfg.Model = filepath.Join(root, "testdata", "models", "parity")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := startApp(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		a.Close()
	})
	posts, err := loadPosts(filepath.Join(root, "testdata", "demo", "posts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range posts {
		b, _ := json.Marshal(p)
		if err := ingest.Publish(ctx, js, "xmodal.posts", p.ID, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitIndexed(ctx, client.New(a.nc), posts); err != nil {
		t.Fatal(err)
	}
	return "http://" + cfg.HTTP.Listen, a
}

// dropFileJS drops a file with the given bytes on the element sel, as a user
// dragging it from a file manager would.
func dropFileJS(sel, name, mime string, data []byte) string {
	return `(() => {
	  const bin = atob("` + base64.StdEncoding.EncodeToString(data) + `");
	  const bytes = new Uint8Array(bin.length);
	  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
	  const dt = new DataTransfer();
	  dt.items.add(new File([bytes], "` + name + `", {type: "` + mime + `"}));
	  const target = document.querySelector("` + sel + `");
	  for (const type of ["dragenter", "dragover", "drop"]) {
	    target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt}));
	  }
	  return true;
	})()`
}

func TestSearchPageInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	base, _ := startWebApp(t)

	res, err := http.Get(base + "/v1/")
	if err != nil {
		t.Fatal(err)
	}
	var eps struct{ Endpoints []string }
	json.NewDecoder(res.Body).Decode(&eps)
	res.Body.Close()
	hasNearDup := slices.Contains(eps.Endpoints, "neardup")
	t.Logf("endpoints %v", eps.Endpoints)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelC := chromedp.NewContext(actx)
	defer cancelC()
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	defer cancelT()
	shot := func(name string) {
		dir := os.Getenv("XMODAL_SCREENSHOT_DIR")
		if dir == "" {
			return
		}
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile(filepath.Join(dir, name), png, 0o644)
		}
	}
	attr := func(sel, name string) string {
		r, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
		if err != nil {
			t.Fatalf("attribute %s of %s: %v", name, sel, err)
		}
		return r.Value
	}

	// 1. Type a query, see result images.
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)),
		chromedp.SendKeys(chromedp.CSS(`#q`), "two red stars"),
		chromedp.Click(chromedp.CSS(`#go`)),
		chromedp.WaitVisible(chromedp.CSS(`#results .hit img.thumb`)),
	)
	if err != nil {
		shot("text-query-failed.png")
		t.Fatalf("text query on the page: %v", err)
	}
	thumbs, err := chromedp.Run(ctx, chromedp.Poll[int](`Array.from(document.querySelectorAll("#results .hit img.thumb")).filter(i => i.complete && i.naturalWidth > 0).length`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		t.Fatalf("thumbnails did not load: %v", err)
	}
	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#status`)))
	if err != nil {
		t.Fatal(err)
	}
	shot("text-query.png")
	if thumbs == 0 || !strings.Contains(status, "hits") {
		t.Fatalf("text query: %d loaded thumbnails, status %q", thumbs, status)
	}
	t.Logf("first hit for the text: %s (%d thumbnails; %s)", attr(`#results .hit`, "data-post-id"), thumbs, status)

	// 2. Drop an image (a shrunken re-encoded copy of the first sample post's
	// picture), see its near-duplicates.
	posts, err := loadPosts(filepath.Join(repoRoot(t), "testdata", "demo", "posts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var want string
	var img []byte
	for _, p := range posts {
		if p.Image != nil {
			want, img = p.ID, shrunkJPEG(t, p.Image.Data)
			break
		}
	}
	err = chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](dropFileJS("#drop", "shrunk.jpg", "image/jpeg", img)),
		chromedp.WaitVisible(chromedp.CSS(`#dups-section[data-state]`)),
	)
	if err != nil {
		shot("drop-failed.png")
		t.Fatalf("drop on the page: %v", err)
	}
	state := attr(`#dups-section`, "data-state")
	if hasNearDup {
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("#dups .hit img.thumb") !== null`,
			chromedp.WithPollingTimeout(10*time.Second)))
		shot("drop.png")
		if err != nil || state != "ok" {
			note, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#dups-note`)))
			t.Fatalf("near-duplicates of the dropped image: state %q, note %q, err %v", state, note, err)
		}
		if dup := attr(`#dups .hit`, "data-post-id"); dup != want {
			t.Fatalf("nearest duplicate of %s's shrunken picture is %q", want, dup)
		}
	} else if state != "unavailable" {
		t.Errorf("near-duplicate panel state %q without the endpoint, want unavailable", state)
	}
	// The image search results show the photo itself first.
	_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("#results-title").textContent.includes("shrunk") && document.querySelector("#results .hit") !== null`,
		chromedp.WithPollingTimeout(10*time.Second)))
	shot("drop-results.png")
	if err != nil {
		t.Fatalf("image search from the drop: %v", err)
	}
	if first := attr(`#results .hit`, "data-post-id"); first != want {
		t.Fatalf("image search from the drop: first hit %q, want %s", first, want)
	}
}

// shrunkJPEG decodes an image and re-encodes it at 3/4 size as JPEG quality 80.
func shrunkJPEG(t *testing.T, data []byte) []byte {
	t.Helper()
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b := src.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx()*3/4, b.Dy()*3/4))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, b, draw.Src, nil)
	var out bytes.Buffer
	if err := jpeg.Encode(&out, dst, &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
