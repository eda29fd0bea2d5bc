//go:build neardupexp

package neardupeval

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func realPhotos(t testing.TB) ([]string, map[string][]ExtraQuery) {
	root := "../../testdata"
	var ps []string
	a, _ := filepath.Glob(filepath.Join(root, "neardup/photos/*.jpg"))
	for _, p := range a {
		if filepath.Base(p) != "text.jpg" {
			ps = append(ps, p)
		}
	}
	b, _ := filepath.Glob(filepath.Join(root, "pdq/images/labelme-subset/*.jpg"))
	ps = append(ps, b...)
	bridge := filepath.Join(root, "pdq/images/bridge-mods/aaa-orig.jpg")
	ps = append(ps, bridge, filepath.Join(root, "pdq/images/misc/c.png"))
	var ex []ExtraQuery
	m, _ := filepath.Glob(filepath.Join(root, "pdq/images/bridge-mods/*.jpg"))
	d, _ := filepath.Glob(filepath.Join(root, "pdq/images/dih/*.jpg"))
	for _, p := range append(m, d...) {
		if p != bridge {
			ex = append(ex, ExtraQuery{Path: p, Original: bridge})
		}
	}
	return ps, map[string][]ExtraQuery{"threatexchange": ex}
}

func TestExpRun(t *testing.T) {
	ps, ex := realPhotos(t)
	rep, err := Run(context.Background(), Options{Photos: ps, Extra: ex, Generated: 100, QueryGenerated: 12, Distractors: 100, Workers: 2, Progress: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	rep.WriteText(os.Stdout)
}
