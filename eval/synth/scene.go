// Package synth generates xmodal's synthetic social-feed image-text dataset:
// pictures of 1 to 3 coloured shapes on textured backgrounds, with noise,
// JPEG re-encoding and, in a share of them, an overlaid word in a bitmap font,
// each with captions that describe every object (colour, shape, size,
// position, count) in varied templates and paraphrases, its scene description
// and a multi-label vector (shape and colour classes).
//
// Everything is a pure function of (split seed, item index): an item does not
// depend on which other items were generated, in what order or on how many
// goroutines, so splits are reproducible and can be generated in parallel.
// The splits draw from separate seeds (see [SplitSeed]).
package synth

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

// The world's vocabulary. Order matters: it fixes label indices.
var (
	shapeNames    = [...]string{"circle", "square", "triangle", "star", "heart", "cross", "diamond", "moon"}
	colourNames   = [...]string{"red", "orange", "yellow", "green", "blue", "purple", "white", "black"}
	sizeNames     = [...]string{"small", "large"}
	positionNames = [...]string{"top-left", "top-right", "center", "bottom-left", "bottom-right"}
)

// Shapes, Colours, Sizes and Positions return the world's attribute values.
func Shapes() []string    { return slices.Clone(shapeNames[:]) }
func Colours() []string   { return slices.Clone(colourNames[:]) }
func Sizes() []string     { return slices.Clone(sizeNames[:]) }
func Positions() []string { return slices.Clone(positionNames[:]) }

// LabelNames are the multi-label classes in label-vector order: the colours,
// then the shapes.
func LabelNames() []string { return append(Colours(), Shapes()...) }

// MaxObjects is the largest number of objects in a scene.
const MaxObjects = 3

// Object is one shape in a scene.
type Object struct {
	Shape    string `json:"shape"`
	Colour   string `json:"colour"`
	Size     string `json:"size"`
	Position string `json:"position"`
}

// Scene is the set of objects in a picture, at distinct positions, kept in
// position order.
type Scene struct {
	Objects []Object `json:"objects"`
}

func (o Object) String() string { return o.Size + " " + o.Colour + " " + o.Shape + "@" + o.Position }

// Key is the scene's canonical description: two pictures with the same key
// are described identically by every caption template.
func (s Scene) Key() string {
	parts := make([]string, len(s.Objects))
	for i, o := range s.Objects {
		parts[i] = o.String()
	}
	return strings.Join(parts, "; ")
}

// Labels lists the colour and shape classes present, in LabelNames order.
func (s Scene) Labels() []string {
	var out []string
	for _, c := range colourNames {
		if slices.ContainsFunc(s.Objects, func(o Object) bool { return o.Colour == c }) {
			out = append(out, c)
		}
	}
	for _, sh := range shapeNames {
		if slices.ContainsFunc(s.Objects, func(o Object) bool { return o.Shape == sh }) {
			out = append(out, sh)
		}
	}
	return out
}

// LabelVector is the multi-hot vector over LabelNames.
func (s Scene) LabelVector() []uint8 {
	v := make([]uint8, len(colourNames)+len(shapeNames))
	for _, o := range s.Objects {
		v[slices.Index(colourNames[:], o.Colour)] = 1
		v[len(colourNames)+slices.Index(shapeNames[:], o.Shape)] = 1
	}
	return v
}

// Validate checks that every attribute is known, positions are distinct and
// the object count is 1..MaxObjects.
func (s Scene) Validate() error {
	if n := len(s.Objects); n < 1 || n > MaxObjects {
		return fmt.Errorf("scene has %d objects; want 1..%d", n, MaxObjects)
	}
	seen := map[string]bool{}
	for i, o := range s.Objects {
		for _, c := range []struct {
			what, v string
			set     []string
		}{{"shape", o.Shape, shapeNames[:]}, {"colour", o.Colour, colourNames[:]}, {"size", o.Size, sizeNames[:]}, {"position", o.Position, positionNames[:]}} {
			if !slices.Contains(c.set, c.v) {
				return fmt.Errorf("object %d: unknown %s %q", i, c.what, c.v)
			}
		}
		if seen[o.Position] {
			return fmt.Errorf("object %d: position %s used twice", i, o.Position)
		}
		seen[o.Position] = true
	}
	return nil
}

func (s *Scene) sort() {
	slices.SortFunc(s.Objects, func(a, b Object) int {
		return slices.Index(positionNames[:], a.Position) - slices.Index(positionNames[:], b.Position)
	})
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// randomScene draws 1-3 objects at distinct positions. With probability
// 0.3 a second object repeats the first one's colour and shape, so that
// captions with counts ("two red stars") are common.
func randomScene(r *rand.Rand) Scene {
	n := 1 + r.IntN(MaxObjects)
	pos := r.Perm(len(positionNames))[:n]
	var s Scene
	for i := range n {
		s.Objects = append(s.Objects, Object{
			Shape: pick(r, shapeNames[:]), Colour: pick(r, colourNames[:]),
			Size: pick(r, sizeNames[:]), Position: positionNames[pos[i]],
		})
	}
	if n >= 2 && r.Float64() < 0.3 {
		s.Objects[1].Shape, s.Objects[1].Colour = s.Objects[0].Shape, s.Objects[0].Colour
	}
	s.sort()
	return s
}

// mutate returns a copy of s with one change: an object's colour, shape,
// size or position, two objects' colours or shapes swapped, or an object
// added or removed. Such near neighbours are the hard negatives of a
// training family.
func mutate(s Scene, r *rand.Rand) Scene {
	for {
		m := Scene{Objects: slices.Clone(s.Objects)}
		i := r.IntN(len(m.Objects))
		o := &m.Objects[i]
		switch r.IntN(7) {
		case 0:
			o.Colour = pick(r, colourNames[:])
		case 1:
			o.Shape = pick(r, shapeNames[:])
		case 2:
			o.Size = sizeNames[1-slices.Index(sizeNames[:], o.Size)]
		case 3:
			o.Position = pick(r, positionNames[:])
		case 4:
			if len(m.Objects) < 2 {
				continue
			}
			j := (i + 1 + r.IntN(len(m.Objects)-1)) % len(m.Objects)
			if r.IntN(2) == 0 {
				m.Objects[i].Colour, m.Objects[j].Colour = m.Objects[j].Colour, m.Objects[i].Colour
			} else {
				m.Objects[i].Shape, m.Objects[j].Shape = m.Objects[j].Shape, m.Objects[i].Shape
			}
		case 5:
			if len(m.Objects) >= MaxObjects {
				continue
			}
			m.Objects = append(m.Objects, Object{Shape: pick(r, shapeNames[:]), Colour: pick(r, colourNames[:]),
				Size: pick(r, sizeNames[:]), Position: pick(r, positionNames[:])})
		case 6:
			if len(m.Objects) < 2 {
				continue
			}
			m.Objects = slices.Delete(m.Objects, i, i+1)
		}
		m.sort()
		if m.Validate() == nil && m.Key() != s.Key() {
			return m
		}
	}
}
