package eval

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/eval/npy"
	"github.com/xmodal/xmodal/eval/synth"
)

func genSplit(t *testing.T, split string, n int, opts GenOptions) string {
	t.Helper()
	dir := t.TempDir()
	opts.Config = synth.Config{Split: split, N: n}
	opts.Out = dir
	if _, err := GenerateDataset(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	return dir
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one mentioning %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not mention %q", err, p)
		}
	}
}

func TestGenDirRoundTrip(t *testing.T) {
	dir := genSplit(t, synth.SplitTest, 6, GenOptions{Images: true})
	c, err := LoadGenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Images) != 6 || len(c.Texts) != 30 || !c.HasScenes || !c.HasLabels {
		t.Fatalf("%d images, %d texts, scenes %v labels %v", len(c.Images), len(c.Texts), c.HasScenes, c.HasLabels)
	}
	mem, err := SynthCorpus(context.Background(), synth.Config{Split: synth.SplitTest, N: 6})
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Images {
		a, b := c.Images[i], mem.Images[i]
		disk, _ := os.ReadFile(a.Path)
		if a.Scene != b.Scene || !bytes.Equal(disk, b.Data) || a.Objects != b.Objects {
			t.Fatalf("item %d: disk and in-memory generation differ", i)
		}
	}
}

func TestGenDirBadInput(t *testing.T) {
	dir := genSplit(t, synth.SplitTest, 3, GenOptions{Images: true})
	items := filepath.Join(dir, ItemsFile)
	orig, _ := os.ReadFile(items)
	lines := strings.SplitAfter(string(orig), "\n")

	// malformed line 2
	os.WriteFile(items, []byte(lines[0]+"{\"id\": oops\n"+lines[2]), 0o644)
	_, err := LoadGenDir(dir)
	wantErr(t, err, "items.jsonl line 2")

	// missing image
	os.WriteFile(items, orig, 0o644)
	os.Remove(filepath.Join(dir, "images", "test-000001.jpg"))
	_, err = LoadGenDir(dir)
	wantErr(t, err, "items.jsonl line 2", "test-000001", "test-000001.jpg", "no such file")

	// empty split
	os.WriteFile(items, nil, 0o644)
	_, err = LoadGenDir(dir)
	wantErr(t, err, "items.jsonl", "empty split")

	// generated without images
	nd := genSplit(t, synth.SplitTest, 2, GenOptions{})
	_, err = LoadGenDir(nd)
	wantErr(t, err, "line 1", "--no-images")
}

const karpathyOK = `{"dataset": "flickr30k", "images": [
 {"filename": "a.jpg", "split": "test", "imgid": 0, "sentences": [{"raw": "a dog", "tokens": ["a", "dog"]}, {"raw": "", "tokens": ["a", "puppy"]}]},
 {"filename": "b.jpg", "split": "train", "imgid": 1, "sentences": [{"raw": "a cat"}]},
 {"filepath": "val2014", "filename": "c.jpg", "split": "test", "imgid": 2, "sentences": [{"raw": "a bird"}]}
]}`

func TestKarpathy(t *testing.T) {
	exists := func(string) error { return nil }
	c, err := parseKarpathy([]byte(karpathyOK), "k.json", "/imgs", "test", exists)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Images) != 2 || len(c.Texts) != 3 || c.Images[1].Path != filepath.Join("/imgs", "val2014", "c.jpg") ||
		c.Texts[1].Text != "a puppy" || c.Texts[2].Image != 1 || c.HasLabels || c.HasScenes {
		t.Fatalf("parsed %+v", c)
	}
	_, err = parseKarpathy([]byte("{\"images\": [\n {\"filename\": \"a.jpg\",\n \"split\": test}]}"), "k.json", "/i", "test", exists)
	wantErr(t, err, "k.json", "line 3", "malformed JSON")
	_, err = parseKarpathy([]byte(`{"images": [{"filename": 5}]}`), "k.json", "/i", "test", exists)
	wantErr(t, err, "k.json", "line 1", "filename")
	_, err = parseKarpathy([]byte(karpathyOK), "k.json", "/imgs", "val", exists)
	wantErr(t, err, "k.json", `split "val"`, "empty split", "test (2)", "train (1)")
	missing := func(p string) error {
		if strings.HasSuffix(p, "c.jpg") {
			return &os.PathError{Op: "stat", Path: p, Err: os.ErrNotExist}
		}
		return nil
	}
	_, err = parseKarpathy([]byte(karpathyOK), "k.json", "/imgs", "test", missing)
	wantErr(t, err, "k.json images[2] (imgid 2)", "c.jpg", "not exist")
	_, err = parseKarpathy([]byte(`{"dataset": "x"}`), "k.json", "/imgs", "test", exists)
	wantErr(t, err, "no \"images\"")
	_, err = parseKarpathy(nil, "k.json", "/imgs", "test", exists)
	wantErr(t, err, "empty file")
}

func TestEmbeddingsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := tinySet(t)
	if err := WriteEmbeddings(dir, s, nil); err != nil {
		t.Fatal(err)
	}
	q, db, err := LoadEmbeddings(dir)
	if err != nil {
		t.Fatal(err)
	}
	if db != nil || !q.HasScenes || !q.HasLabels {
		t.Fatalf("db %v scenes %v labels %v", db, q.HasScenes, q.HasLabels)
	}
	a, err := Evaluate(context.Background(), s, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Evaluate(context.Background(), q, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range a.Recall {
		for j := range a.Recall[i].R {
			if !near(a.Recall[i].R[j], b.Recall[i].R[j]) {
				t.Fatalf("row %d differs after a round trip: %+v vs %+v", i, a.Recall[i], b.Recall[i])
			}
		}
	}
	for i := range a.MAP {
		if !near(a.MAP[i].MAP, b.MAP[i].MAP) {
			t.Fatalf("MAP row %d differs", i)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestEmbeddingsBadInput(t *testing.T) {
	img := `{"id":"a","labels":["x"],"vector":[1,0]}` + "\n" + `{"id":"b","labels":["y"],"vector":[0,1]}` + "\n"
	for _, c := range []struct {
		name, images, texts string
		want                []string
	}{
		{"dims", img, `{"id":"t","image_id":"a","vector":[1,0,0]}`, []string{"texts.jsonl line 1", "dimension 3", "images.jsonl has dimension 2", "mismatched"}},
		{"malformed", img, `{"id":"t","image_id":"a","vector":[1,0]}` + "\n{bad", []string{"texts.jsonl line 2", "malformed JSON"}},
		{"truncated", img, `{"id":"t",`, []string{"texts.jsonl line 1", "truncated JSON"}},
		{"unknown key", img, `{"id":"t","vec":[1,0]}`, []string{"texts.jsonl line 1", "vec"}},
		{"no vector", img, `{"id":"t","image_id":"a"}`, []string{"texts.jsonl line 1", "no \"vector\""}},
		{"bad pair", img, `{"id":"t","image_id":"zz","vector":[1,0]}`, []string{"texts.jsonl line 1", `image_id "zz"`}},
		{"bad set", img, `{"id":"t","set":"val","vector":[1,0]}`, []string{"texts.jsonl line 1", `set "val"`, `want "query", "db" or "train"`}},
		{"empty", "", "", []string{"no query items", "empty split"}},
		{"nan", `{"id":"a","vector":[1e999,0]}`, "", []string{"images.jsonl line 1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, ImagesJSONL, c.images)
			writeFile(t, dir, TextsJSONL, c.texts)
			_, _, err := LoadEmbeddings(dir)
			wantErr(t, err, c.want...)
		})
	}
	// npy rows must match the lines
	dir := t.TempDir()
	writeFile(t, dir, ImagesJSONL, `{"id":"a"}`+"\n"+`{"id":"b"}`+"\n")
	writeFile(t, dir, TextsJSONL, "")
	if err := npy.WriteFloat32(filepath.Join(dir, ImagesNPY), []float32{1, 0, 0}, 1, 3); err != nil {
		t.Fatal(err)
	}
	_, _, err := LoadEmbeddings(dir)
	wantErr(t, err, "images.npy has 1 rows", "images.jsonl has 2 lines")
	// and the image and text matrices must agree
	writeFile(t, dir, ImagesJSONL, `{"id":"a"}`+"\n")
	writeFile(t, dir, TextsJSONL, `{"id":"t","image_id":"a"}`+"\n")
	npy.WriteFloat32(filepath.Join(dir, TextsNPY), []float32{1, 0}, 1, 2)
	_, _, err = LoadEmbeddings(dir)
	wantErr(t, err, "texts.jsonl line 1", "dimension 2", "images.npy has dimension 3")
}

func TestNPYFloat16AndHeader(t *testing.T) {
	dir := t.TempDir()
	var b bytes.Buffer
	npy.WriteHeader(&b, "<f2", []int{2, 2})
	for _, h := range []uint16{0x3c00, 0xc000, 0x3800, 0x0001} { // 1, -2, 0.5, smallest subnormal
		binary.Write(&b, binary.LittleEndian, h)
	}
	p := filepath.Join(dir, "h.npy")
	os.WriteFile(p, b.Bytes(), 0o644)
	data, r, c, err := npy.ReadFloat32(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{1, -2, 0.5, float32(math.Ldexp(1, -24))}
	if r != 2 || c != 2 || data[0] != want[0] || data[1] != want[1] || data[2] != want[2] || data[3] != want[3] {
		t.Fatalf("got %v (%dx%d)", data, r, c)
	}
	os.WriteFile(p, b.Bytes()[:b.Len()-1], 0o644)
	_, _, _, err = npy.ReadFloat32(p)
	wantErr(t, err, "h.npy", "truncated")
	os.WriteFile(p, []byte("not numpy at all"), 0o644)
	_, _, _, err = npy.ReadFloat32(p)
	wantErr(t, err, "h.npy", "not a .npy")
}

// pixels.npy holds the resized crop that imageprep.Preprocess normalises:
// normalising it with the CLIP constants reproduces Preprocess bit for bit,
// which is what tools/train_demo_model.py relies on.
func TestPixelsMatchPreprocess(t *testing.T) {
	dir := genSplit(t, synth.SplitVal, 5, GenOptions{Images: true, PixelSize: 64, Resize: imageprep.ResizeSquash, Context: 64})
	f, err := os.Open(filepath.Join(dir, PixelsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := npy.ReadHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	if h.Descr != "|u1" || len(h.Shape) != 4 || h.Shape[0] != 5 || h.Shape[1] != 3 || h.Shape[2] != 64 {
		t.Fatalf("header %+v", h)
	}
	raw := make([]byte, h.Len())
	if _, err := f.Read(raw); err != nil {
		t.Fatal(err)
	}
	c, _ := LoadGenDir(dir)
	spec := imageprep.CLIPSpec()
	spec.Size, spec.CropSize, spec.Resize = 64, 64, imageprep.ResizeSquash
	per := spec.TensorLen()
	for i, im := range c.Images {
		data, _ := os.ReadFile(im.Path)
		img, _, err := imageprep.Decode(data, imageprep.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		want := imageprep.Preprocess(img, spec, nil)
		plane := per / 3
		for j, v := range raw[i*per : (i+1)*per] {
			ch := j / plane
			x := float32(float64(v) * (1.0 / 255.0))
			if got := (x - spec.Mean[ch]) / spec.Std[ch]; got != want[j] {
				t.Fatalf("item %d value %d: %v from uint8 %d, Preprocess gives %v", i, j, got, v, want[j])
			}
		}
	}
	// tokens.npy: [N, captions, context] int32 with SOT first.
	tf, _ := os.Open(filepath.Join(dir, TokensFile))
	defer tf.Close()
	th, err := npy.ReadHeader(tf)
	if err != nil || th.Descr != "<i4" || th.Shape[0] != 5 || th.Shape[1] != 5 || th.Shape[2] != 64 {
		t.Fatalf("tokens header %+v %v", th, err)
	}
	var first int32
	binary.Read(tf, binary.LittleEndian, &first)
	if first != 49406 {
		t.Fatalf("first token %d, want SOT", first)
	}
}

func FuzzParseEmbLines(f *testing.F) {
	f.Add([]byte(`{"id":"a","labels":["x"],"vector":[1,0]}` + "\n"))
	f.Add([]byte(`{"id":"t","set":"db","image_id":"a","scene":"s","objects":2,"vector":[0.5,-1e3]}`))
	f.Add([]byte("\n\n{\"id\":"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, err := parseEmbLines(bytes.NewReader(data), "x.jsonl")
		if err == nil {
			for _, l := range lines {
				if l.ID == "" {
					t.Fatal("accepted a line without an id")
				}
			}
		} else if !strings.HasPrefix(err.Error(), "x.jsonl line ") {
			t.Fatalf("error without a line: %v", err)
		}
	})
}

func FuzzKarpathy(f *testing.F) {
	f.Add([]byte(karpathyOK))
	f.Add([]byte(`{"images": []}`))
	f.Add([]byte(`{"images": [{"filename": "a", "split": "test", "sentences": [{"tokens": []}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseKarpathy(data, "k.json", "/r", "test", func(string) error { return nil })
		if err == nil && (len(c.Images) == 0 || len(c.Texts) < len(c.Images)) {
			t.Fatalf("accepted %d images, %d texts", len(c.Images), len(c.Texts))
		}
		if err != nil && !strings.Contains(err.Error(), "k.json") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

func FuzzNPYHeader(f *testing.F) {
	var b bytes.Buffer
	npy.WriteHeader(&b, "<f4", []int{3, 4})
	f.Add(b.Bytes())
	f.Add([]byte("\x93NUMPY\x02\x00\x10\x00\x00\x00{'descr': '<f2'}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := npy.ReadHeader(bytes.NewReader(data))
		if err == nil && h.Len() < 0 {
			t.Fatalf("negative length %+v", h)
		}
		_ = errors.Unwrap(err)
	})
}

// TestEvaluateWarnsAndReportsMAPProgress: the MAP phase says what it does and
// when it is done, and a cut-off at or beyond the gallery is called out
// (issue #19) rather than silently folded into ALL.
func TestEvaluateWarnsAndReportsMAPProgress(t *testing.T) {
	s := tinySet(t)
	var out bytes.Buffer
	rep, err := Evaluate(context.Background(), s, nil, Options{Ks: []int{1, 1000}, MAPKs: []int{1000}, Progress: &out})
	if err != nil {
		t.Fatal(err)
	}
	log := out.String()
	for _, want := range []string{
		"warning: R@1000: K is at least the gallery size",
		"warning: MAP@1000: K is at least the gallery size",
		fmt.Sprintf("MAP %s: ranking %d queries against a gallery of", IqT, s.Images.Rows),
		fmt.Sprintf("MAP %s: %d queries in", TqI, s.Texts.Rows),
	} {
		if !strings.Contains(log, want) {
			t.Errorf("progress output lacks %q:\n%s", want, log)
		}
	}
	notes := strings.Join(rep.Notes, "\n")
	if !strings.Contains(notes, "MAP@1000") || !strings.Contains(notes, "R@1000") || strings.Contains(notes, "R@1:") {
		t.Errorf("notes %q", rep.Notes)
	}
}
