package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/sink/matching"
)

func eventsCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "events",
		Short: "Match events: posts that matched a moderation bank (JetStream stream " + matching.Stream + ")",
	}
	c.AddCommand(eventsTailCmd())
	return c
}

func eventsTailCmd() *cobra.Command {
	var bankNames []string
	var since string
	var all, follow, asJSON bool
	var limit int
	c := &cobra.Command{
		Use:   "tail",
		Short: "Print match events as they arrive (xmodal.events.v1.match.<bank>), optionally of some banks",
		Long: `Reads the match events of a running xmodal from the JetStream stream
` + matching.Stream + ` with an ephemeral ordered consumer (nothing is
acknowledged or changed): by default the events from now on, with --all every
event kept, with --since those matched after a time. Each event has an id
derived from (post id, version, entry id): a consumer that deduplicates by it
sees each match once (docs/moderation.md, "Match events").`,
		Example: `  xmodal events tail
  xmodal events tail --bank known-spam --all --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, b := range bankNames {
				if err := banks.ValidateName(b); err != nil {
					return fmt.Errorf("--bank: %w", err)
				}
			}
			_, nc, err := dialNATS(cmd)
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			oc := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
			switch {
			case all:
				oc.DeliverPolicy = jetstream.DeliverAllPolicy
			case since != "":
				t, err := parseWhen(since, time.Now())
				if err != nil {
					return fmt.Errorf("--since: %w", err)
				}
				oc.DeliverPolicy, oc.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
			}
			for _, b := range bankNames {
				oc.FilterSubjects = append(oc.FilterSubjects, matching.Subject(b))
			}
			ctx := cmd.Context()
			cons, err := js.OrderedConsumer(ctx, matching.Stream, oc)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("no match events yet: the stream %s does not exist (it is created when an indexer starts with banks)", matching.Stream)
			}
			if err != nil {
				return fmt.Errorf("events: %w", err)
			}
			out := cmd.OutOrStdout()
			n := 0
			for limit <= 0 || n < limit {
				fctx := ctx
				cancel := context.CancelFunc(func() {})
				if !follow {
					fctx, cancel = context.WithTimeout(ctx, 2*time.Second)
				}
				msg, err := cons.Next(jetstream.FetchContext(fctx))
				cancel()
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					idle := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout)
					if idle && !follow {
						return nil // caught up
					}
					if idle {
						continue
					}
					return err
				}
				n++
				if asJSON {
					fmt.Fprintln(out, strings.TrimSpace(string(msg.Data())))
					continue
				}
				var e matching.Event
				if err := json.Unmarshal(msg.Data(), &e); err != nil {
					fmt.Fprintf(os.Stderr, "an event that is not JSON on %s: %v\n", msg.Subject(), err)
					continue
				}
				d := ""
				switch {
				case e.Distance != nil:
					d = fmt.Sprintf(" distance %d", *e.Distance)
				case e.Score != nil:
					d = fmt.Sprintf(" score %.4f", *e.Score)
				}
				if e.Region != "" {
					d += " region " + e.Region
				}
				if s := e.Shown; s != nil {
					d += fmt.Sprintf(" (crop %.0f%%x%.0f%% of the entry, %d windows, pixels %.3f)", 100*(s[2]-s[0]), 100*(s[3]-s[1]), e.Windows, e.Pixels)
				}
				fmt.Fprintf(out, "%s %s bank=%s action=%s post=%s version=%d %s%s entry=%s source=%s id=%s\n",
					e.MatchedAt.Format(time.RFC3339), e.Modality, e.Bank, e.Action, e.PostID, e.Version, e.SignalType, d, e.EntryID, e.Source, e.ID)
			}
			return nil
		},
	}
	fs := c.Flags()
	fs.StringArrayVar(&bankNames, "bank", nil, "only events of this bank (repeatable)")
	fs.BoolVar(&all, "all", false, "start at the first event the stream keeps")
	fs.StringVar(&since, "since", "", "start at events matched after: RFC 3339, a date, or a duration ago (1h)")
	fs.BoolVarP(&follow, "follow", "f", true, "keep waiting for new events (--follow=false: stop when caught up)")
	fs.BoolVar(&asJSON, "json", false, "print each event as JSON, one a line")
	fs.IntVar(&limit, "limit", 0, "stop after this many events (0: no limit)")
	return c
}
