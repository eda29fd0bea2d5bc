package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
	"github.com/xmodal/xmodal/sink/matching"
)

// TestMatchAtIngestThroughRun: `xmodal run` matches every post it indexes
// against the banks. A post whose text is in a review bank is indexed and
// its match event is in XMODAL_MATCH_EVENTS on xmodal.events.v1.match.<bank>;
// a post matching a block bank is taken down at ingest (deny-list, not in
// the index, an audit line naming bank and entry) with its event; a post
// matching nothing is indexed with no event.
func TestMatchAtIngestThroughRun(t *testing.T) {
	requireORT(t)
	cfg := matchRunConfig(t)
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	a := runTestApp(t, ctx, cancel, cfg, logs)
	cl := client.New(a.nc)
	for _, b := range []struct {
		name   string
		action banks.Action
		text   string
	}{{"spam", banks.ActionReview, "Buy followers now"}, {"forbidden", banks.ActionBlock, "forbidden words here"}} {
		if err := cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: b.name, Action: b.action, Actor: "t"}, nil); err != nil {
			t.Fatal(err)
		}
		if err := cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: b.name, Entries: []banks.Entry{{Type: banks.SignalText, Value: b.text}}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	for id, text := range map[string]string{"m-spam": "BUY followers NOW!!!", "m-forbidden": "Forbidden words, here.", "m-clean": "a quiet afternoon"} {
		b := fmt.Sprintf(`{"schema":1,"id":%q,"author":"u","created_at":%q,"text":%q}`, id, now, text)
		if err := ingest.Publish(ctx, js, "xmodal.posts", id, []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	var evs []matching.Event
	testutil.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		evs = evs[:0]
		s, err := js.Stream(ctx, matching.Stream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				return err
			}
			var e matching.Event
			if err := json.Unmarshal(m.Data, &e); err != nil {
				return err
			}
			if m.Subject != matching.Subject(e.Bank) {
				return fmt.Errorf("event of bank %s on %s", e.Bank, m.Subject)
			}
			evs = append(evs, e)
		}
		if len(evs) < 2 {
			return fmt.Errorf("%d events so far", len(evs))
		}
		if _, err := cl.Get(ctx, &query.GetRequest{PostIDs: []string{"m-clean", "m-spam"}}); err != nil {
			return fmt.Errorf("m-clean, m-spam not indexed yet: %v", err)
		}
		return nil
	})
	var got []string
	for _, e := range evs {
		got = append(got, e.PostID+":"+e.Bank+":"+string(e.Action))
	}
	if strings.Join(got, " ") != "m-spam:spam:review m-forbidden:forbidden:block" && strings.Join(got, " ") != "m-forbidden:forbidden:block m-spam:spam:review" {
		t.Fatalf("events %v, want one for m-spam (review) and one for m-forbidden (block)", got)
	}
	res, err := cl.Get(ctx, &query.GetRequest{PostIDs: []string{"m-clean", "m-spam"}})
	if err != nil || len(res.Records) != 2 {
		t.Fatalf("m-clean and m-spam (text records): %+v %v", res, err)
	}
	if _, err := cl.Get(ctx, &query.GetRequest{PostIDs: []string{"m-forbidden"}}); query.AsError(err).Code != 404 {
		t.Fatalf("m-forbidden matched a block bank, yet get answers %v", err)
	}
	if !a.deny.Denied("m-forbidden") {
		t.Fatal("m-forbidden is not on the deny-list")
	}
	// xmodal events tail: every event, and one bank's as JSON.
	tail := func(args ...string) string {
		root := newRoot()
		var out, errw strings.Builder
		root.SetOut(&out)
		root.SetErr(&errw)
		root.SetArgs(append([]string{"events", "tail", "--all", "--follow=false", "--nats-url", a.ns.ClientURL()}, args...))
		if err := root.ExecuteContext(ctx); err != nil {
			t.Fatalf("events tail %v: %v\n%s", args, err, errw.String())
		}
		return out.String()
	}
	if out := tail(); strings.Count(out, "\n") != 2 || !strings.Contains(out, "bank=spam action=review post=m-spam") || !strings.Contains(out, "bank=forbidden action=block post=m-forbidden") {
		t.Fatalf("events tail --all:\n%s", out)
	}
	out := tail("--bank", "forbidden", "--json")
	var e matching.Event
	if strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &e) != nil || e.PostID != "m-forbidden" || e.ID != matching.EventID("m-forbidden", e.Version, e.EntryID) {
		t.Fatalf("events tail --bank forbidden --json:\n%s", out)
	}
	// A retro sweep: an image indexed before its hash is banked is found when
	// the image is added to a bank; sweep-status shows it done.
	imgPath := filepath.Join(testutil.MustRepoRoot(t), "testdata", "pdq", "images", "dih", "bridge-1-original.jpg")
	imgData, err := os.ReadFile(imgPath)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := json.Marshal(map[string]any{"schema": 1, "id": "m-old-image", "created_at": now, "image": map[string]any{"data": imgData, "mime": "image/jpeg"}})
	if err := ingest.Publish(ctx, js, "xmodal.posts", "m-old-image", pb); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		_, err := cl.Get(ctx, &query.GetRequest{PostIDs: []string{"m-old-image"}})
		return err
	})
	bank := func(args ...string) string {
		root := newRoot()
		var out, errw strings.Builder
		root.SetOut(&out)
		root.SetErr(&errw)
		root.SetArgs(append(append([]string{"bank"}, args...), "--nats-url", a.ns.ClientURL()))
		if err := root.ExecuteContext(ctx); err != nil {
			t.Fatalf("bank %v: %v\n%s", args, err, errw.String())
		}
		return out.String()
	}
	bank("create", "late")
	bank("add", "late", "--image", imgPath)
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		out := bank("sweep-status")
		for _, l := range strings.Split(out, "\n") {
			// Two entries: the image's PDQ hash, found by hash, and its MD5,
			// swept by a scan of the records (which found none: the image's
			// MD5 was not computed, no bank held md5 entries when it came).
			if f := strings.Fields(l); len(f) >= 6 && f[1] == "late" && f[2] == "done" && f[3] == "2/2" && f[4] != "-" && f[5] == "1" {
				return nil
			}
		}
		return fmt.Errorf("sweep-status:\n%s", out)
	})
	if out := tail("--bank", "late"); !strings.Contains(out, "post=m-old-image version=0 pdq distance 0") || !strings.Contains(out, "source=sweep") {
		t.Fatalf("sweep event:\n%s", out)
	}
	if out := bank("sweep", "late"); !strings.Contains(out, "of bank late: 1 entries") {
		t.Fatalf("bank sweep: %s", out)
	}
	// A text entry added later is swept by scanning the stored records: the
	// quiet post indexed earlier is found, and its records now carry the
	// match (the matched_banks filter lists it).
	bank("add", "late", "--text", "A QUIET afternoon")
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if out := tail("--bank", "late"); !strings.Contains(out, "post=m-clean version=0 text") || !strings.Contains(out, "source=sweep") {
			return fmt.Errorf("no sweep event for m-clean:\n%s", out)
		}
		return nil
	})
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		res, err := cl.Search(ctx, &query.SearchRequest{Text: "afternoon", K: 10, Filter: domain.Filter{MatchedBanks: []string{"late"}}})
		if err != nil {
			return err
		}
		if len(res.Hits) == 0 || res.Hits[0].PostID != "m-clean" {
			return fmt.Errorf("matched_banks=late: %+v", res.Hits)
		}
		return nil
	})
	// The same file posted now that the bank holds its hashes is matched at
	// ingest by its bytes' MD5 (HMA's photo_md5) as well as by PDQ.
	pb, _ = json.Marshal(map[string]any{"schema": 1, "id": "m-new-image", "created_at": now, "image": map[string]any{"data": imgData, "mime": "image/jpeg"}})
	if err := ingest.Publish(ctx, js, "xmodal.posts", "m-new-image", pb); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		out := tail("--bank", "late")
		var kinds []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "post=m-new-image ") && strings.Contains(l, "source=ingest") {
				kinds = append(kinds, strings.Fields(strings.SplitN(l, " version=", 2)[1])[1])
			}
		}
		if strings.Join(kinds, ",") != "pdq,md5" && strings.Join(kinds, ",") != "md5,pdq" {
			return fmt.Errorf("ingest events of m-new-image by signal type %v, want pdq and md5:\n%s", kinds, out)
		}
		return nil
	})
	// A copy rotated by 90°, whose own PDQ hash is far from the banked one,
	// is matched at ingest through its dihedral variants.
	rotData, err := os.ReadFile(filepath.Join(filepath.Dir(imgPath), "bridge-2-rotate-90.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := pdq.FromImage(mustDecode(t, imgData))
	if rot, _ := pdq.FromImage(mustDecode(t, rotData)); pdq.Distance(orig, rot) <= 31 {
		t.Fatalf("the rotated copy's hash is within 31 bits of the original's: the test shows nothing")
	}
	pb, _ = json.Marshal(map[string]any{"schema": 1, "id": "m-rotated", "created_at": now, "image": map[string]any{"data": rotData, "mime": "image/jpeg"}})
	if err := ingest.Publish(ctx, js, "xmodal.posts", "m-rotated", pb); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		if out := tail("--bank", "late"); !strings.Contains(out, "post=m-rotated ") || !strings.Contains(out, "source=ingest") {
			return fmt.Errorf("no ingest event for the rotated copy:\n%s", out)
		}
		return nil
	})
	if !strings.Contains(logs.text(), `msg="audit: takedown at ingest" post_id=m-forbidden`) || !strings.Contains(logs.text(), "bank=forbidden") {
		t.Fatal("no audit line for the takedown at ingest")
	}
}

func mustDecode(t *testing.T, b []byte) image.Image {
	t.Helper()
	img, _, err := pdq.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// runTestApp starts `xmodal run` in this process on cfg and runs it until
// the test ends (cancel stops it), logging to logs (shown when the test
// failed).
func runTestApp(t *testing.T, ctx context.Context, cancel context.CancelFunc, cfg *Config, logs *syncBuffer) *app {
	t.Helper()
	a, err := startApp(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)))
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
		if t.Failed() {
			t.Logf("xmodal log:\n%s", logs.text())
		}
	})
	return a
}

// matchRunConfig is the configuration of an in-process `xmodal run` for the
// match tests: a fresh data dir, NATS on a free port, no HTTP, the demo
// model, short fetch waits.
func matchRunConfig(t *testing.T) *Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = ""
	cfg.Ingest.FetchWait = 20 * time.Millisecond
	cfg.Model = filepath.Join(testutil.MustRepoRoot(t), "testdata", "models", "demo")
	return cfg
}

// TestMatchRegionsThroughRun: with banks.match_regions, `xmodal run` matches
// a meme of a banked picture (its whole-image hash beyond PDQ's bound) by
// the picture inside the caption band, and the event says so (region
// content; events tail shows it); a retro sweep of a bank the picture is
// added to later finds the meme the same way.
func TestMatchRegionsThroughRun(t *testing.T) {
	requireORT(t)
	cfg := matchRunConfig(t)
	cfg.Banks.MatchRegions = true
	cfg.Image.NearDupWindows = true // the crops sweep searches the posts' windows
	ctx, cancel := context.WithCancel(context.Background())
	a := runTestApp(t, ctx, cancel, cfg, &syncBuffer{})
	cl := client.New(a.nc)
	pic := reposts.Photo(0, 1000, 640, 480)
	encode := func(img image.Image) []byte {
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	if err := cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "pictures", Action: banks.ActionReview, Actor: "t"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "pictures", Image: encode(pic)}, nil); err != nil {
		t.Fatal(err)
	}
	meme, err := reposts.Apply(pic, []reposts.Kind{reposts.Caption}, rand.New(rand.NewPCG(1, 3)))
	if err != nil {
		t.Fatal(err)
	}
	a0, _ := pdq.FromImage(pic)
	if b, _ := pdq.FromImage(meme.Image); pdq.Distance(a0, b) <= 31 {
		t.Fatal("the meme's whole-image hash is within PDQ's bound; the test shows nothing")
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := json.Marshal(map[string]any{"schema": 1, "id": "meme", "created_at": time.Now().UTC().Format(time.RFC3339),
		"image": map[string]any{"data": encode(meme.Image), "mime": "image/png"}})
	if err := ingest.Publish(ctx, js, "xmodal.posts", "meme", pb); err != nil {
		t.Fatal(err)
	}
	// lastEvent waits for a bank's first event and returns the newest.
	lastEvent := func(bank string) matching.Event {
		var e matching.Event
		testutil.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
			s, err := js.Stream(ctx, matching.Stream)
			if err != nil {
				return err
			}
			m, err := s.GetLastMsgForSubject(ctx, matching.Subject(bank))
			if err != nil {
				return err
			}
			e = matching.Event{}
			return json.Unmarshal(m.Data, &e)
		})
		return e
	}
	e := lastEvent("pictures")
	if e.PostID != "meme" || e.Region != "content" || e.SignalType != banks.SignalPDQ || e.Distance == nil || *e.Distance > 31 {
		t.Fatalf("event %+v, want the meme matched by its content rectangle", e)
	}
	root := newRoot()
	var out, errw strings.Builder
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs([]string{"events", "tail", "--all", "--follow=false", "--nats-url", a.ns.ClientURL()})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("events tail: %v\n%s", err, errw.String())
	}
	if !strings.Contains(out.String(), "post=meme") || !strings.Contains(out.String(), "region content") {
		t.Fatalf("events tail:\n%s", out.String())
	}
	// The picture banked again, in a new bank: the retro sweep finds the
	// meme, indexed before, by the same region.
	if err := cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "late", Action: banks.ActionReview, Actor: "t"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "late", Image: encode(pic)}, nil); err != nil {
		t.Fatal(err)
	}
	if e = lastEvent("late"); e.PostID != "meme" || e.Region != "content" || e.Source != matching.SourceSweep || e.Distance == nil || *e.Distance > 31 {
		t.Fatalf("sweep event %+v, want the meme found by its content rectangle", e)
	}
	// A photo banked with crops (its windows): a 75 % crop of it, whose
	// hashes match no entry, makes an event at ingest by its windows.
	photo := testutil.DecodeImage(t, filepath.Join(testutil.MustRepoRoot(t), "testdata/neardup/photos/coffee.jpg"))
	if err := cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "crops", Action: banks.ActionReview, Actor: "t"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "crops", Image: encode(photo), Crops: true}, nil); err != nil {
		t.Fatal(err)
	}
	b := photo.Bounds()
	crop := image.NewRGBA(image.Rect(0, 0, b.Dx()*3/4, b.Dy()*3/4))
	draw.Draw(crop, crop.Bounds(), photo, image.Pt(b.Min.X+b.Dx()/10, b.Min.Y+b.Dy()/8), draw.Src)
	pb, _ = json.Marshal(map[string]any{"schema": 1, "id": "crop", "created_at": time.Now().UTC().Format(time.RFC3339),
		"image": map[string]any{"data": encode(crop), "mime": "image/png"}})
	if err := ingest.Publish(ctx, js, "xmodal.posts", "crop", pb); err != nil {
		t.Fatal(err)
	}
	if e = lastEvent("crops"); e.PostID != "crop" || e.Region != "window" || e.Source != matching.SourceIngest || e.Shown == nil || e.Windows < 2 || e.Pixels < 0.9 {
		t.Fatalf("crop event %+v, want the crop found by its windows at ingest", e)
	}
	out.Reset()
	root = newRoot()
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs([]string{"events", "tail", "--bank", "crops", "--all", "--follow=false", "--nats-url", a.ns.ClientURL()})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("events tail: %v\n%s", err, errw.String())
	}
	if !strings.Contains(out.String(), "post=crop") || !strings.Contains(out.String(), "region window (crop 7") {
		t.Fatalf("events tail:\n%s", out.String())
	}
	// The photo banked with crops in a new bank: the crop, indexed before,
	// is found by the photo's parts search and gets a sweep event, with
	// the part of the photo it shows (its tenth from the left, its eighth
	// from the top).
	if err := cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "late-crops", Action: banks.ActionReview, Actor: "t"}, nil); err != nil {
		t.Fatal(err)
	}
	var ch query.BankChangeResponse
	if err := cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "late-crops", Image: encode(photo), Crops: true}, &ch); err != nil {
		t.Fatal(err)
	}
	if ch.Crops == nil || ch.Crops.Found < 1 {
		t.Fatalf("bank add with crops: %+v, want the crop found", ch.Crops)
	}
	e = lastEvent("late-crops")
	if e.PostID != "crop" || e.Region != "window" || e.Source != matching.SourceSweep || e.Version != 0 || e.Shown == nil || e.Windows < 2 || e.Pixels < 0.9 {
		t.Fatalf("crops sweep event %+v, want the crop", e)
	}
	if sh := *e.Shown; math.Abs(float64(sh[0])-0.1) > 0.03 || math.Abs(float64(sh[1])-0.125) > 0.03 || math.Abs(float64(sh[2])-0.85) > 0.03 || math.Abs(float64(sh[3])-0.875) > 0.03 {
		t.Errorf("crops sweep event shows %v of the photo, want about [0.1 0.125 0.85 0.875]", sh)
	}
	// Added again, by `xmodal bank add --crops`: the crop carries the
	// entry's match (the sweep added it to the record), so no second
	// event.
	photoFile := filepath.Join(t.TempDir(), "coffee.png")
	if err := os.WriteFile(photoFile, encode(photo), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errw.Reset()
	root = newRoot()
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs([]string{"bank", "add", "late-crops", "--image", photoFile, "--crops", "--nats-url", a.ns.ClientURL()})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("bank add: %v\n%s", err, errw.String())
	}
	if !strings.Contains(out.String(), "crops already posted: 0 found (events made), 1 known") {
		t.Errorf("bank add --crops again:\n%s", out.String())
	}
}
