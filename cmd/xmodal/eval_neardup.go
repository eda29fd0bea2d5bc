package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/eval/neardupeval"
	"github.com/xmodal/xmodal/eval/reposts"
)

func evalNeardupCmd() *cobra.Command {
	var (
		opt           neardupeval.Options
		photoDirs     []string
		distractorDir string
		teDir         string
		size          string
		kinds         []string
		asJSON        bool
	)
	c := &cobra.Command{
		Use:   "neardup",
		Short: "Score near-duplicate detection (region method beside plain PDQ) on re-posts",
		Long: `Indexes a set of originals with both near-duplicate methods (encoders/neardup's
region signatures, and plain whole-image PDQ), makes seeded re-posts of each
original (every single edit and every two-edit combination of eval/reposts,
unless --kinds), queries them and distractors, and reports for both methods,
from the same run:

  recall@1 per edit kind (the top match is the original), separately for real
    photos (--photos), generated photo-like originals and the ThreatExchange
    edits of its bridge photo (--threatexchange);
  false positives: re-post queries that returned any other image, and
    distractor queries (photos that are not indexed, edited like re-posts)
    that returned anything;
  bytes per image, index-time hashing time per image (the two methods
    interleaved on the same decoded pixels, and their ratio) and query time.

Originals: every JPEG/PNG/GIF/WebP in each --photos directory (real photos),
plus --generated photo-like pictures (eval/reposts.Photo: procedural
landscapes, coasts, cities, forests and fields with textures, blur and noise),
the first --query-generated of which have their re-posts queried.
Distractors: --distractors generated pictures of the same families (never
indexed), and every image in --distractor-photos.`,
		Example: `  xmodal eval neardup --photos testdata/neardup/photos --threatexchange testdata/pdq
  xmodal eval neardup --photos my-originals/ --generated 0 --distractor-photos others/
  xmodal eval neardup --generated 10000 --query-generated 100 --distractors 10000 --workers 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, d := range photoDirs {
				ps, err := imageFiles(d)
				if err != nil {
					return err
				}
				opt.Photos = append(opt.Photos, ps...)
			}
			if distractorDir != "" {
				ps, err := imageFiles(distractorDir)
				if err != nil {
					return err
				}
				opt.DistractorPhotos = ps
			}
			if teDir != "" {
				orig := filepath.Join(teDir, "images", "bridge-mods", "aaa-orig.jpg")
				if _, err := os.Stat(orig); err != nil {
					return fmt.Errorf("--threatexchange: %w", err)
				}
				if !slices.Contains(opt.Photos, orig) {
					opt.Photos = append(opt.Photos, orig)
				}
				var ex []neardupeval.ExtraQuery
				for _, sub := range []string{"bridge-mods", "dih"} {
					ps, err := imageFiles(filepath.Join(teDir, "images", sub))
					if err != nil {
						return err
					}
					for _, p := range ps {
						if p != orig {
							ex = append(ex, neardupeval.ExtraQuery{Path: p, Original: orig})
						}
					}
				}
				opt.Extra = map[string][]neardupeval.ExtraQuery{"threatexchange": ex}
			}
			if _, err := fmt.Sscanf(size, "%dx%d", &opt.W, &opt.H); err != nil || opt.W < 16 || opt.H < 16 {
				return fmt.Errorf("--size %q: want WxH, each at least 16", size)
			}
			for _, k := range kinds {
				ks, err := reposts.ParseKinds(k)
				if err != nil {
					return fmt.Errorf("--kinds: %w", err)
				}
				opt.Kinds = append(opt.Kinds, ks)
			}
			if opt.Generated < 0 || opt.QueryGenerated < 0 || opt.Distractors < 0 {
				return fmt.Errorf("--generated, --query-generated and --distractors must not be negative")
			}
			if len(opt.Photos) == 0 && opt.Generated == 0 {
				return fmt.Errorf("no originals: give --photos or --generated")
			}
			opt.Progress = cmd.ErrOrStderr()
			rep, err := neardupeval.Run(cmd.Context(), opt)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			rep.WriteText(cmd.OutOrStdout())
			return nil
		},
	}
	f := c.Flags()
	f.StringSliceVar(&photoDirs, "photos", nil, "directory of real original photos (repeatable)")
	f.StringVar(&distractorDir, "distractor-photos", "", "directory of photos that are not indexed, queried as distractors")
	f.StringVar(&teDir, "threatexchange", "", "ThreatExchange PDQ test-image directory (testdata/pdq): index its bridge photo, query its edits and dihedral variants")
	f.IntVar(&opt.Generated, "generated", 200, "generated photo-like originals to index")
	f.IntVar(&opt.QueryGenerated, "query-generated", 20, "of those, how many have their re-posts queried")
	f.IntVar(&opt.Distractors, "distractors", 200, "generated distractor queries (never indexed)")
	f.StringVar(&size, "size", "640x480", "size of generated pictures, WxH")
	f.Uint64Var(&opt.Seed, "seed", 1, "seed of the generated pictures and edits")
	f.IntVar(&opt.Workers, "workers", 1, "parallel workers")
	f.BoolVar(&opt.LogWindowMatches, "log-window-matches", false, "print every window match (true or not, agreeing and visible windows, distance) to stderr, for tuning")
	f.BoolVar(&opt.ExactLookup, "exact-lookup", false, "search the window search's first stage exactly within 19 bits instead of the default approximate probe within 24 (image.neardup_exact_lookup)")
	f.IntVar(&opt.SeedWindows, "seed-windows", 0, "query windows per plane that seed the window search (image.neardup_seed_windows; 0: all)")
	f.IntVar(&opt.WholeBand, "whole-band", 0, "reach in bits of the pixel-verified whole-image match (image.neardup_whole_band; 0: the default, 56; -1: off)")
	f.StringVar(&opt.SaveMisses, "save-misses", "", "write every missed re-post query and its original as PNG files into this directory (created when missing)")
	f.BoolVar(&opt.LogMisses, "log-misses", false, "print every re-post query whose best match is not its original (which original, what came first instead) to stderr")
	f.StringSliceVar(&kinds, "kinds", nil, fmt.Sprintf("edit lists to query (names joined by +; default every single edit and combination): %s", strings.Join(kindNames(), ", ")))
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}

func kindNames() []string {
	var out []string
	for _, k := range reposts.Singles {
		out = append(out, string(k))
	}
	return out
}

// imageFiles lists the images (by extension) of a directory, sorted.
func imageFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".jpg", ".jpeg", ".png", ".gif", ".webp":
			if !e.IsDir() {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no images", dir)
	}
	return out, nil
}
