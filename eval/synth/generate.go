package synth

import (
	"bytes"
	"fmt"
	"image/jpeg"
	"math/rand/v2"
	"slices"
	"sort"
)

// Splits. Each has its own seed, so no two splits share a random stream.
const (
	SplitTrain = "train" // training (large; hard-negative families of 4)
	SplitVal   = "val"   // validation during training
	SplitTest  = "test"  // queries: 1,000 images with 5 captions each, as in Flickr30K
	SplitDB    = "db"    // retrieval database for MAP: 10,000 items
	SplitDemo  = "demo"  // sample posts for the embedded demo
)

var splitSeeds = map[string]uint64{
	SplitTrain: 0x7a11_0001, SplitVal: 0x7a11_0002, SplitTest: 0x7a11_0003,
	SplitDB: 0x7a11_0004, SplitDemo: 0x7a11_0005,
}

// SplitNames lists the splits.
func SplitNames() []string {
	names := make([]string, 0, len(splitSeeds))
	for k := range splitSeeds {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// DefaultImageSize is the side of generated pictures.
const DefaultImageSize = 128

// Config selects a split and how its items look. Zero fields take the
// split's defaults (see Defaults).
type Config struct {
	Split string
	// Seed overrides the split's seed when non-zero.
	Seed uint64
	// N is the number of items.
	N int
	// ImageSize is the side of the square pictures in pixels.
	ImageSize int
	// Captions per item.
	Captions int
	// Short is how many of each item's captions are short ones (colours,
	// shapes and counts only; see ShortCaption), replacing full ones at the
	// end of the list. Train uses 1 of 5; evaluation splits 0.
	Short int
	// Family groups consecutive items into families of this size: the first
	// is a random scene, the others differ from it by one change (hard
	// negatives for training). 1 makes every scene independent.
	Family int
}

// WithDefaults returns c with the zero fields set from its split (an
// unknown split sets none of the split's own; Validate refuses it).
func (c Config) WithDefaults() Config {
	if c.Seed == 0 {
		c.Seed = splitSeeds[c.Split]
	}
	if c.N == 0 {
		c.N = map[string]int{SplitTrain: 64000, SplitVal: 1000, SplitTest: 1000, SplitDB: 10000, SplitDemo: 24}[c.Split]
	}
	if c.ImageSize == 0 {
		c.ImageSize = DefaultImageSize
	}
	if c.Captions == 0 {
		c.Captions = map[string]int{SplitTrain: 5, SplitVal: 5, SplitTest: 5, SplitDB: 1, SplitDemo: 1}[c.Split]
	}
	if c.Short == 0 && c.Split == SplitTrain && c.Captions > 1 {
		c.Short = 1
	}
	if c.Family == 0 {
		c.Family = 1
		if c.Split == SplitTrain {
			c.Family = 4
		}
	}
	return c
}

// Validate checks a configuration WithDefaults returned.
func (c Config) Validate() error {
	if _, ok := splitSeeds[c.Split]; !ok {
		return fmt.Errorf("unknown split %q (want one of %v)", c.Split, SplitNames())
	}
	switch {
	case c.N < 0:
		return fmt.Errorf("item count %d is negative", c.N)
	case c.ImageSize < 32 || c.ImageSize > 1024:
		return fmt.Errorf("image size %d out of range 32..1024", c.ImageSize)
	case c.Captions < 1 || c.Captions > 20:
		return fmt.Errorf("captions per item %d out of range 1..20", c.Captions)
	case c.Short < 0 || c.Short >= c.Captions:
		return fmt.Errorf("short captions %d out of range 0..%d (captions - 1)", c.Short, c.Captions-1)
	case c.Family < 1 || c.Family > 16:
		return fmt.Errorf("family size %d out of range 1..16", c.Family)
	}
	return nil
}

// Item is one generated picture with its captions and annotations.
type Item struct {
	ID       string   `json:"id"`
	Index    int      `json:"index"`
	Family   int      `json:"family"`
	Scene    Scene    `json:"scene"`
	SceneKey string   `json:"scene_key"`
	Labels   []string `json:"labels"`
	Captions []string `json:"captions"`
	Render   Render   `json:"render"`
	// JPEG is the encoded picture (not in the JSON form).
	JPEG []byte `json:"-"`
}

// NumObjects is the number of objects in the item's scene.
func (it Item) NumObjects() int { return len(it.Scene.Objects) }

// stream numbers of an item's independent random streams
const (
	streamScene = iota
	streamMutation
	streamRender
	streamCaptions
	nStreams
)

func (c Config) rng(i, stream int) *rand.Rand {
	return rand.New(rand.NewPCG(c.Seed, uint64(i)*nStreams+uint64(stream)))
}

// demoScenes open the demo split, so that the sample posts answer the
// queries the README shows ("two red stars").
var demoScenes = []Scene{
	{Objects: []Object{{"star", "red", "large", "top-left"}, {"star", "red", "small", "bottom-right"}}},
	{Objects: []Object{{"circle", "blue", "large", "center"}}},
	{Objects: []Object{{"heart", "yellow", "small", "top-right"}, {"star", "red", "large", "center"}}},
	{Objects: []Object{{"moon", "white", "large", "top-right"}, {"triangle", "green", "small", "bottom-left"}}},
	{Objects: []Object{{"star", "red", "small", "top-left"}, {"star", "red", "small", "top-right"}, {"cross", "black", "large", "bottom-left"}}},
	{Objects: []Object{{"square", "purple", "large", "bottom-left"}, {"diamond", "orange", "small", "bottom-right"}}},
}

// SceneOf is item i's scene (cheap: no rendering).
func (c Config) SceneOf(i int) Scene {
	if c.Split == SplitDemo && i < len(demoScenes) {
		s := Scene{Objects: slices.Clone(demoScenes[i].Objects)}
		s.sort()
		return s
	}
	fam := i / c.Family
	s := randomScene(c.rng(fam*c.Family, streamScene))
	if i%c.Family != 0 {
		s = mutate(s, c.rng(i, streamMutation))
	}
	return s
}

// Item generates item i of the split: its scene, captions and JPEG
// picture. c must have been through Defaults.
func (c Config) Item(i int) (Item, error) {
	if i < 0 {
		return Item{}, fmt.Errorf("item index %d is negative", i)
	}
	s := c.SceneOf(i)
	capRNG := c.rng(i, streamCaptions)
	caps := Captions(s, capRNG, c.Captions-c.Short)
	for range c.Short {
		caps = append(caps, ShortCaption(s, capRNG))
	}
	img, info := paint(s, c.rng(i, streamRender), c.ImageSize)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: info.JPEGQuality}); err != nil {
		return Item{}, fmt.Errorf("item %d: jpeg: %w", i, err)
	}
	return Item{
		ID:       fmt.Sprintf("%s-%06d", c.Split, i),
		Index:    i,
		Family:   i / c.Family,
		Scene:    s,
		SceneKey: s.Key(),
		Labels:   s.Labels(),
		Captions: caps,
		Render:   info,
		JPEG:     slices.Clip(buf.Bytes()),
	}, nil
}
