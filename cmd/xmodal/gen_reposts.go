package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/eval/reposts"
)

func genRepostsCmd() *cobra.Command {
	var (
		opt    reposts.SetOptions
		inDirs []string
		kinds  []string
		size   string
	)
	c := &cobra.Command{
		Use:   "reposts",
		Short: "Write seeded re-posts (crops, captions, screenshots, ...) of a folder of images",
		Long: `Writes, for each original (every image in --in, plus --generated photo-like
pictures), one re-post per edit list: JPEG quality 30; downscales to 50 % and
25 %; crops keeping 90 % and 75 % of each side at random offsets; brightness
+25 %; contrast x1.4; greyscale; horizontal flip; 90-degree rotation; a white
or black caption band (15-25 % of the height, with text in the Go fonts)
above or below; a screenshot inside a phone or browser frame; a
semi-transparent watermark; and two-edit combinations. Also --distractors
generated pictures of the same families, edited likewise.

Output: originals/ (generated ones), reposts/<original>__<edit>.jpg,
distractors/, and manifest.jsonl (file, original, edit, the part of the
original shown and where it was placed, the rotation or mirror applied).
Everything is a pure function of the inputs and --seed.`,
		Example: `  xmodal gen reposts --in testdata/neardup/photos --out /tmp/reposts
  xmodal gen reposts --generated 100 --distractors 100 --kinds crop75,caption+jpeg30 --out /tmp/reposts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opt.Out == "" {
				return fmt.Errorf("--out is required")
			}
			for _, d := range inDirs {
				ps, err := imageFiles(d)
				if err != nil {
					return err
				}
				opt.Originals = append(opt.Originals, ps...)
			}
			if len(opt.Originals) == 0 && opt.Generated == 0 {
				return fmt.Errorf("no originals: give --in or --generated")
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
			n, err := reposts.WriteSet(cmd.Context(), opt)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d images to %s\n", n, opt.Out)
			return nil
		},
	}
	f := c.Flags()
	f.StringSliceVar(&inDirs, "in", nil, "directory of original images (repeatable)")
	f.IntVar(&opt.Generated, "generated", 0, "photo-like originals to generate")
	f.IntVar(&opt.Distractors, "distractors", 0, "generated distractors to write")
	f.StringVar(&size, "size", "640x480", "size of generated pictures, WxH")
	f.StringSliceVar(&kinds, "kinds", nil, "edit lists (names joined by +; default every single edit and combination)")
	f.Uint64Var(&opt.Seed, "seed", 1, "seed")
	f.StringVar(&opt.Out, "out", "", "output directory")
	_ = c.MarkFlagRequired("out")
	return c
}
