package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/internal/bankstore"
	"github.com/xmodal/xmodal/internal/testutil"
)

// startBankApp runs `xmodal run` in-process (embedded NATS, the demo model)
// for the bank commands and returns its NATS URL.
func startBankApp(t *testing.T) (string, *syncBuffer) {
	t.Helper()
	requireORT(t)
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = ""
	cfg.Model = filepath.Join(testutil.MustRepoRoot(t), "testdata", "models", "demo")
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := startApp(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Close()
		if t.Failed() {
			t.Logf("xmodal log:\n%s", logs.text())
		}
	})
	return a.ns.ClientURL(), logs
}

// runBank runs `xmodal bank ARGS...` against the server at url.
func runBank(t *testing.T, url string, args ...string) (string, string, error) {
	t.Helper()
	root := newRoot()
	var out, errw bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetIn(strings.NewReader(""))
	root.SetArgs(append(append([]string{"bank"}, args...), "--nats-url", url, "--actor", "tester"))
	err := root.ExecuteContext(context.Background())
	return out.String(), errw.String(), err
}

func mustBank(t *testing.T, url string, args ...string) string {
	t.Helper()
	out, errw, err := runBank(t, url, args...)
	if err != nil {
		t.Fatalf("xmodal bank %s: %v\nstderr: %s", strings.Join(args, " "), err, errw)
	}
	return out
}

func seededPDQ(i int) string { return pdq.Hash(sha256.Sum256([]byte(fmt.Sprint("cli", i)))).String() }

// TestBankCLI: create, import a list with bad lines (each reported by number
// and reason, the good ones imported), ls, export → import → export round
// trips in both formats, add an image and match a rotated copy, rm.
func TestBankCLI(t *testing.T) {
	url, logs := startBankApp(t)
	dir := t.TempDir()
	mustBank(t, url, "create", "hashes", "--label", "test", "--action", "block", "--pdq-dihedral", "exact")
	if ls := mustBank(t, url, "ls"); !regexp.MustCompile(`hashes +true +block +31 +exact `).MatchString(ls) {
		t.Fatalf("ls after create --pdq-dihedral exact: %s", ls)
	}
	mustBank(t, url, "update", "hashes", "--pdq-dihedral", "off")
	if ls := mustBank(t, url, "ls"); !regexp.MustCompile(`hashes +true +block +31 +off `).MatchString(ls) {
		t.Fatalf("ls after update --pdq-dihedral off: %s", ls)
	}
	if _, _, err := runBank(t, url, "update", "hashes", "--pdq-dihedral", "sideways"); err == nil || !strings.Contains(err.Error(), `pdq_dihedral "sideways"`) {
		t.Fatalf("update --pdq-dihedral sideways: %v", err)
	}
	var b strings.Builder
	const n = 25000
	badAt := map[int]string{5: "pdq 1234", 12001: "sha1 " + strings.Repeat("ab", 20), n + 3: "pdq " + strings.Repeat("zz", 32)}
	line := 0
	for i := 0; line < n+3; i++ {
		line++
		if bad, ok := badAt[line]; ok {
			b.WriteString(bad + "\n")
			continue
		}
		switch i % 3 {
		case 0, 1:
			fmt.Fprintf(&b, "pdq %s\n", seededPDQ(i))
		default:
			fmt.Fprintf(&b, "video_md5 %032x\n", i)
		}
	}
	list := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(list, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errw, err := runBank(t, url, "import", "hashes", list)
	if !errors.Is(err, ErrBadLines) {
		t.Fatalf("import with bad lines: err %v, want ErrBadLines\n%s", err, errw)
	}
	for l := range badAt {
		if !strings.Contains(errw, fmt.Sprintf("line %d: ", l)) {
			t.Errorf("stderr does not report bad line %d:\n%s", l, errw)
		}
	}
	if !strings.Contains(errw, "line 12001: unknown signal type") || !strings.Contains(errw, "line 5: malformed signal") {
		t.Errorf("bad lines without their reasons:\n%s", errw)
	}
	good := line - len(badAt)
	if !strings.Contains(out, fmt.Sprintf("%d lines imported (%d added, 0 already present), 3 bad lines", good, good)) {
		t.Fatalf("import summary: %s", out)
	}
	ls := mustBank(t, url, "ls")
	if !strings.Contains(ls, "hashes") || !strings.Contains(ls, fmt.Sprint(good)) || !strings.Contains(ls, "block") {
		t.Fatalf("ls: %s", ls)
	}
	// Import again: nothing new.
	out, _, err = runBank(t, url, "import", "hashes", list, "--quiet")
	if !errors.Is(err, ErrBadLines) || !strings.Contains(out, fmt.Sprintf("(0 added, %d already present)", good)) {
		t.Fatalf("second import: %v %s", err, out)
	}
	for _, f := range []string{"lines", "csv"} {
		bank2 := "copy-" + f
		mustBank(t, url, "create", bank2)
		exp1 := filepath.Join(dir, "exp1."+f)
		mustBank(t, url, "export", "hashes", "--format", f, "-o", exp1)
		if out := mustBank(t, url, "import", bank2, exp1, "--format", f, "--quiet"); !strings.Contains(out, fmt.Sprintf("%d lines imported (%d added", good, good)) {
			t.Fatalf("%s re-import: %s", f, out)
		}
		exp2 := filepath.Join(dir, "exp2."+f)
		mustBank(t, url, "export", bank2, "--format", f, "-o", exp2)
		a, _ := os.ReadFile(exp1)
		c, _ := os.ReadFile(exp2)
		if !bytes.Equal(a, c) || len(a) == 0 {
			t.Fatalf("%s: import → export → import → export differs (%d vs %d bytes)", f, len(a), len(c))
		}
	}
	// Match a hash of the list, and an image added by upload through a rotated copy.
	if out := mustBank(t, url, "match", "--pdq", seededPDQ(1)); !strings.Contains(out, "hashes") || !strings.Contains(out, "block") {
		t.Fatalf("match --pdq: %s", out)
	}
	img := filepath.Join(testutil.MustRepoRoot(t), "testdata", "pdq", "images", "dih", "bridge-1-original.jpg")
	mustBank(t, url, "create", "uploads")
	if out := mustBank(t, url, "add", "uploads", "--image", img, "--text", "Buy followers NOW"); !strings.Contains(out, "3 added") {
		t.Fatalf("add: %s", out)
	}
	rot := filepath.Join(testutil.MustRepoRoot(t), "testdata", "pdq", "images", "dih", "bridge-4-rotate-270.jpg")
	out = mustBank(t, url, "match", "--image", rot)
	if !strings.Contains(out, "uploads") || !strings.Contains(out, "pdq") || !strings.Contains(out, "rotate") {
		t.Fatalf("match a rotated copy: %s", out)
	}
	if out := mustBank(t, url, "match", "--text", "buy followers now!"); !strings.Contains(out, "uploads") || !strings.Contains(out, "text") {
		t.Fatalf("match --text: %s", out)
	}
	// An image added with --crops: a crop of it (here 75 % of each side,
	// which its whole-image hash misses) matches by its windows.
	photo := filepath.Join(testutil.MustRepoRoot(t), "testdata", "neardup", "photos", "coffee.jpg")
	mustBank(t, url, "create", "crops")
	if out := mustBank(t, url, "add", "crops", "--image", photo, "--crops"); !strings.Contains(out, "2 added") {
		t.Fatalf("add --crops: %s", out)
	}
	if ls := mustBank(t, url, "ls"); !regexp.MustCompile(`crops .* pdq:1 crops:1 md5:1`).MatchString(ls) {
		t.Fatalf("ls after add --crops: %s", ls)
	}
	src := testutil.DecodeImage(t, photo)
	sb := src.Bounds()
	crop := image.NewRGBA(image.Rect(0, 0, sb.Dx()*3/4, sb.Dy()*3/4))
	draw.Draw(crop, crop.Bounds(), src, image.Pt(sb.Min.X+sb.Dx()/8, sb.Min.Y+sb.Dy()/10), draw.Src)
	cropPath := filepath.Join(dir, "crop.jpg")
	var cb bytes.Buffer
	if err := jpeg.Encode(&cb, crop, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cropPath, cb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out = mustBank(t, url, "match", "--image", cropPath)
	if !regexp.MustCompile(`crops .* pdq .* \(crop 7[0-9]%x7[0-9]% of the entry, [0-9]+ windows, pixels [01]\.[0-9]+\)`).MatchString(out) {
		t.Fatalf("match a crop of an image added with --crops: %s", out)
	}
	if _, _, err := runBank(t, url, "add", "crops", "--pdq", seededPDQ(7), "--crops"); err == nil || !strings.Contains(err.Error(), "--crops keeps the windows of --image files") {
		t.Fatalf("--crops without --image: %v", err)
	}
	tiny := filepath.Join(dir, "tiny.png")
	var tb bytes.Buffer
	png.Encode(&tb, image.NewGray(image.Rect(0, 0, 8, 8)))
	os.WriteFile(tiny, tb.Bytes(), 0o644)
	if _, _, err := runBank(t, url, "add", "crops", "--image", tiny, "--crops"); err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "too small") {
		t.Fatalf("--crops with an 8x8 image: %v", err)
	}
	entries := mustBank(t, url, "ls", "uploads")
	var textID string
	for _, l := range strings.Split(entries, "\n") {
		if strings.HasPrefix(l, "text-") {
			textID = strings.Fields(l)[0]
		}
	}
	if out := mustBank(t, url, "rm", "uploads", textID); !strings.Contains(out, "1 entries removed") {
		t.Fatalf("rm: %s", out)
	}
	if out := mustBank(t, url, "match", "--text", "buy followers now!"); !strings.Contains(out, "no match") {
		t.Fatalf("match after rm: %s", out)
	}
	// Bad input from the command line: clear errors.
	if _, _, err := runBank(t, url, "create", "hashes"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("create a taken name: %v", err)
	}
	if _, _, err := runBank(t, url, "add", "uploads", "--pdq", "abc"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("add a malformed hash: %v", err)
	}
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, nil, 0o644)
	if _, _, err := runBank(t, url, "import", "uploads", empty); err == nil || !strings.Contains(err.Error(), "empty import file") {
		t.Fatalf("import an empty file: %v", err)
	}
	mustBank(t, url, "delete", "uploads")
	if !strings.Contains(logs.text(), "audit: bank change") || !strings.Contains(logs.text(), "actor=tester") {
		t.Fatal("the changes are not in the audit log with the actor")
	}
}

// TestBankImportBench imports a python-threatexchange file of
// XMODAL_BANKIMPORT_N PDQ lines (set it to run: 1000000 for the recorded
// figure) through `xmodal bank import` into a running xmodal and reports
// lines per second, the heap after, and that a second process (a new store
// on the same NATS server) loads the bank.
func TestBankImportBench(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("XMODAL_BANKIMPORT_N"))
	if n <= 0 {
		t.Skip("set XMODAL_BANKIMPORT_N to run the import benchmark (docs/moderation.md)")
	}
	url, _ := startBankApp(t)
	mustBank(t, url, "create", "bench")
	path := filepath.Join(t.TempDir(), "list.txt")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		fmt.Fprintf(w, "pdq %s\n", seededPDQ(i))
	}
	w.Flush()
	f.Close()
	st, _ := os.Stat(path)
	start := time.Now()
	out := mustBank(t, url, "import", "bench", path, "--quiet")
	took := time.Since(start)
	t.Logf("%s", strings.TrimSpace(out))
	t.Logf("import of %d lines (%.1f MB): %.1f s, %.0f lines/s", n, float64(st.Size())/1e6, took.Seconds(), float64(n)/took.Seconds())
	// A new process loads the bank from the stream.
	_, js := testutil.ConnectJS(t, url)
	start = time.Now()
	bs, err := bankstore.Open(context.Background(), js, bankstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	info, err := bs.State().Bank("bench")
	if err != nil || info.Entries != n {
		t.Fatalf("a new process holds %+v %v, want %d entries", info, err, n)
	}
	t.Logf("a new process loaded the bank (%d entries) from the stream and snapshots in %.1f s", info.Entries, time.Since(start).Seconds())
}

// TestBankCalibrateCLI: calibrate the demo model on generated posts, run
// with banks.calibration: a threshold below a floor is refused, one above
// accepted; a written concept and an exemplar image added from the CLI
// match by cosine.
func TestBankCalibrateCLI(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	model := filepath.Join(testutil.MustRepoRoot(t), "testdata", "models", "demo")
	run := func(args ...string) string {
		t.Helper()
		root := newRoot()
		var out, errw bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errw)
		root.SetArgs(args)
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("xmodal %s: %v\n%s", strings.Join(args, " "), err, errw.String())
		}
		return out.String()
	}
	run("gen", "--split", "train", "--n", "160", "--posts", "--out", filepath.Join(dir, "calib"))
	calFile := filepath.Join(dir, "calibration.json")
	out := run("bank", "calibrate", "--data", filepath.Join(dir, "calib"), "--out", calFile, "--model", model)
	cal, err := loadCalibration(calFile, "xmodal-demo@1")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	tt := cal.Floors[banks.PairTextText]
	if len(cal.Floors) != 4 || tt <= 0 || tt >= 1 || cal.Pairs[banks.PairTextText] < banks.MinCalibrationPairs || !strings.Contains(out, "text_text") {
		t.Fatalf("calibration %+v\n%s", cal, out)
	}
	if _, err := loadCalibration(calFile, "another@2"); err == nil || !strings.Contains(err.Error(), "banks.calibration") {
		t.Fatalf("a calibration of another model: %v", err)
	}

	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = ""
	cfg.Model = model
	cfg.Banks.Calibration = calFile
	a, err := startApp(context.Background(), cfg, slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	url := a.ns.ClientURL()
	below := fmt.Sprintf("text_text=%.4f", tt-0.05)
	if _, _, err := runBank(t, url, "create", "loose", "--threshold", below); err == nil || !strings.Contains(err.Error(), "noise floor") {
		t.Fatalf("create with %s (floor %.4f): %v", below, tt, err)
	}
	above := fmt.Sprintf("text_text=%.4f", min(1, tt+(1-tt)/2))
	// Between the floor and 1: a threshold of 1 would ask an image to score
	// at least 1.0 against itself, which float rounding decides (the demo
	// model's image floor is about 0.996).
	imageThr := cal.Floors[banks.PairImageImage] + (1-cal.Floors[banks.PairImageImage])/2
	mustBank(t, url, "create", "concepts", "--threshold", above, "--threshold", fmt.Sprintf("image_image=%.4f", imageThr))
	concept := "two red stars on a blue square"
	img := filepath.Join(testutil.MustRepoRoot(t), "testdata", "pdq", "images", "dih", "bridge-1-original.jpg")
	if out := mustBank(t, url, "add", "concepts", "--concept", concept, "--exemplar", img); !strings.Contains(out, "2 added") {
		t.Fatalf("add a concept and an exemplar: %s", out)
	}
	if out := mustBank(t, url, "match", "--text", concept); !strings.Contains(out, "embedding") || !strings.Contains(out, "concepts") {
		t.Fatalf("match the concept's text: %s", out)
	}
	if out := mustBank(t, url, "match", "--image", img); !strings.Contains(out, "embedding") {
		t.Fatalf("match the exemplar: %s", out)
	}
}
