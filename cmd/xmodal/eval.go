package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/encoders/hash"
	"github.com/xmodal/xmodal/encoders/imageprep"
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
		coderName               string
		candidates              []string
		trainN                  int
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

Plans (--plan):
  exact   cosine over every vector (default);
  hash    also MAP@K and MAP@ALL, both directions, of the ranking by Hamming
          distance of binary codes, per code length (--bits, default 16, 32,
          64, 128, 256 up to the dimension), beside the exact plan's MAP;
  hybrid  also recall@10 of the embedded index's hybrid plan (Hamming top C
          re-ranked by cosine) against its exact top 10, per C (--candidates:
          counts or percentages of the gallery), with the time per query of
          both (one goroutine) and their ratio.
  Codes (--coder): itq, fitted per length on a train set (default: --train-n
  images of the generated train split with one caption each, encoded with the
  model; with --karpathy the file's train split; with --embeddings the items
  with "set": "train", else the retrieval database); simhash (random
  hyperplanes, --seed); model (the model's own coder, hash.json; with
  --embeddings, the coder of --model, which must be the embeddings' model).`,
		Example: `  xmodal eval
  xmodal eval --json > report.json
  xmodal eval --plan hash --bits 16,32,64,128,256
  xmodal eval --plan hybrid --candidates 10,0.5%,1%,5%
  xmodal eval --model models/clip-vit-b32 --karpathy dataset_flickr30k.json --images flickr30k-images
  xmodal eval --embeddings my-embeddings/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			opts.Seed, opts.Workers = seed, threads
			if err := eval.CheckPlan(opts.Plan); err != nil {
				return err
			}
			hashed := opts.Plan == "hash" || opts.Plan == "hybrid"
			flags := cmd.Flags()
			for _, name := range []string{"bits", "coder", "candidates", "train-n"} {
				if flags.Changed(name) && !hashed {
					return fmt.Errorf("--%s needs --plan hash or hybrid", name)
				}
			}
			if flags.Changed("candidates") && opts.Plan != "hybrid" {
				return errors.New("--candidates needs --plan hybrid")
			}
			for _, b := range opts.Hash.Bits {
				if err := hash.CheckBits(b, 0); err != nil {
					return fmt.Errorf("--bits: %w", err)
				}
			}
			for _, c := range candidates {
				cd, err := eval.ParseCandidates(c)
				if err != nil {
					return fmt.Errorf("--%w", err)
				}
				opts.Hash.Candidates = append(opts.Hash.Candidates, cd)
			}
			switch coderName {
			case eval.CoderITQ, eval.CoderSimHash:
				opts.Hash.Method = coderName
			case "model":
			default:
				return fmt.Errorf("--coder %q: want itq, simhash or model", coderName)
			}
			fitITQ := hashed && coderName == eval.CoderITQ
			if trainN < 1 {
				return fmt.Errorf("--train-n %d must be positive", trainN)
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
				var train *eval.EmbeddedSet
				if q, db, train, err = eval.LoadEmbeddingSets(embDir); err != nil {
					return err
				}
				if noDB {
					db = nil
				}
				if fitITQ {
					opts.Hash.Train = train
				}
				if hashed && coderName == "model" {
					// The model's coder only: its manifest, no ONNX sessions.
					cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
					if err != nil {
						return err
					}
					dir, err := findModel(cfg.Model)
					if err != nil {
						return err
					}
					data, err := os.ReadFile(filepath.Join(dir, encoders.ManifestFile))
					if err != nil {
						return fmt.Errorf("--coder model: %w", err)
					}
					man, err := encoders.ParseManifest(data)
					if err != nil {
						return fmt.Errorf("--coder model: %s: %w", dir, err)
					}
					if err := setModelCoder(&opts.Hash, dir, man.Hash, man.Name+"@"+man.Version, man.Dim); err != nil {
						return err
					}
				}
			} else {
				var qc, dc, tc *eval.Corpus
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
				if fitITQ {
					if karpathyFile != "" {
						if split == "train" {
							return errors.New("--coder itq fits on the --karpathy file's train split, which is the split evaluated here: evaluate another split, or use --coder simhash or model")
						}
						if tc, err = eval.LoadKarpathy(karpathyFile, imageRoot, "train"); err != nil {
							return fmt.Errorf("ITQ fit set: %w", err)
						}
						tc = tc.Subsample(trainN)
					} else if tc, err = eval.SynthCorpus(ctx, synth.Config{Split: synth.SplitTrain, N: trainN, Captions: 1}); err != nil {
						return err
					}
				}
				cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
				if err != nil {
					return err
				}
				dir, err := findModel(cfg.Model)
				if err != nil {
					return err
				}
				log := newLogger(cfg, os.Stderr)
				m, err := encoders.Load(dir, modelOptions(cfg, log))
				if err != nil {
					return err
				}
				defer m.Close()
				modelName = fmt.Sprintf("%s (%s)", m.Version(), dir)
				opts.Hash.Model = m.Version()
				if hashed {
					for _, b := range opts.Hash.Bits {
						if err := hash.CheckBits(b, m.Dim()); err != nil {
							return fmt.Errorf("--bits: %w", err)
						}
					}
				}
				if hashed && coderName == "model" {
					if err := setModelCoder(&opts.Hash, m.Dir(), m.Manifest().Hash, m.Version(), m.Dim()); err != nil {
						return err
					}
				}
				t0 := time.Now()
				// image.decode_mode, as ingest and queries decode; no budget:
				// a batch holds its pictures until it is encoded.
				do, err := imageDecoderOptions(cfg, m)
				if err != nil {
					return err
				}
				dec, err := imageprep.NewDecoder(do)
				if err != nil {
					return err
				}
				eo := eval.EmbedOptions{ImageBatch: batch, Progress: cmd.ErrOrStderr(), Decoder: dec}
				if q, err = eval.EmbedCorpus(ctx, m, qc, eo); err != nil {
					return err
				}
				if dc != nil {
					if db, err = eval.EmbedCorpus(ctx, m, dc, eo); err != nil {
						return err
					}
				}
				if tc != nil {
					if opts.Hash.Train, err = eval.EmbedCorpus(ctx, m, tc, eo); err != nil {
						return err
					}
				}
				encodeS = time.Since(t0).Seconds()
			}
			if writeEmb != "" {
				if err := eval.WriteEmbeddingSets(writeEmb, q, db, opts.Hash.Train); err != nil {
					return err
				}
			}
			opts.Progress = cmd.ErrOrStderr()
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
	f.StringVar(&opts.Plan, "plan", "exact", "ranking plan: exact, hash (adds MAP of Hamming ranking per --bits) or hybrid (adds recall@10 and time against exact per --candidates)")
	f.IntSliceVar(&opts.Hash.Bits, "bits", nil, fmt.Sprintf("code lengths for --plan hash/hybrid, of %v and at most the dimension (default: hash all, hybrid 64)", hash.SupportedBits))
	f.StringVar(&coderName, "coder", eval.CoderITQ, "binary codes for --plan hash/hybrid: itq (fitted on the train set), simhash (random hyperplanes, --seed) or model (the model's hash.json)")
	f.StringSliceVar(&candidates, "candidates", nil, "hybrid short-list sizes C: counts or percentages of the gallery (default 0.1%,0.5%,1%,2%,5%,10%)")
	f.IntVar(&trainN, "train-n", 4000, "ITQ fit set: images of the generated train split (one caption each), or of the --karpathy file's train split")
	f.IntSliceVar(&opts.Ks, "k", []int{1, 5, 10}, "recall cut-offs")
	f.IntSliceVar(&opts.MAPKs, "map-k", []int{100}, "MAP cut-offs besides ALL")
	f.Uint64Var(&seed, "seed", 1, "seed of the random-ranking baseline, of ITQ's initial rotation and of SimHash's hyperplanes")
	f.IntVar(&batch, "batch", 64, "images per model call")
	f.IntVar(&threads, "threads", 0, "ranking goroutines (0: GOMAXPROCS)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	c.AddCommand(evalNeardupCmd())
	return c
}

// setModelCoder gives the hash plans the model's own coder (--coder model):
// the one hash.ForModel picks, as xmodal run does.
func setModelCoder(o *eval.HashOptions, dir string, section json.RawMessage, version string, dim int) error {
	c, src, err := hash.ForModel(dir, section, version, dim)
	if err != nil {
		return fmt.Errorf("--coder model: %w", err)
	}
	if c == nil {
		return fmt.Errorf("--coder model: model %s has no binary codes: %s", version, src)
	}
	for _, b := range o.Bits {
		if b != c.Bits() {
			return fmt.Errorf("--bits %d: the model's coder %s has %d bits (leave --bits out with --coder model)", b, c.ID(), c.Bits())
		}
	}
	o.Coder, o.CoderSource = c, fmt.Sprintf("the model's own coder (%s, %s)", version, src)
	return nil
}
