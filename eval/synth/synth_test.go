package synth

import (
	"bytes"
	"fmt"
	"image/jpeg"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func mustConfig(t testing.TB, c Config) Config {
	t.Helper()
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDeterministic(t *testing.T) {
	c := mustConfig(t, Config{Split: SplitTest, N: 20})
	for _, i := range []int{0, 7, 19} {
		a, err := c.Item(i)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := c.Item(i)
		if !bytes.Equal(a.JPEG, b.JPEG) || !slices.Equal(a.Captions, b.Captions) || a.SceneKey != b.SceneKey {
			t.Fatalf("item %d differs between two generations", i)
		}
	}
	// Different splits use different seeds.
	v := mustConfig(t, Config{Split: SplitVal, N: 20})
	same := 0
	for i := range 20 {
		if c.SceneOf(i).Key() == v.SceneOf(i).Key() {
			same++
		}
	}
	if same > 3 {
		t.Fatalf("%d of 20 test and val scenes coincide", same)
	}
}

// Every caption must name each object's colour, shape, size and position
// (through some paraphrase), and the scene must be valid.
func TestCaptionsDescribeEveryObject(t *testing.T) {
	c := mustConfig(t, Config{Split: SplitTest, N: 300})
	for i := range 300 {
		s := c.SceneOf(i)
		if err := s.Validate(); err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
		caps := Captions(s, c.rng(i, streamCaptions), 5)
		if len(caps) != 5 {
			t.Fatalf("item %d: %d captions", i, len(caps))
		}
		for _, cp := range caps {
			lc := strings.ToLower(cp)
			for _, o := range s.Objects {
				for what, words := range map[string][]string{"colour": colourWords[o.Colour], "shape": shapeWords[o.Shape],
					"size": sizeWords[o.Size], "position": positionWords[o.Position]} {
					if !slices.ContainsFunc(words, func(w string) bool { return strings.Contains(lc, w) }) {
						t.Fatalf("item %d: caption %q lacks the %s of %s", i, cp, what, o)
					}
				}
			}
		}
	}
}

func TestLabelsAndFamilies(t *testing.T) {
	s := Scene{Objects: []Object{{"star", "red", "small", "top-left"}, {"star", "blue", "large", "center"}}}
	if got := s.Labels(); !slices.Equal(got, []string{"red", "blue", "star"}) {
		t.Fatalf("labels %v", got)
	}
	v := s.LabelVector()
	if v[0] != 1 || v[4] != 1 || v[8+3] != 1 || int(v[0])+int(v[4])+int(v[11]) != 3 {
		t.Fatalf("label vector %v", v)
	}
	c := mustConfig(t, Config{Split: SplitTrain, N: 40})
	if c.Family != 4 {
		t.Fatalf("train family %d", c.Family)
	}
	for f := 0; f < 10; f++ {
		base := c.SceneOf(4 * f)
		for m := 1; m < 4; m++ {
			if c.SceneOf(4*f+m).Key() == base.Key() {
				t.Fatalf("family %d member %d equals its base", f, m)
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{Split: "nope"}, {Split: SplitTest, N: -1}, {Split: SplitTest, ImageSize: 8}, {Split: SplitTest, Captions: 99}} {
		if err := c.WithDefaults().Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

// XMODAL_SYNTH_SAMPLES=dir go test ./eval/synth -run Samples writes a few
// pictures and captions to look at.
func TestWriteSamples(t *testing.T) {
	dir := os.Getenv("XMODAL_SYNTH_SAMPLES")
	if dir == "" {
		t.Skip("XMODAL_SYNTH_SAMPLES not set")
	}
	c := mustConfig(t, Config{Split: SplitTest, N: 32})
	var txt strings.Builder
	for i := range 32 {
		it, err := c.Item(i)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jpeg.Decode(bytes.NewReader(it.JPEG)); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, it.ID+".jpg"), it.JPEG, 0o644)
		fmt.Fprintf(&txt, "%s %s | %+v\n  %s\n", it.ID, it.SceneKey, it.Render, strings.Join(it.Captions, "\n  "))
	}
	os.WriteFile(filepath.Join(dir, "captions.txt"), []byte(txt.String()), 0o644)
}

func TestShortCaptionsAndDemoScenes(t *testing.T) {
	c := mustConfig(t, Config{Split: SplitTrain, N: 8})
	if c.Short != 1 {
		t.Fatalf("train short captions %d, want 1", c.Short)
	}
	for i := range 8 {
		it, err := c.Item(i)
		if err != nil {
			t.Fatal(err)
		}
		last := strings.ToLower(it.Captions[len(it.Captions)-1])
		for _, ws := range positionWords {
			for _, w := range ws {
				if strings.Contains(last, w) {
					t.Fatalf("short caption %q names a position", last)
				}
			}
		}
		for _, o := range it.Scene.Objects {
			if !slices.ContainsFunc(colourWords[o.Colour], func(w string) bool { return strings.Contains(last, w) }) {
				t.Fatalf("short caption %q lacks colour %s", last, o.Colour)
			}
		}
	}
	d := mustConfig(t, Config{Split: SplitDemo, N: 3})
	if got := d.SceneOf(0).Key(); got != "large red star@top-left; small red star@bottom-right" {
		t.Fatalf("demo scene 0: %s", got)
	}
	if v := mustConfig(t, Config{Split: SplitTest}); v.Short != 0 || v.N != 1000 || v.Captions != 5 {
		t.Fatalf("test defaults %+v", v)
	}
}
