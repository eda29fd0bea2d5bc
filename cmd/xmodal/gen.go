package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/eval"
	"github.com/xmodal/xmodal/eval/synth"
)

func genCmd() *cobra.Command {
	var (
		opts    eval.GenOptions
		noImage bool
	)
	c := &cobra.Command{
		Use:   "gen",
		Short: "Generate the synthetic image-text dataset (a split) into a directory",
		Long: `Writes one split of xmodal's synthetic social-feed dataset: pictures of 1-3
coloured shapes (8 shapes, 8 colours, 2 sizes, 5 positions) on textured
backgrounds with noise, JPEG re-encoding and, in 30% of them, an overlaid word;
captions that describe every object in varied templates; the scene
description and the colour/shape labels of each item.

Splits have their own seeds: train (64,000, hard-negative families of 4),
val (1,000), test (1,000 images x 5 captions), db (10,000, the retrieval
database for MAP), demo (24 sample posts). The output is a pure function of
the split, --seed, --n and --image-size.

Files: items.jsonl (one item per line: id, scene, scene_key, labels,
label_vector, captions, render parameters, image path), meta.json,
images/<id>.jpg (unless --no-images), pixels.npy with --pixels S (uint8
[N,3,S,S], the model input before normalisation, from imageprep exactly as at
inference), tokens.npy with --context L (int32 [N,captions,L] CLIP BPE ids),
posts.jsonl with --posts (the format 'xmodal demo --posts' reads).`,
		Example: `  xmodal gen --split test --out data/test
  xmodal gen --split train --no-images --pixels 64 --resize squash --context 64 --out .cache/train
  xmodal gen --split demo --posts --out testdata/demo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Out == "" {
				return fmt.Errorf("--out is required")
			}
			opts.Images = !noImage
			opts.Progress = cmd.ErrOrStderr()
			meta, err := eval.GenerateDataset(cmd.Context(), opts)
			if err != nil {
				return err
			}
			b, _ := json.Marshal(meta)
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %s\n", opts.Out, b)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&opts.Config.Split, "split", synth.SplitTest, fmt.Sprintf("split: %v", synth.SplitNames()))
	f.IntVar(&opts.Config.N, "n", 0, "number of items (0: the split's default)")
	f.Uint64Var(&opts.Config.Seed, "seed", 0, "seed (0: the split's own)")
	f.IntVar(&opts.Config.ImageSize, "image-size", 0, fmt.Sprintf("picture side in pixels (0: %d)", synth.DefaultImageSize))
	f.IntVar(&opts.Config.Captions, "captions", 0, "captions per item (0: the split's default)")
	f.IntVar(&opts.Config.Short, "short", 0, "short captions (colour, shape, count only) per item (0: 1 for train, else 0)")
	f.IntVar(&opts.Config.Family, "family", 0, "hard-negative family size (0: 4 for train, else 1)")
	f.StringVar(&opts.Out, "out", "", "output directory")
	_ = c.MarkFlagRequired("out")
	f.BoolVar(&noImage, "no-images", false, "do not write images/*.jpg")
	f.IntVar(&opts.PixelSize, "pixels", 0, "also write pixels.npy at this model image size")
	f.StringVar(&opts.Resize, "resize", "squash", "resize rule for --pixels: squash or shortest")
	f.IntVar(&opts.Context, "context", 0, "also write tokens.npy with this context length")
	f.BoolVar(&opts.Posts, "posts", false, "also write posts.jsonl (demo sample posts)")
	f.IntVar(&opts.Workers, "workers", 0, "parallel workers (0: GOMAXPROCS)")
	c.AddCommand(genRepostsCmd())
	return c
}
