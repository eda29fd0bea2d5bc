package synth

import (
	"math/rand/v2"
	"slices"
	"strings"
)

// Paraphrases. Every caption names every object's colour, shape, size and
// position (objects sharing colour and shape may be grouped with a count),
// so a caption determines its scene's Key; the wording, order and framing
// vary.
var (
	sizeWords = map[string][]string{
		"small": {"small", "little", "tiny"},
		"large": {"large", "big", "huge"},
	}
	colourWords = map[string][]string{
		"red": {"red", "crimson"}, "orange": {"orange"}, "yellow": {"yellow", "golden"},
		"green": {"green"}, "blue": {"blue"}, "purple": {"purple", "violet"},
		"white": {"white"}, "black": {"black"},
	}
	shapeWords = map[string][]string{
		"circle": {"circle", "disc"}, "square": {"square", "box"}, "triangle": {"triangle"},
		"star": {"star"}, "heart": {"heart"}, "cross": {"cross", "plus sign"},
		"diamond": {"diamond", "rhombus"}, "moon": {"crescent", "moon", "crescent moon"},
	}
	plurals = map[string]string{
		"circle": "circles", "disc": "discs", "square": "squares", "box": "boxes", "triangle": "triangles",
		"star": "stars", "heart": "hearts", "cross": "crosses", "plus sign": "plus signs",
		"diamond": "diamonds", "rhombus": "rhombuses", "crescent": "crescents", "moon": "moons",
		"crescent moon": "crescent moons",
	}
	positionWords = map[string][]string{
		"top-left":     {"in the top left", "at the top left", "in the upper left corner", "top left"},
		"top-right":    {"in the top right", "at the top right", "in the upper right corner", "top right"},
		"center":       {"in the center", "in the middle", "at the centre", "in the centre"},
		"bottom-left":  {"in the bottom left", "at the bottom left", "in the lower left corner", "bottom left"},
		"bottom-right": {"in the bottom right", "at the bottom right", "in the lower right corner", "bottom right"},
	}
	countWords = []string{"", "one", "two", "three"}
	preambles  = []string{"a photo of ", "picture of ", "look at this: ", "just posted ", "my drawing of ",
		"screenshot of ", "meme with ", "new pic: ", "check out ", "wallpaper with ", "an image of ", "sketch: "}
	suffixes = []string{" #shapes", " #art", " lol", " so cute", " 🔥", "!!", " #minimal", " (made it myself)", " #daily", " :)"}
)

// caption writes one caption of s.
func caption(s Scene, r *rand.Rand) string {
	// Group objects that share colour and shape (a count phrase) half the time.
	var groups [][]Object
	if r.IntN(2) == 0 {
		for _, o := range s.Objects {
			k := slices.IndexFunc(groups, func(g []Object) bool { return g[0].Colour == o.Colour && g[0].Shape == o.Shape })
			if k < 0 {
				groups = append(groups, []Object{o})
			} else {
				groups[k] = append(groups[k], o)
			}
		}
	} else {
		for _, o := range s.Objects {
			groups = append(groups, []Object{o})
		}
	}
	r.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })
	style := r.IntN(4) // one phrase style per caption, as a person would write
	phrases := make([]string, len(groups))
	for i, g := range groups {
		if len(g) == 1 {
			phrases[i] = objectPhrase(g[0], style, r)
		} else {
			phrases[i] = groupPhrase(g, r)
		}
	}
	var b strings.Builder
	if r.IntN(2) == 0 && style != 1 { // style 1 starts with the position
		b.WriteString(pick(r, preambles))
	}
	if r.IntN(10) < 3 {
		n := len(s.Objects)
		noun := pick(r, []string{"shapes", "objects", "things"})
		if n == 1 {
			noun = noun[:len(noun)-1]
		}
		b.WriteString(countWords[n] + " " + noun + ": ")
	}
	b.WriteString(join(phrases, r))
	if r.IntN(10) < 3 {
		b.WriteString(pick(r, suffixes))
	}
	c := b.String()
	if r.IntN(3) == 0 {
		c = strings.ToUpper(c[:1]) + c[1:]
	}
	return c
}

func objectPhrase(o Object, style int, r *rand.Rand) string {
	size, colour := pick(r, sizeWords[o.Size]), pick(r, colourWords[o.Colour])
	shape, pos := pick(r, shapeWords[o.Shape]), pick(r, positionWords[o.Position])
	switch style {
	case 0:
		return article(size) + " " + size + " " + colour + " " + shape + " " + pos
	case 1:
		return pos + " " + article(size) + " " + size + " " + colour + " " + shape
	case 2:
		return article(colour) + " " + colour + " " + shape + " (" + size + ") " + pos
	default:
		return "one " + size + " " + colour + " " + shape + " " + pos
	}
}

// article is "a" or "an" before word.
func article(word string) string {
	if strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

// groupPhrase describes objects of one colour and shape with a count.
func groupPhrase(g []Object, r *rand.Rand) string {
	colour := pick(r, colourWords[g[0].Colour])
	shape := pick(r, shapeWords[g[0].Shape])
	head := countWords[len(g)] + " " + colour + " " + plurals[shape]
	sameSize := !slices.ContainsFunc(g, func(o Object) bool { return o.Size != g[0].Size })
	if sameSize && r.IntN(2) == 0 {
		var ps []string
		for _, o := range g {
			ps = append(ps, pick(r, positionWords[o.Position]))
		}
		return countWords[len(g)] + " " + pick(r, sizeWords[g[0].Size]) + " " + colour + " " + plurals[shape] + " " + andList(ps)
	}
	var ps []string
	for _, o := range g {
		sz := pick(r, sizeWords[o.Size])
		ps = append(ps, article(sz)+" "+sz+" one "+pick(r, positionWords[o.Position]))
	}
	return head + ": " + andList(ps)
}

func andList(xs []string) string {
	if len(xs) == 1 {
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " and " + xs[len(xs)-1]
}

func join(ps []string, r *rand.Rand) string {
	switch len(ps) {
	case 1:
		return ps[0]
	case 2:
		return ps[0] + pick(r, []string{" and ", ", ", " with ", "; "}) + ps[1]
	default:
		switch r.IntN(4) {
		case 0:
			return strings.Join(ps, ", ")
		case 1:
			return strings.Join(ps, "; ")
		case 2:
			return ps[0] + " with " + ps[1] + " and " + strings.Join(ps[2:], " and ")
		default:
			return andList(ps)
		}
	}
}

// Captions returns n distinct captions of s (fewer only if the templates
// run out, which they do not for n <= 20).
func Captions(s Scene, r *rand.Rand, n int) []string {
	out := make([]string, 0, n)
	for tries := 0; len(out) < n && tries < 50*n; tries++ {
		c := caption(s, r)
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// ShortCaption names the objects' colours, shapes and counts only ("two red
// stars and a blue circle"), as people often do. Training splits mix a few
// in so that short queries work; evaluation captions are always complete.
func ShortCaption(s Scene, r *rand.Rand) string {
	var groups [][]Object
	for _, o := range s.Objects {
		k := slices.IndexFunc(groups, func(g []Object) bool { return g[0].Colour == o.Colour && g[0].Shape == o.Shape })
		if k < 0 {
			groups = append(groups, []Object{o})
		} else {
			groups[k] = append(groups[k], o)
		}
	}
	r.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })
	phrases := make([]string, len(groups))
	for i, g := range groups {
		colour, shape := pick(r, colourWords[g[0].Colour]), pick(r, shapeWords[g[0].Shape])
		if len(g) == 1 {
			phrases[i] = article(colour) + " " + colour + " " + shape
		} else {
			phrases[i] = countWords[len(g)] + " " + colour + " " + plurals[shape]
		}
	}
	c := andList(phrases)
	if r.IntN(2) == 0 {
		c = pick(r, preambles) + c
	}
	if r.IntN(10) < 3 {
		c += pick(r, suffixes)
	}
	return c
}
