package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/sink/milvus"
	"github.com/xmodal/xmodal/sink/sharedclusters"
)

// milvusCmd groups the Milvus administration of a model upgrade
// (docs/milvus.md): swap the alias to a new model version, then drop the old one.
func milvusCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "milvus",
		Short: "Milvus administration: move the alias to a model version, drop a model version's collections, migrate them to the current schema",
	}
	c.AddCommand(milvusAdminCmd("swap-alias", "Point the alias milvus.collection at a model version's collections",
		`Points the alias milvus.collection at the collections of MODEL_VERSION (the
last step of a model upgrade: run an indexer with the new model until it has
caught up, check it, then swap). It refuses a version that has no collections
yet. Query processes with milvus.follow_alias open the new collections when
they restart with the new model.`, "pointed alias %s at model %q\n", milvus.SwapAlias),
		milvusAdminCmd("drop-model", "Drop every collection of a model version (never the live one)",
			`Drops the collections of MODEL_VERSION (records, codes, PDQ hashes, posts; the
deny-list is shared by every version and stays). It refuses the version the
alias milvus.collection points to: swap the alias first.`, "dropped the collections of model %[2]q (alias %[1]s)\n", milvus.DropModel),
		milvusMigrateCmd(), milvusRebuildClustersCmd())
	return c
}

// milvusRebuildClustersCmd rebuilds a Milvus deployment's shared clusters
// from the records (sharedclusters.Index.RebuildClusters).
func milvusRebuildClustersCmd() *cobra.Command {
	var model string
	c := &cobra.Command{
		Use:   "rebuild-clusters",
		Short: "Rebuild the deployment's near-duplicate clusters from the image records in Milvus",
		Long: `Empties the near-duplicate clusters every process of the Milvus deployment
shares (clusters.enabled; kept in JetStream at nats.url) and joins every image
record of the collection the alias milvus.collection points to (or of
--model-version) again: after a takedown left a cluster of more than
clusters.split_limit members whole, say. (An indexer does it by itself at start
when no rebuild has finished on the clusters' stream: clusters turned on over a
collection that holds posts, or new clusters options.) Ingest goes on meanwhile. Milvus rows keep
only the whole-image PDQ hash, so the posts rejoined here link by it alone
(not by their mirrored or content-rectangle hashes) until they are written
again; text-only posts are not rejoined. See docs/clusters.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, nc, err := dialNATS(cmd)
			if err != nil {
				return err
			}
			defer nc.Close()
			if cfg.Milvus.Address == "" {
				return errors.New("config milvus.address: required (the Milvus that holds the collections)")
			}
			if !cfg.Clusters.Enabled {
				return errors.New("config clusters.enabled is off: the deployment keeps no clusters to rebuild")
			}
			log := newLogger(cfg, cmd.ErrOrStderr())
			ix, err := milvus.OpenExisting(cmd.Context(), cfg.milvusOptions(roleServe, 0, model, 0, log))
			if err != nil {
				if errors.Is(err, milvus.ErrUnreachable) {
					return fmt.Errorf("config milvus.address: %w", err)
				}
				return err
			}
			defer ix.Close()
			a := &app{cfg: cfg, log: log, nc: nc}
			cl, err := a.openSharedClusters(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			n, err := sharedclusters.Wrap(ix, cl).RebuildClusters(cmd.Context())
			if err != nil {
				return err
			}
			st := cl.Stats()
			fmt.Fprintf(cmd.OutOrStdout(), "rejoined %d image posts: %d clusters of two or more, the largest of %d\n", n, st.Multi, st.Largest)
			return nil
		},
	}
	c.Flags().StringVar(&model, "model-version", "", "the model version whose collections to read (default: the one the alias milvus.collection points to)")
	return c
}

// milvusMigrateCmd copies a model version's collections of an older schema
// into collections of the current one (milvus.Migrate).
func milvusMigrateCmd() *cobra.Command {
	var dropOld bool
	c := &cobra.Command{
		Use:   "migrate MODEL_VERSION",
		Short: "Copy a model version's collections into the current schema (bank matches), then move the alias",
		Long: `Copies the collections of MODEL_VERSION made before records kept their bank
matches (schema 1) into new collections of the current schema, moves the alias
milvus.collection to them if it pointed to the old ones, and with --drop-old
drops the old collections. Milvus cannot add a field to a collection in place.
Stop the indexers of this model version first (the copy fails if the records
change while it runs); restart query processes afterwards, before dropping the
old collections. Running it again after a failure is safe; on current
collections it does nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
			if err != nil {
				return err
			}
			if cfg.Milvus.Address == "" {
				return errors.New("config milvus.address: required (the Milvus that holds the collections)")
			}
			log := newLogger(cfg, cmd.ErrOrStderr())
			o := cfg.milvusOptions(roleIndexer, 0, args[0], 0, log)
			last := time.Now()
			rep, err := milvus.Migrate(cmd.Context(), o, dropOld, func(done int) {
				if time.Since(last) > 2*time.Second {
					fmt.Fprintf(cmd.ErrOrStderr(), "copied %d records\n", done)
					last = time.Now()
				}
			})
			if err != nil {
				if errors.Is(err, milvus.ErrUnreachable) {
					return fmt.Errorf("config milvus.address: %w", err)
				}
				return err
			}
			out := cmd.OutOrStdout()
			if rep.Done {
				fmt.Fprintf(out, "%s is current: nothing to migrate\n", rep.From)
				return nil
			}
			fmt.Fprintf(out, "copied %d records and %d versions rows from %s into %s\n", rep.Records, rep.Versions, rep.From, rep.To)
			if rep.AliasMoved {
				fmt.Fprintf(out, "alias %s now points to %s: restart the query processes\n", cfg.Milvus.Collection, rep.To)
			}
			if rep.Dropped {
				fmt.Fprintf(out, "dropped the collections of %s\n", rep.From)
			} else {
				fmt.Fprintf(out, "the old collections stay: drop them with --drop-old once nothing reads them\n")
			}
			return nil
		},
	}
	c.Flags().BoolVar(&dropOld, "drop-old", false, "drop the old collections after the copy and the alias move")
	return c
}

// milvusAdminCmd is one `xmodal milvus` subcommand: fn run on milvus.* with the
// model version given as the argument.
func milvusAdminCmd(use, short, long, done string, fn func(context.Context, milvus.Options, string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " MODEL_VERSION",
		Short: short,
		Long:  long,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
			if err != nil {
				return err
			}
			if cfg.Milvus.Address == "" {
				return errors.New("config milvus.address: required (the Milvus that holds the collections)")
			}
			log := newLogger(cfg, cmd.ErrOrStderr())
			o := cfg.milvusOptions(roleIndexer, 0, args[0], 0, log)
			if err := fn(cmd.Context(), o, args[0]); err != nil {
				if errors.Is(err, milvus.ErrUnreachable) {
					return fmt.Errorf("config milvus.address: %w", err)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), done, cfg.Milvus.Collection, args[0])
			return nil
		},
	}
}
