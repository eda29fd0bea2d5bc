package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/eval"
	"github.com/xmodal/xmodal/eval/synth"
)

func evalCmd() *cobra.Command {
	var (
		dataDir, dbDir          string
		karpathyFile, imageRoot string
		split, embDir, writeEmb string
		n, dbN, batch, threads  int
		noDB, asJSON            bool
		opts                    eval.Options
		seed                    uint64
	)
	c := &cobra.Command{
		Use:   "eval",
		Short: "Score a model (or precomputed embeddings) with R@K and MAP, both directions",
		Long: `Encodes a query split and a retrieval database with the model and reports:

  R@1/5/10 text→image (TqI) and image→text (IqT), strict (Flickr30K/COCO
    protocol: a caption finds its image; an image finds any of its captions),
    the strict ceiling that identically described twins impose, and semantic
    (a hit is any item whose scene description equals the query's); also per
    1-, 2- and 3-object scene;
  MAP@K and MAP@ALL, both directions, relevance = sharing a label, queries from
    the query split against the database, beside a random ranking's score.

Inputs (one of):
  (default)            the generated test split (1,000 images x 5 captions) and
                       retrieval database (10,000 items), made in memory;
  --data DIR [--db DIR] splits written by 'xmodal gen' (with images);
  --karpathy FILE --images DIR [--split test]
                       a Karpathy-format dataset (Flickr30K, MS-COCO): strict R@K;
  --embeddings DIR     precomputed vectors: images.jsonl/texts.jsonl (+ .npy), see
                       docs/eval.md; no model is loaded.

Plans: exact (cosine over every vector). hash and hybrid plug in with the hash coders.`,
		Example: `  xmodal eval
  xmodal eval --json > report.json
  xmodal eval --model models/clip-vit-b32 --karpathy dataset_flickr30k.json --images flickr30k-images
  xmodal eval --embeddings my-embeddings/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			opts.Seed, opts.Workers = seed, threads
			if _, err := eval.PlanByName(opts.Plan); err != nil {
				return err
			}
			inputs := 0
			for _, s := range []string{dataDir, karpathyFile, embDir} {
				if s != "" {
					inputs++
				}
			}
			if inputs > 1 {
				return errors.New("choose one input: --data, --karpathy or --embeddings")
			}
			if dbDir != "" && dataDir == "" {
				return errors.New("--db needs --data")
			}
			if karpathyFile != "" && imageRoot == "" {
				return errors.New("--karpathy needs --images (the image folder)")
			}
			var (
				q, db     *eval.EmbeddedSet
				modelName string
				encodeS   float64
			)
			if embDir != "" {
				var err error
				if q, db, err = eval.LoadEmbeddings(embDir); err != nil {
					return err
				}
				if noDB {
					db = nil
				}
			} else {
				var qc, dc *eval.Corpus
				var err error
				switch {
				case dataDir != "":
					if qc, err = eval.LoadGenDir(dataDir); err != nil {
						return err
					}
					if dbDir != "" && !noDB {
						if dc, err = eval.LoadGenDir(dbDir); err != nil {
							return err
						}
					}
				case karpathyFile != "":
					if qc, err = eval.LoadKarpathy(karpathyFile, imageRoot, split); err != nil {
						return err
					}
				default:
					if qc, err = eval.SynthCorpus(ctx, synth.Config{Split: synth.SplitTest, N: n}); err != nil {
						return err
					}
					if !noDB {
						if dc, err = eval.SynthCorpus(ctx, synth.Config{Split: synth.SplitDB, N: dbN}); err != nil {
							return err
						}
					}
				}
				cfg, err := loadConfig(cmd.Flags(), os.Getenv)
				if err != nil {
					return err
				}
				dir, err := findModel(cfg.Model)
				if err != nil {
					return err
				}
				log := newLogger(cfg, os.Stderr)
				m, err := encoders.Load(dir, encoders.Options{LibPath: cfg.ORT.Lib, IntraOpThreads: cfg.ORT.IntraOpThreads,
					InterOpThreads: cfg.ORT.InterOpThreads, Provider: cfg.ORT.Provider, Logger: log})
				if err != nil {
					return err
				}
				defer m.Close()
				modelName = fmt.Sprintf("%s (%s)", m.Version(), dir)
				t0 := time.Now()
				eo := eval.EmbedOptions{ImageBatch: batch, Progress: cmd.ErrOrStderr()}
				if q, err = eval.EmbedCorpus(ctx, m, qc, eo); err != nil {
					return err
				}
				if dc != nil {
					if db, err = eval.EmbedCorpus(ctx, m, dc, eo); err != nil {
						return err
					}
				}
				encodeS = time.Since(t0).Seconds()
			}
			if writeEmb != "" {
				if err := eval.WriteEmbeddings(writeEmb, q, db); err != nil {
					return err
				}
			}
			rep, err := eval.Evaluate(ctx, q, db, opts)
			if err != nil {
				return err
			}
			rep.Model, rep.Timing.EncodeSeconds = modelName, encodeS
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return rep.WriteTable(cmd.OutOrStdout())
		},
	}
	f := c.Flags()
	f.StringVar(&dataDir, "data", "", "query split written by 'xmodal gen' (with images)")
	f.StringVar(&dbDir, "db", "", "retrieval database split written by 'xmodal gen' (with --data)")
	f.StringVar(&karpathyFile, "karpathy", "", "Karpathy-format dataset JSON (dataset_flickr30k.json, dataset_coco.json)")
	f.StringVar(&imageRoot, "images", "", "image folder for --karpathy")
	f.StringVar(&split, "split", "test", "split of the --karpathy file")
	f.StringVar(&embDir, "embeddings", "", "directory of precomputed embeddings (no model is loaded)")
	f.StringVar(&writeEmb, "write-embeddings", "", "also write the embeddings to this directory (reusable with --embeddings)")
	f.IntVar(&n, "n", 1000, "generated test split: number of images (5 captions each)")
	f.IntVar(&dbN, "db-n", 10000, "generated retrieval database: number of items")
	f.BoolVar(&noDB, "no-db", false, "no retrieval database: MAP ranks the query split itself")
	f.StringVar(&opts.Plan, "plan", "exact", "ranking plan: exact (hash and hybrid arrive with the hash coders)")
	f.IntSliceVar(&opts.Ks, "k", []int{1, 5, 10}, "recall cut-offs")
	f.IntSliceVar(&opts.MAPKs, "map-k", []int{100}, "MAP cut-offs besides ALL")
	f.Uint64Var(&seed, "seed", 1, "seed of the random-ranking baseline")
	f.IntVar(&batch, "batch", 64, "images per model call")
	f.IntVar(&threads, "threads", 0, "ranking goroutines (0: GOMAXPROCS)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}
