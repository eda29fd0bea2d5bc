package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	_ "image/png"
	"net/http"
	"net/url"
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

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query/client"
)

// chromiumPath finds Debian's chromium; without it the test ends through
// testutil.Unavailable (a failure under CI=true).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testutil.Unavailable(t, "Chromium", "chromium not found on PATH: the search page test drives headless Chromium (scripts/deps.sh, or apt-get install -y chromium)")
	return ""
}

// webAdminToken is the admin token of the page tests' server.
const webAdminToken = "e2e-admin-token-0123456789"

// text reads the buffer under its lock.
func (b *syncBuffer) text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

// startWebApp runs `xmodal run` in-process with the sample posts indexed and
// returns the page's base URL, the app and its log.
func startWebApp(t *testing.T) (string, *app, *syncBuffer, []domain.Post) {
	t.Helper()
	requireORT(t)
	root := testutil.MustRepoRoot(t)
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = freePort(t)
	cfg.HTTP.AdminToken = webAdminToken
	cfg.HTTP.PostURL = "https://social.example/p/{id}"
	cfg.Ingest.FetchWait = 20 * time.Millisecond
	cfg.Model = filepath.Join(root, "testdata", "models", "demo")
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	a := runTestApp(t, ctx, cancel, cfg, logs)
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
	return "http://" + cfg.HTTP.Listen, a, logs, posts
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

// browser is a headless Chromium tab on the page.
type browser struct {
	t       *testing.T
	ctx     context.Context
	base    string
	shotDir string // XMODAL_SCREENSHOT_DIR: screenshots go there (docs/screenshots)
}

func newBrowser(t *testing.T, base string) *browser {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
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
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(cancelC)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelT)
	return &browser{t: t, ctx: ctx, base: base, shotDir: os.Getenv("XMODAL_SCREENSHOT_DIR")}
}

// shot saves what the viewport shows, when screenshots are asked for.
func (b *browser) shot(name string) {
	if b.shotDir == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.shotDir, name), png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

// do runs steps; on failure it keeps a screenshot and fails the test.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-") + ".png")
		b.t.Fatalf("%s: %v", what, err)
	}
}

// wait polls a JavaScript predicate until it is true.
func (b *browser) wait(what, expr string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-") + ".png")
		state, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`location.search + " | status: " + document.querySelector("#status").textContent + " | nd: " + document.querySelector("#nd-status").textContent + " | error: " + document.querySelector("#error").textContent`))
		b.t.Fatalf("%s: %v (page: %s)", what, err, state)
	}
}

// setJS sets a form field's value as typing would (input and change events).
func setJS(sel, v string) chromedp.Action[chromedp.Void] {
	js, _ := json.Marshal(v)
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %s;
	  e.dispatchEvent(new Event("input", {bubbles: true})); e.dispatchEvent(new Event("change", {bubbles: true})); })()`, sel, js))
}

func evalJS[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// cardsJS lists the result cards of a grid as {post, author, created, labels, modalities}.
const cardsJS = `Array.from(document.querySelectorAll("%s .hit")).map(c => ({
  post: c.dataset.postId,
  author: (c.querySelector(".author") || {textContent: ""}).textContent.replace(/^@/, ""),
  created: (c.querySelector("time") || {dateTime: ""}).dateTime,
  labels: Array.from(c.querySelectorAll(".label")).map(l => l.textContent),
  mods: Array.from(c.querySelectorAll(".badge.image, .badge.text, .badge.fused")).map(l => l.textContent.split(" ")[0]),
  link: (c.querySelector("a.post-link") || {href: ""}).href,
  distance: (c.querySelector(".score") || {textContent: ""}).textContent,
}))`

type pageCard struct {
	Post, Author, Created, Link, Distance string
	Labels, Mods                          []string
}

func (b *browser) cards(grid string) []pageCard {
	return evalJS[[]pageCard](b, fmt.Sprintf(cardsJS, grid))
}

func (b *browser) query() url.Values {
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		b.t.Fatal(err)
	}
	return u.Query()
}

// TestSearchPageInChromium drives the moderator's page in headless Chromium:
// a text search, filters by author, labels and time (state in the URL, the
// back button, a shared link), results grouped by post under any, blurred
// pictures revealed on click, links to the post, image search by drop, the
// near-duplicate view (distance explained, a low-quality warning), keyboard
// navigation, and a bulk takedown with a reason that lands in the audit log.
// With XMODAL_SCREENSHOT_DIR set it saves the screenshots in docs/screenshots.
func TestSearchPageInChromium(t *testing.T) {
	base, _, logs, posts := startWebApp(t)
	res, err := http.Get(base + "/v1/")
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Endpoints []string
		Admin     bool
	}
	json.NewDecoder(res.Body).Decode(&idx)
	res.Body.Close()
	if !idx.Admin || !slices.Contains(idx.Endpoints, "neardup") {
		t.Fatalf("GET /v1/: %+v", idx)
	}
	b := newBrowser(t, base)
	byID := map[string]domain.Post{}
	for _, p := range posts {
		byID[p.ID] = p
	}

	// 1. A text search, target image: ranked cards with their pictures
	// blurred, created_at, labels and a link to the post.
	b.do("open the page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)))
	b.do("text query",
		chromedp.SendKeys(chromedp.CSS(`#q`), "two red stars"),
		setJS(`#target`, "image"),
		chromedp.Click(chromedp.CSS(`#go`)),
	)
	b.wait("text results", `document.querySelectorAll("#results .hit img.thumb").length > 0 && document.querySelector("#status").dataset.hits`)
	b.wait("thumbnails loaded", `Array.from(document.querySelectorAll("#results img.thumb")).every(i => i.complete && i.naturalWidth > 0)`)
	q := b.query()
	if q.Get("tab") != "search" || q.Get("q") != "two red stars" || q.Get("target") != "image" {
		t.Fatalf("URL after the search: %v", q)
	}
	first := b.cards("#results")
	if len(first) == 0 {
		t.Fatal("no result cards")
	}
	for _, c := range first {
		p, ok := byID[c.Post]
		if !ok {
			t.Fatalf("card of unknown post %q", c.Post)
		}
		if c.Author != p.Author || c.Created != p.CreatedAt.UTC().Format(time.RFC3339) || !slices.Equal(c.Labels, p.Labels) {
			t.Errorf("card %s shows author %q created %q labels %v; the post has %q %q %v", c.Post, c.Author, c.Created, c.Labels,
				p.Author, p.CreatedAt.UTC().Format(time.RFC3339), p.Labels)
		}
		if c.Link != "https://social.example/p/"+c.Post {
			t.Errorf("card %s links to %q", c.Post, c.Link)
		}
		if len(c.Mods) != 1 || c.Mods[0] != "image" {
			t.Errorf("target image, card %s shows modalities %v", c.Post, c.Mods)
		}
	}
	blurred := `getComputedStyle(document.querySelector("#results .hit img.thumb")).filter`
	if f := evalJS[string](b, blurred); !strings.Contains(f, "blur") {
		t.Fatalf("a result's picture is not blurred by default (filter %q)", f)
	}
	b.shot("search-desktop.png")
	b.do("reveal a picture", chromedp.Click(chromedp.CSS(`#results .hit .thumbwrap`)))
	if f := evalJS[string](b, blurred); f != "none" {
		t.Fatalf("a clicked picture is still filtered: %q", f)
	}

	// 2. Filters: author, then labels and a time window; each lands in the URL.
	author := first[0].Author
	b.do("filter by author", setJS(`#author`, author), chromedp.Click(chromedp.CSS(`#go`)))
	b.wait("author results", `location.search.includes("author=") && document.querySelector("#status").dataset.hits`)
	for _, c := range b.cards("#results") {
		if c.Author != author {
			t.Errorf("author filter %q: card %s by %q", author, c.Post, c.Author)
		}
	}
	since, until := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 12, 0, 1, 0, time.UTC)
	b.do("filter by labels and time",
		setJS(`#author`, ""),
		setJS(`#labels`, "red, blue"),
		setJS(`#since`, since.Format("2006-01-02T15:04")), // the input drops ":00" seconds
		setJS(`#until`, until.Format("2006-01-02T15:04:05")),
		setJS(`#target`, "any"),
		chromedp.Click(chromedp.CSS(`#go`)),
	)
	b.wait("filtered results", `location.search.includes("since=") && location.search.includes("target=any") && document.querySelector("#status").dataset.hits`)
	q = b.query()
	if q.Get("labels") != "red,blue" || q.Get("since") != "2026-11-01T10:00:00Z" || q.Get("until") != "2026-11-01T12:00:01Z" {
		t.Fatalf("URL with filters: %v", q)
	}
	filtered := b.cards("#results")
	want := 0
	for _, p := range posts {
		if !p.CreatedAt.Before(since) && p.CreatedAt.Before(until) && (slices.Contains(p.Labels, "red") || slices.Contains(p.Labels, "blue")) {
			want++
		}
	}
	if len(filtered) != want || want == 0 {
		t.Errorf("labels red|blue, %s..%s: %d cards, want the %d such posts", since, until, len(filtered), want)
	}
	seen := map[string]bool{}
	for _, c := range filtered {
		p := byID[c.Post]
		if seen[c.Post] {
			t.Errorf("target any: post %s shown twice (results are grouped by post)", c.Post)
		}
		seen[c.Post] = true
		if p.CreatedAt.Before(since) || !p.CreatedAt.Before(until) || !(slices.Contains(p.Labels, "red") || slices.Contains(p.Labels, "blue")) {
			t.Errorf("card %s (created %s, labels %v) is outside the filters", c.Post, p.CreatedAt, p.Labels)
		}
		if len(c.Mods) < 2 {
			t.Errorf("target any: card %s shows only %v (each post has image, text and fused records)", c.Post, c.Mods)
		}
	}
	if !evalJS[bool](b, `!document.querySelector("#merge-note").hidden`) {
		t.Error("target any: the note that lists are merged by rank is hidden")
	}
	filteredURL := evalJS[string](b, `location.href`)

	// 3. The back button returns to the author search; a shared link opens
	// the filtered view as it was.
	b.do("back", chromedp.Evaluate[chromedp.Void](`history.back()`))
	b.wait("back to the author search", `document.querySelector("#author").value !== "" && !location.search.includes("since=") && document.querySelector("#status").dataset.hits`)
	b.do("open a shared link", chromedp.Navigate(filteredURL), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)))
	b.wait("shared view", `document.querySelector("#status").dataset.hits`)
	if again := b.cards("#results"); len(again) != len(filtered) || again[0].Post != filtered[0].Post ||
		evalJS[string](b, `document.querySelector("#labels").value`) != "red, blue" {
		t.Errorf("the shared link shows %d cards (first %v), want %d (first %s)", len(again), again, len(filtered), filtered[0].Post)
	}

	// 4. Search by a dropped picture: a shrunken copy of a post's picture
	// finds that post first.
	var dropID string
	var img []byte
	for _, p := range posts {
		if p.Image != nil {
			dropID, img = p.ID, shrunkJPEG(t, p.Image.Data)
			break
		}
	}
	b.do("a fresh search tab", chromedp.Navigate(base+"/?tab=search&target=image"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)))
	b.do("drop an image", chromedp.Evaluate[chromedp.Void](dropFileJS("#drop", "shrunk.jpg", "image/jpeg", img)))
	b.wait("image results", `document.querySelector("#status").textContent.includes("shrunk.jpg") && document.querySelector("#status").dataset.hits`)
	if c := b.cards("#results"); c[0].Post != dropID {
		t.Fatalf("image search from the drop: first hit %q, want %s", c[0].Post, dropID)
	}

	// 5. Near-duplicates of a result: the near-dup tab with the hash in the
	// URL, the picture itself at distance 0, the distance explained.
	b.do("near-duplicates of the first hit", chromedp.Click(chromedp.CSS(`#results .hit button.dup`)))
	b.wait("near-duplicates", `location.search.includes("tab=neardup") && document.querySelector("#tab-neardup").dataset.state === "ok"`)
	q = b.query()
	if len(q.Get("pdq")) != 64 {
		t.Fatalf("near-dup URL %v", q)
	}
	dups := b.cards("#dups")
	if len(dups) == 0 || dups[0].Post != dropID || dups[0].Distance != "distance 0" {
		t.Fatalf("near-duplicates of %s: %+v", dropID, dups)
	}
	if !evalJS[bool](b, `document.querySelector("#nd-explain").offsetParent !== null && document.querySelector("#nd-explain").textContent.includes("256 bits")`) {
		t.Error("the near-dup view does not explain the distance")
	}
	if evalJS[bool](b, `!document.querySelector("#nd-warning").hidden`) {
		t.Error("a well-textured picture got the low-quality warning")
	}
	b.shot("neardup-desktop.png")
	// A flat picture: its hash has quality 0, and the view says matches are unreliable.
	b.do("drop a flat picture", chromedp.Evaluate[chromedp.Void](dropFileJS("#nd-drop", "flat.jpg", "image/jpeg", flatJPEG(t))))
	b.wait("low-quality warning", `!document.querySelector("#nd-warning").hidden && document.querySelector("#nd-warning").textContent.includes("Low PDQ quality")`)
	b.do("back to the search tab", chromedp.Evaluate[chromedp.Void](`history.go(-2)`))
	b.wait("search tab again", `document.body.dataset.tab === "search"`)

	// 6. Keyboard: "/" focuses the search box, j/k move between cards, v
	// reveals, x selects.
	b.do("search for the keyboard", chromedp.Navigate(base+"/?tab=search&q=a+shape&target=any"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)))
	b.wait("results for the keyboard", `document.querySelectorAll("#results .hit").length >= 3`)
	b.do("slash", chromedp.KeyEvent("/"))
	b.wait(`"/" focuses the search box`, `document.activeElement.id === "q"`)
	if v := evalJS[string](b, `document.querySelector("#q").value`); v != "a shape" {
		t.Errorf(`after "/" the search box holds %q, want "a shape"`, v)
	}
	b.do("escape, j, j, k", chromedp.KeyEvent("\x1b"), chromedp.KeyEvent("j"), chromedp.KeyEvent("j"), chromedp.KeyEvent("j"), chromedp.KeyEvent("k"))
	if i := evalJS[int](b, `Array.from(document.querySelectorAll("#results .hit")).indexOf(document.activeElement)`); i != 1 {
		t.Errorf("after j j j k the focused card is #%d, want #1", i)
	}
	b.do("v and x", chromedp.KeyEvent("v"), chromedp.KeyEvent("x"))
	if !evalJS[bool](b, `document.activeElement.classList.contains("selected") && document.activeElement.querySelector(".thumbwrap, .noimg") !== null && (!document.activeElement.querySelector(".thumbwrap") || document.activeElement.querySelector(".thumbwrap").classList.contains("revealed"))`) {
		t.Error("v did not reveal or x did not select the focused card")
	}
	keyed := evalJS[string](b, `document.activeElement.dataset.postId`)

	// 7. Bulk takedown with a reason: select a second card by its checkbox,
	// take both down; they are marked, gone from a new search, and the
	// reason is in the audit log.
	b.do("select another card", chromedp.Click(chromedp.CSS(`#results .hit:nth-child(3) .pick`)))
	other := evalJS[string](b, `document.querySelector("#results .hit:nth-child(3)").dataset.postId`)
	if evalJS[string](b, `document.querySelector("#bulk-count").textContent`) != "2 selected" {
		t.Fatalf("bulk bar: %q", evalJS[string](b, `document.querySelector("#bulk").textContent`))
	}
	b.shot("bulk-desktop.png")
	const reason = "coordinated spam, ticket T-1942"
	b.do("take down",
		setJS(`#reason`, reason),
		setJS(`#token`, webAdminToken),
		chromedp.Click(chromedp.CSS(`#takedown`)),
	)
	b.wait("takedown done", `document.querySelector("#bulk").dataset.done === "2"`)
	if n := evalJS[int](b, `document.querySelectorAll("#results .hit.taken-down").length`); n != 2 {
		t.Errorf("%d cards marked taken down, want 2", n)
	}
	b.do("search again", chromedp.Navigate(base+"/?tab=search&q=a+shape&target=any&k=100"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)))
	b.wait("results after the takedown", `document.querySelector("#status").dataset.hits`)
	for _, c := range b.cards("#results") {
		if c.Post == keyed || c.Post == other {
			t.Errorf("post %s was taken down, yet a new search shows it", c.Post)
		}
	}
	audit := ""
	for _, l := range strings.Split(logs.text(), "\n") {
		if strings.Contains(l, "audit: takedown") {
			audit = l
		}
	}
	if !strings.Contains(audit, reason) || !strings.Contains(audit, keyed) || !strings.Contains(audit, other) {
		t.Errorf("audit log line %q lacks the reason or the ids %s, %s", audit, keyed, other)
	}

	// 8. At phone width the page still works: one search, screenshot.
	b.do("phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(base+"/?tab=search&q=a+green+triangle&target=any&k=8"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)))
	b.wait("phone results", `document.querySelectorAll("#results .hit img.thumb").length > 0`)
	if w := evalJS[int](b, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("at 390 px the page is %d px wide (it scrolls sideways)", w)
	}
	b.shot("search-phone.png")
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

// flatJPEG is a uniform grey picture: its PDQ hash has quality 0.
func flatJPEG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 96, 96))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.RGBA{128, 128, 128, 255}), image.Point{}, draw.Src)
	var out bytes.Buffer
	if err := jpeg.Encode(&out, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestBanksTabInChromium drives the page's Banks tab: the bank list, a bank
// created with the admin token, an image added by upload and a text by
// hand, an image looked up by dropping a shrunken copy (a PDQ match with
// its distance), a text and an MD5 looked up through the box (state in the
// URL), and the changes in the audit log.
func TestBanksTabInChromium(t *testing.T) {
	base, _, logs, posts := startWebApp(t)
	b := newBrowser(t, base)
	var orig []byte
	for _, p := range posts {
		if p.Image != nil {
			orig = p.Image.Data
			break
		}
	}
	b.do("open the banks tab", chromedp.Navigate(base+"/?tab=banks"), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)))
	b.wait("the bank list", `document.body.dataset.tab === "banks" && document.querySelector("#bk-list").dataset.banks === "0"`)
	b.do("create a bank",
		chromedp.Click(chromedp.CSS(`#bk-admin summary`)),
		setJS(`#bk-token`, webAdminToken),
		setJS(`#bk-name`, "known-shapes"),
		setJS(`#bk-labels`, "test, shapes"),
		setJS(`#bk-action`, "block"),
		chromedp.Click(chromedp.CSS(`#bk-create`)),
	)
	b.wait("the new bank listed", `document.querySelector('#bk-list tr[data-bank="known-shapes"]') !== null && document.querySelector("#bk-bank").value === "known-shapes"`)
	b.do("add an image by upload", chromedp.Evaluate[chromedp.Void](dropFileJS("#bk-add-drop", "banned.jpg", "image/jpeg", orig)))
	b.wait("image added", `document.querySelector("#bk-admin-status").textContent.includes("banned.jpg added (2 entries")`)
	b.do("add a text by hand", setJS(`#bk-type`, "text"), setJS(`#bk-signal`, "Buy followers now"), chromedp.Click(chromedp.CSS(`#bk-add`)))
	b.wait("text added", `document.querySelector("#bk-admin-status").textContent.includes("1 added")`)
	if row := evalJS[string](b, `document.querySelector('#bk-list tr[data-bank="known-shapes"]').textContent`); !strings.Contains(row, "block") || !strings.Contains(row, "pdq:1") || !strings.Contains(row, "text:1") {
		t.Errorf("the bank's row: %q", row)
	}

	// The upload swept the indexed posts: the post whose picture it is shows
	// under the latest matches, with its (blurred) thumbnail, source sweep.
	var postID string
	for _, p := range posts {
		if p.Image != nil {
			postID = p.ID
			break
		}
	}
	present := `document.querySelector('#bk-events tr[data-post-id="` + postID + `"] img.evthumb') !== null`
	for i := 0; i < 80 && !evalJS[bool](b, present); i++ {
		// The sweep runs in the background: show the tab again until it is in.
		b.do("reload the banks tab", chromedp.Evaluate[chromedp.Void](`xmodal.go("banks", {}, false)`))
		time.Sleep(250 * time.Millisecond)
	}
	b.wait("latest matches", present)
	time.Sleep(500 * time.Millisecond) // the last reload's requests settle before the next step
	if row := evalJS[string](b, `document.querySelector('#bk-events tr[data-post-id="`+postID+`"]').textContent`); !strings.Contains(row, "known-shapes") || !strings.Contains(row, "sweep") || !strings.Contains(row, "distance 0") {
		t.Errorf("latest match row: %q", row)
	}
	if f := evalJS[string](b, `getComputedStyle(document.querySelector("#bk-events img.evthumb")).filter`); !strings.Contains(f, "blur") {
		t.Errorf("a match's thumbnail is not blurred: %q", f)
	}

	// A shrunken copy of the banked picture matches by PDQ, not by MD5.
	b.do("look up a copy", chromedp.Evaluate[chromedp.Void](dropFileJS("#bk-match-drop", "copy.jpg", "image/jpeg", shrunkJPEG(t, orig))))
	b.wait("image lookup", `document.querySelector("#tab-banks").dataset.state === "match"`)
	rows := evalJS[[][]string](b, `Array.from(document.querySelectorAll("#bk-matches tbody tr")).map(r => Array.from(r.cells).map(c => c.textContent))`)
	if len(rows) != 1 || rows[0][0] != "known-shapes" || rows[0][1] != "block" || rows[0][2] != "shapes, test" || rows[0][3] != "pdq" || !strings.HasPrefix(rows[0][4], "distance ") {
		t.Fatalf("matches of the copy: %v", rows)
	}
	b.shot("banks-desktop.png")

	// The box: a text (normalised), then the original's MD5; each in the URL.
	b.do("look up a text", setJS(`#bk-q`, "BUY followers now!!!"), chromedp.Click(chromedp.CSS(`#bk-match`)))
	b.wait("text lookup", `location.search.includes("tab=banks") && location.search.includes("q=") && document.querySelector("#bk-status").textContent.includes("for BUY followers") && document.querySelector("#tab-banks").dataset.state === "match"`)
	if typ := evalJS[string](b, `document.querySelector("#bk-matches tbody tr").cells[3].textContent`); typ != "text" {
		t.Errorf("text lookup matched a %q entry", typ)
	}
	sum := md5.Sum(orig)
	b.do("open a shared MD5 lookup", chromedp.Navigate(base+"/?tab=banks&q="+hex.EncodeToString(sum[:])), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)))
	b.wait("md5 lookup", `document.querySelector("#tab-banks").dataset.state === "match" && document.querySelector("#bk-matches tbody tr").cells[3].textContent === "md5"`)
	b.do("look up something unknown", setJS(`#bk-q`, "nothing like it"), chromedp.Click(chromedp.CSS(`#bk-match`)))
	b.wait("no match", `document.querySelector("#tab-banks").dataset.state === "none" && document.querySelector("#bk-status").textContent.startsWith("no match")`)
	for _, want := range []string{`op=create_bank bank=known-shapes actor="search page"`, `op=add_entries bank=known-shapes actor="search page" added=2`} {
		if !strings.Contains(logs.text(), want) {
			t.Errorf("audit log lacks %q", want)
		}
	}
}
