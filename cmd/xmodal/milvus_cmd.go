package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/sink/milvus"
)

// milvusCmd groups the Milvus administration of a model upgrade
// (docs/milvus.md): swap the alias to a new model version, then drop the old one.
func milvusCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "milvus",
		Short: "Milvus administration: move the alias to a model version, drop a model version's collections",
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
alias milvus.collection points to: swap the alias first.`, "dropped the collections of model %[2]q (alias %[1]s)\n", milvus.DropModel))
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
