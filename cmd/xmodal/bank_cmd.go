package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
)

// bankCallTimeout bounds one request of the bank commands.
const bankCallTimeout = time.Minute

// importPayloadBytes bounds the JSON of one add request of an import: under
// NATS's default max_payload (1 MB) with room for the request's other fields.
const importPayloadBytes = 700 << 10

func bankCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bank",
		Short: "Moderation banks: lists of known content (PDQ, MD5, text, URL) that lookups match",
		Long: `Creates, lists, fills and queries the moderation banks of a running xmodal over
NATS (docs/moderation.md). Changes go to xmodal.v1.admin.banks.* (the
connection's NATS user needs the admin permissions) and are recorded in the
service's audit log with --actor; ls and match are reader operations.`,
	}
	var actor string
	c.PersistentFlags().StringVar(&actor, "actor", "", "who makes the change, for the audit log (default: the NATS user, else the OS user)")
	c.AddCommand(bankCreateCmd(&actor), bankUpdateCmd(&actor), bankDeleteCmd(&actor), bankLsCmd(), bankAddCmd(&actor), bankRmCmd(&actor),
		bankImportCmd(&actor), bankExportCmd(), bankMatchCmd(), bankCalibrateCmd(), bankSweepCmd(&actor), bankSweepStatusCmd())
	return c
}

// bankActor is --actor, else the NATS user, else the OS user.
func bankActor(cmd *cobra.Command, flag string) string {
	if flag != "" {
		return flag
	}
	if cfg, err := loadConfig(cmd.Flags(), os.LookupEnv); err == nil && cfg.NATS.User != "" {
		return cfg.NATS.User
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "cli"
}

// bankDo connects, sends one request with the commands' timeout and closes
// the connection.
func bankDo(cmd *cobra.Command, endpoint string, req, out any) error {
	_, err := callOnce(cmd, bankCallTimeout, func(ctx context.Context, cl *client.Client) (struct{}, error) {
		return struct{}{}, cl.Call(ctx, endpoint, req, out)
	})
	return err
}

// bankCall sends one request with the commands' timeout.
func bankCall(cmd *cobra.Command, cl *client.Client, endpoint string, req, out any) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), bankCallTimeout)
	defer cancel()
	return cl.Call(ctx, endpoint, req, out)
}

// bankConfigFlags are the configuration flags of create and update.
type bankConfigFlags struct {
	thresholds  []string
	labels      []string
	action      string
	pdq         int
	dihedral    string
	description string
	disabled    bool
	enabled     bool
	storeMedia  bool
}

func (f *bankConfigFlags) register(fs *pflag.FlagSet, update bool) {
	fs.StringArrayVar(&f.labels, "label", nil, "a label copied onto every match (repeatable)")
	fs.StringVar(&f.action, "action", "", "what consumers should do with a match: review (default), block or log")
	fs.IntVar(&f.pdq, "pdq-threshold", banks.DefaultPDQThreshold, "largest PDQ Hamming distance that matches (0..64)")
	fs.StringVar(&f.dihedral, "pdq-dihedral", "", "how an image's rotated and mirrored hashes are searched: fast (default; every entry within 15-21 bits, most up to the threshold), exact or off (its own hash only)")
	fs.StringVar(&f.description, "description", "", "what the bank holds, for people")
	fs.StringArrayVar(&f.thresholds, "threshold", nil, "an embedding threshold PAIR=COSINE, PAIR one of image_image, text_image, text_text, image_text (repeatable; refused below the model's noise floor, banks.calibration)")
	fs.BoolVar(&f.storeMedia, "store-media", false, "allow keeping exemplar images (off: only hashes are kept)")
	if update {
		fs.BoolVar(&f.enabled, "enable", false, "enable the bank (it takes part in matching)")
		fs.BoolVar(&f.disabled, "disable", false, "disable the bank (it stops matching; entries are kept)")
	} else {
		fs.BoolVar(&f.disabled, "disabled", false, "create the bank disabled")
	}
}

// embeddingThresholds reads --threshold PAIR=COSINE values.
func (f *bankConfigFlags) embeddingThresholds() (banks.EmbeddingThresholds, error) {
	var et banks.EmbeddingThresholds
	for _, kv := range f.thresholds {
		k, v, ok := strings.Cut(kv, "=")
		x, err := strconv.ParseFloat(strings.TrimSpace(v), 32)
		if !ok || err != nil {
			return et, fmt.Errorf("--threshold %q: want PAIR=COSINE, e.g. text_image=0.26", kv)
		}
		switch banks.Pair(strings.TrimSpace(k)) {
		case banks.PairImageImage:
			et.ImageImage = float32(x)
		case banks.PairTextImage:
			et.TextImage = float32(x)
		case banks.PairTextText:
			et.TextText = float32(x)
		case banks.PairImageText:
			et.ImageText = float32(x)
		default:
			return et, fmt.Errorf("--threshold %q: pair %q is not image_image, text_image, text_text or image_text", kv, k)
		}
	}
	return et, nil
}

func bankCreateCmd(actor *string) *cobra.Command {
	var f bankConfigFlags
	c := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a bank (xmodal.v1.admin.banks.create)",
		Example: `  xmodal bank create known-spam --label spam --action review
  xmodal bank create csam-hashes --label csam --action block --pdq-threshold 16`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			enabled := !f.disabled
			pdq := f.pdq
			et, err := f.embeddingThresholds()
			if err != nil {
				return err
			}
			req := query.BankRequest{Name: args[0], Description: f.description, Labels: f.labels, Enabled: &enabled,
				Action: banks.Action(f.action), Thresholds: banks.Thresholds{PDQ: &pdq, Embedding: et}, PDQDihedral: banks.DihedralMode(f.dihedral),
				StoreMedia: f.storeMedia, Actor: bankActor(cmd, *actor)}
			var res query.BankChangeResponse
			if err := bankDo(cmd, "admin.banks.create", req, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created bank %s (enabled %v, pdq threshold %d)\n", args[0], enabled, pdq)
			return nil
		},
	}
	f.register(c.Flags(), false)
	return c
}

func bankUpdateCmd(actor *string) *cobra.Command {
	var f bankConfigFlags
	c := &cobra.Command{
		Use:     "update NAME",
		Short:   "Change a bank's configuration: only the flags given change (xmodal.v1.admin.banks.update)",
		Example: `  xmodal bank update known-spam --disable`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fields := map[string]any{"name": args[0], "actor": bankActor(cmd, *actor)}
			fl := cmd.Flags()
			if f.enabled && f.disabled {
				return errors.New("--enable and --disable contradict each other")
			}
			if fl.Changed("enable") || fl.Changed("disable") {
				fields["enabled"] = f.enabled
			}
			if fl.Changed("label") {
				fields["labels"] = f.labels
			}
			if fl.Changed("action") {
				fields["action"] = f.action
			}
			if fl.Changed("pdq-threshold") || fl.Changed("threshold") {
				// Thresholds are replaced as a whole: give every one to keep.
				et, err := f.embeddingThresholds()
				if err != nil {
					return err
				}
				fields["thresholds"] = banks.Thresholds{PDQ: &f.pdq, Embedding: et}
			}
			if fl.Changed("pdq-dihedral") {
				fields["pdq_dihedral"] = f.dihedral
			}
			if fl.Changed("description") {
				fields["description"] = f.description
			}
			if fl.Changed("store-media") {
				fields["store_media"] = f.storeMedia
			}
			if len(fields) == 2 {
				return errors.New("nothing to change: give --enable, --disable, --label, --action, --pdq-threshold, --pdq-dihedral, --description or --store-media")
			}
			if err := bankDo(cmd, "admin.banks.update", fields, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "updated bank %s\n", args[0])
			return nil
		},
	}
	f.register(c.Flags(), true)
	return c
}

func bankDeleteCmd(actor *string) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a bank and all its entries (xmodal.v1.admin.banks.delete)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bankDo(cmd, "admin.banks.delete", query.BankNameRequest{Name: args[0], Actor: bankActor(cmd, *actor)}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted bank %s\n", args[0])
			return nil
		},
	}
}

func bankLsCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "ls [NAME]",
		Short: "List the banks, or the entries of one (xmodal.v1.banks.list, banks.get)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, closeFn, err := clientConn(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			out := cmd.OutOrStdout()
			if len(args) == 0 {
				var res query.BanksListResponse
				if err := bankCall(cmd, cl, "banks.list", struct{}{}, &res); err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(out).Encode(res)
				}
				tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "BANK\tENABLED\tACTION\tPDQ\tDIHEDRAL\tENTRIES\tBY TYPE\tLABELS")
				for _, b := range res.Banks {
					var types []string
					for _, t := range []string{"pdq", "md5", "text", "url", "embedding_text", "embedding_image"} {
						if n := b.Counts[t]; n > 0 {
							types = append(types, fmt.Sprintf("%s:%d", t, n))
						}
						if t == "pdq" && b.Windows > 0 {
							types = append(types, fmt.Sprintf("crops:%d", b.Windows))
						}
					}
					dih := b.PDQDihedral
					if dih == "" {
						dih = banks.DihedralFast
					}
					fmt.Fprintf(tw, "%s\t%v\t%s\t%d\t%s\t%d\t%s\t%s\n", b.Name, b.Enabled, b.Action, b.Thresholds.PDQThreshold(), dih, b.Entries,
						strings.Join(types, " "), strings.Join(b.Labels, ","))
				}
				return tw.Flush()
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(tw, "ID\tTYPE\tSIGNAL\tDISABLED\tTAGS\tADDED BY\tNOTE")
			}
			cursor := ""
			for {
				var res query.BankGetResponse
				if err := bankCall(cmd, cl, "banks.get", query.BankNameRequest{Name: args[0], Entries: true, Cursor: cursor}, &res); err != nil {
					return err
				}
				for _, e := range res.Entries {
					if asJSON {
						if err := json.NewEncoder(out).Encode(e); err != nil {
							return err
						}
						continue
					}
					sig := e.Value
					if len(sig) > 72 {
						sig = sig[:69] + "..."
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\n", e.ID, e.Type, sig, e.Disabled, strings.Join(e.Tags, ","), e.AddedBy, e.Note)
				}
				if cursor = res.NextCursor; cursor == "" {
					break
				}
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON (the banks list, or one entry a line)")
	return c
}

func bankAddCmd(actor *string) *cobra.Command {
	var pdqs, md5s, texts, urls, imgs, tags, concepts, exemplars []string
	var note, source string
	var crops bool
	c := &cobra.Command{
		Use:   "add NAME [--pdq HEX] [--md5 HEX] [--text T] [--url U] [--image FILE [--crops]]...",
		Short: "Add signals to a bank (xmodal.v1.admin.banks.add); an image adds its PDQ hash and MD5",
		Example: `  xmodal bank add known-spam --text "buy followers now" --url spam.example/offer
  xmodal bank add known-memes --image meme.jpg --note "ticket 4411"
  xmodal bank add known-abuse --image banned.jpg --crops`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var entries []banks.Entry
			for _, l := range []struct {
				t  banks.SignalType
				vs []string
			}{{banks.SignalPDQ, pdqs}, {banks.SignalMD5, md5s}, {banks.SignalText, texts}, {banks.SignalURL, urls}} {
				for _, v := range l.vs {
					entries = append(entries, banks.Entry{Type: l.t, Value: v})
				}
			}
			for _, c := range concepts {
				entries = append(entries, banks.Entry{Type: banks.SignalEmbedding, Modality: "text", Value: c})
			}
			if len(entries) == 0 && len(imgs) == 0 && len(exemplars) == 0 {
				return errors.New("nothing to add: give --pdq, --md5, --text, --url, --image, --concept or --exemplar")
			}
			if crops && len(imgs) == 0 {
				return errors.New("--crops keeps the windows of --image files: give --image")
			}
			cl, closeFn, err := clientConn(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			base := query.BankAddRequest{Bank: args[0], Tags: tags, Note: note, Source: source, Actor: bankActor(cmd, *actor)}
			total := banks.Result{}
			var swept *query.CropsSwept // the crops sweeps' posts, summed
			send := func(req query.BankAddRequest) error {
				var res query.BankChangeResponse
				if err := bankCall(cmd, cl, "admin.banks.add", req, &res); err != nil {
					return err
				}
				total.Added += res.Result.Added
				total.Replaced += res.Result.Replaced
				if res.Crops != nil {
					if swept == nil {
						swept = &query.CropsSwept{}
					}
					swept.Found += res.Crops.Found
					swept.Known += res.Crops.Known
				}
				return nil
			}
			if len(entries) > 0 {
				req := base
				req.Entries = entries
				if err := send(req); err != nil {
					return err
				}
			}
			for _, l := range []struct {
				flag     string
				paths    []string
				exemplar bool
			}{{"--image", imgs, false}, {"--exemplar", exemplars, true}} {
				for _, p := range l.paths {
					b, err := os.ReadFile(p)
					if err != nil {
						return fmt.Errorf("%s: %w", l.flag, err)
					}
					req := base
					req.Image, req.Exemplar = b, l.exemplar
					req.Crops = crops && !l.exemplar
					if err := send(req); err != nil {
						return fmt.Errorf("%s %s: %w", l.flag, p, err)
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bank %s: %d added, %d replaced\n", args[0], total.Added, total.Replaced)
			if swept != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "crops already posted: %d found (events made), %d known\n", swept.Found, swept.Known)
			}
			return nil
		},
	}
	fs := c.Flags()
	fs.StringArrayVar(&pdqs, "pdq", nil, "a PDQ hash, 64 hex characters (repeatable)")
	fs.StringArrayVar(&md5s, "md5", nil, "an MD5 of a media file, 32 hex characters (repeatable)")
	fs.StringArrayVar(&texts, "text", nil, "a text, matched after normalisation (repeatable)")
	fs.StringArrayVar(&urls, "url", nil, "a URL, matched after normalisation (repeatable)")
	fs.StringArrayVar(&imgs, "image", nil, "an image file: its PDQ hash and MD5 are added, the image is not kept (repeatable)")
	fs.BoolVar(&crops, "crops", false, "with --image: keep the images' near-duplicate windows too (about 3.3 KB each, a 24x24 grey patch among them), so that crops of them match")
	fs.StringArrayVar(&concepts, "concept", nil, "a written concept (\"a rifle held up to the camera\"): embedded by the server's text tower, matched by cosine (repeatable)")
	fs.StringArrayVar(&exemplars, "exemplar", nil, "an exemplar image file: its vector is added, matched by cosine; the image is not kept (repeatable)")
	fs.StringArrayVar(&tags, "tag", nil, "a tag of the new entries (repeatable)")
	fs.StringVar(&note, "note", "", "a note on the new entries")
	fs.StringVar(&source, "source", "", "where the signals come from")
	return c
}

func bankRmCmd(actor *string) *cobra.Command {
	var disable, enable bool
	c := &cobra.Command{
		Use:   "rm NAME ENTRY_ID...",
		Short: "Remove entries from a bank, or --disable them (false positives under review) (xmodal.v1.admin.banks.remove)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if disable && enable {
				return errors.New("--enable and --disable contradict each other")
			}
			req := query.BankRemoveRequest{Bank: args[0], IDs: args[1:], Actor: bankActor(cmd, *actor)}
			if disable || enable {
				req.Disabled = &disable
			}
			var res query.BankChangeResponse
			if err := bankDo(cmd, "admin.banks.remove", req, &res); err != nil {
				return err
			}
			verb, n := "removed", res.Result.Removed
			if req.Disabled != nil {
				verb, n = "updated", res.Result.Updated
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bank %s: %d entries %s\n", args[0], n, verb)
			if len(res.Result.Missing) > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "not in the bank: %s\n", strings.Join(res.Result.Missing, " "))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&disable, "disable", false, "disable the entries instead of removing them (they stop matching)")
	c.Flags().BoolVar(&enable, "enable", false, "enable disabled entries again")
	return c
}

// countingReader counts the bytes read through it (import progress).
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// ErrBadLines is returned by an import that skipped bad lines (they are
// listed on stderr; the good lines are imported).
var ErrBadLines = errors.New("bad lines were skipped")

func bankImportCmd(actor *string) *cobra.Command {
	var format, signalType, source string
	var quiet bool
	c := &cobra.Command{
		Use:   "import NAME FILE",
		Short: "Import a hash list into a bank: python-threatexchange lines or CSV, streamed; bad lines reported by number and reason",
		Long: `Reads FILE (- for stdin) in the local-file format of Meta's python-threatexchange
and HMA ("pdq <hex>" a line, or bare signals with --signal-type) or as CSV with a
header (signal, signal_type, tags, note), and adds the signals to the bank in
requests of up to 10,000 entries (xmodal.v1.admin.banks.add). The file is
streamed: millions of lines take constant memory. Every bad line is reported on
stderr with its number and reason while the good ones are imported; the exit
status is then 1. Importing the same file again adds nothing (entry ids derive
from the signals).`,
		Example: `  xmodal bank import known-spam hashes.txt
  xmodal bank import known-spam md5s.txt --signal-type md5
  xmodal bank import known-spam export.csv --format csv`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var in io.Reader = cmd.InOrStdin()
			size := int64(-1)
			if args[1] != "-" {
				f, err := os.Open(args[1])
				if err != nil {
					return err
				}
				defer f.Close()
				if st, err := f.Stat(); err == nil {
					size = st.Size()
				}
				in = f
			}
			cr := &countingReader{r: in}
			fmtv := banks.Format("")
			if format != "" {
				v, err := banks.ParseFormat(format)
				if err != nil {
					return fmt.Errorf("--format: %w", err)
				}
				fmtv = v
			}
			im, err := banks.NewImporter(cr, banks.ImportOptions{Format: fmtv, SignalType: banks.SignalType(signalType)})
			if err != nil {
				return fmt.Errorf("%s: %w", args[1], err)
			}
			cl, closeFn, err := clientConn(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			// The bank must exist before anything is read further.
			if err := bankCall(cmd, cl, "banks.get", query.BankNameRequest{Name: args[0]}, nil); err != nil {
				return err
			}
			return runImport(cmd, cl, im, cr, size, args[0], source, bankActor(cmd, *actor), quiet)
		},
	}
	fs := c.Flags()
	fs.StringVar(&format, "format", "", "lines or csv (default: detected: CSV when the first line is a header with a signal column)")
	fs.StringVar(&signalType, "signal-type", "", "the type of bare signals (lines) and of CSV rows without one: pdq, md5, text, url (or their python-threatexchange names)")
	fs.StringVar(&source, "source", "", "where the list comes from (recorded on every entry; default: the file name)")
	fs.BoolVar(&quiet, "quiet", false, "no progress line")
	return c
}

// runImport streams the importer's signals to the bank in add requests and
// reports progress and bad lines on stderr.
func runImport(cmd *cobra.Command, cl *client.Client, im *banks.Importer, cr *countingReader, size int64, bank, source, actor string, quiet bool) error {
	errw := cmd.ErrOrStderr()
	if source == "" && len(cmd.Flags().Args()) > 1 && cmd.Flags().Arg(1) != "-" {
		source = cmd.Flags().Arg(1)
	}
	bt := banks.OpBatcher{Bank: bank, MaxBytes: importPayloadBytes}
	var lines, bad, added, replaced int
	start, last := time.Now(), time.Now()
	// On a terminal the progress line is rewritten in place every second;
	// into a file or pipe a line is written every 10 s.
	tty := isTerminal(errw)
	every := time.Second
	if !tty {
		every = 10 * time.Second
	}
	progress := func(final bool) {
		if quiet || (!final && time.Since(last) < every) {
			return
		}
		last = time.Now()
		rate := float64(lines+bad) / max(time.Since(start).Seconds(), 1e-3)
		pct := ""
		if size > 0 {
			pct = fmt.Sprintf("%5.1f%% ", 100*float64(cr.n.Load())/float64(size))
		}
		end := "\r"
		if final || !tty {
			end = "\n"
		}
		fmt.Fprintf(errw, "%s%d lines imported, %d bad, %.0f lines/s%s", pct, lines, bad, rate, end)
	}
	send := func(op *banks.Op) error {
		var res query.BankChangeResponse
		if err := bankCall(cmd, cl, "admin.banks.add", query.BankAddRequest{Bank: bank, Entries: op.Entries, Source: source, Actor: actor}, &res); err != nil {
			return fmt.Errorf("after %d lines: %w", lines, err)
		}
		added += res.Result.Added
		replaced += res.Result.Replaced
		return nil
	}
	entry := func(sig banks.ImportedSignal) banks.Entry {
		lines++
		progress(false)
		return banks.Entry{Type: sig.Type, Value: sig.Value, Tags: sig.Tags, Note: sig.Note}
	}
	if _, err := bt.AddAll(im, entry, send, func(le *banks.LineError) {
		bad++
		if !quiet && tty {
			fmt.Fprint(errw, "\r\033[K") // clear the progress line
		}
		fmt.Fprintf(errw, "line %d: %v\n", le.Line, le.Err)
	}); err != nil {
		return err
	}
	progress(true)
	fmt.Fprintf(cmd.OutOrStdout(), "bank %s: %d lines imported (%d added, %d already present), %d bad lines\n", bank, lines, added, replaced, bad)
	if bad > 0 {
		return fmt.Errorf("%d %w (listed above with their numbers and reasons); the other lines were imported", bad, ErrBadLines)
	}
	return nil
}

func bankExportCmd() *cobra.Command {
	var format, output string
	c := &cobra.Command{
		Use:   "export NAME",
		Short: "Write a bank's entries as python-threatexchange lines or CSV (xmodal.v1.admin.banks.export)",
		Long: `Writes every entry of the bank, page by page, in a format 'xmodal bank import'
(and python-threatexchange, for lines) reads back. Embedding entries have no
file form and are counted as skipped.`,
		Example: `  xmodal bank export known-spam > known-spam.txt
  xmodal bank export known-spam --format csv -o known-spam.csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := banks.FormatLines
			if format != "" {
				v, err := banks.ParseFormat(format)
				if err != nil {
					return fmt.Errorf("--format: %w", err)
				}
				f = v
			}
			cl, closeFn, err := clientConn(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			var w io.Writer = cmd.OutOrStdout()
			if output != "" && output != "-" {
				file, err := os.Create(output)
				if err != nil {
					return err
				}
				defer file.Close()
				w = file
			}
			written, skipped := 0, 0
			cursor := ""
			for {
				var res query.BankExportResponse
				if err := bankCall(cmd, cl, "admin.banks.export", query.BankExportRequest{Bank: args[0], Format: f, Cursor: cursor, Limit: query.MaxBankPage}, &res); err != nil {
					return err
				}
				if _, err := io.WriteString(w, res.Data); err != nil {
					return err
				}
				written += res.Written
				skipped += res.Skipped
				if cursor = res.NextCursor; cursor == "" {
					break
				}
			}
			if c, ok := w.(*os.File); ok && c != os.Stdout {
				if err := c.Close(); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "bank %s: %d entries written, %d embedding entries skipped (no file form)\n", args[0], written, skipped)
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "lines", "lines (python-threatexchange) or csv")
	c.Flags().StringVarP(&output, "output", "o", "", "write to this file (default: stdout)")
	return c
}

func bankMatchCmd() *cobra.Command {
	var req query.MatchRequest
	var imagePath string
	var asJSON bool
	c := &cobra.Command{
		Use:   "match [--image FILE | --image-url URL | --pdq HEX | --md5 HEX | --text T | --url U]",
		Short: "Look content up in every enabled bank (xmodal.v1.match)",
		Example: `  xmodal bank match --image suspect.jpg
  xmodal bank match --text "buy followers now at spam.example/offer"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if imagePath != "" {
				b, err := os.ReadFile(imagePath)
				if err != nil {
					return fmt.Errorf("--image: %w", err)
				}
				req.Image = b
			}
			var res query.MatchResponse
			if err := bankDo(cmd, "match", req, &res); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			if res.PDQ != "" && req.PDQ == "" {
				q := ""
				if res.Quality != nil {
					q = fmt.Sprintf(" (quality %d)", *res.Quality)
				}
				fmt.Fprintf(out, "image pdq %s%s md5 %s\n", res.PDQ, q, res.MD5)
			}
			if len(res.Matches) == 0 {
				fmt.Fprintln(out, "no match")
				return nil
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BANK\tACTION\tLABELS\tTYPE\tDISTANCE/SCORE\tMATCHED AS\tENTRY")
			for _, m := range res.Matches {
				d := ""
				switch {
				case m.Distance != nil:
					d = fmt.Sprint(*m.Distance)
				case m.Score != nil:
					d = fmt.Sprintf("%.4f", *m.Score)
				}
				where := m.Transform
				if len(m.Region) == 4 {
					// Matched through the picture inside a caption band or a frame.
					where = fmt.Sprintf("%s in %d,%d-%d,%d", cmp.Or(where, "original"), m.Region[0], m.Region[1], m.Region[2], m.Region[3])
				}
				if len(m.Shown) == 4 {
					// A crop: the part of the banked image it shows.
					where += fmt.Sprintf(" (crop %.0f%%x%.0f%% of the entry, %d windows, pixels %.2f)", 100*(m.Shown[2]-m.Shown[0]), 100*(m.Shown[3]-m.Shown[1]), m.Windows, m.Pixels)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Bank, m.Action, strings.Join(m.Labels, ","), m.SignalType, d, where, m.EntryID)
			}
			return tw.Flush()
		},
	}
	fs := c.Flags()
	fs.StringVar(&imagePath, "image", "", "an image file: matched by its 8 dihedral PDQ hashes, its MD5 and (embedding banks) its vector")
	fs.StringVar(&req.ImageURL, "image-url", "", "an image URL, fetched by the server behind its SSRF guard")
	fs.StringVar(&req.PDQ, "pdq", "", "a PDQ hash (64 hex characters), matched as given")
	fs.StringVar(&req.MD5, "md5", "", "an MD5 (32 hex characters)")
	fs.StringVar(&req.Text, "text", "", "a text: matched normalised, and the URLs in it")
	fs.StringArrayVar(&req.URLs, "url", nil, "a URL (repeatable)")
	fs.StringArrayVar(&req.Banks, "bank", nil, "only this bank (repeatable; default: every enabled bank)")
	fs.BoolVar(&asJSON, "json", false, "print the reply as JSON")
	return c
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func bankCalibrateCmd() *cobra.Command {
	var data []string
	var out string
	var batch, maxSamples int
	c := &cobra.Command{
		Use:   "calibrate --data POSTS... --out FILE",
		Short: "Measure the model's noise floors for embedding thresholds (the file banks.calibration names)",
		Long: `Embeds the texts and images of sample posts (post files as 'xmodal hash fit'
reads them) with the model and measures, per pair of modalities, the 99.9th
percentile of the cosine similarity of unrelated items: images of different
posts (image_image), texts of different posts (text_text), and texts against
images and images against texts (text_image, image_text; a post's own text and
image are counted too, which only raises the floor). A bank's embedding
threshold below its pair's floor would match about one unrelated item in a
thousand or more, and is refused once banks.calibration names the file. Use
posts of unrelated content, at least 142 of each modality (10,000 pairs).`,
		Example: `  xmodal gen --split train --n 400 --posts --out .cache/calib
  xmodal bank calibrate --data .cache/calib --out calibration.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
			if err != nil {
				return err
			}
			if len(data) == 0 || out == "" {
				return errors.New("--data and --out are required")
			}
			log := newLogger(cfg, cmd.ErrOrStderr())
			dir, err := findModel(cfg.Model)
			if err != nil {
				return err
			}
			model, err := encoders.Load(dir, modelOptions(cfg, log))
			if err != nil {
				return err
			}
			defer model.Close()
			s, desc, err := embedSamples(cmd.Context(), model, data, batch, maxSamples, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cal := banks.Calibration{ModelVersion: model.Version(), Quantile: banks.NoiseQuantile,
				Floors: map[banks.Pair]float32{}, Pairs: map[banks.Pair]int{}}
			for _, p := range []struct {
				pair   banks.Pair
				a, b   [][]float32
				paired bool
			}{{banks.PairImageImage, s.Image, s.Image, true}, {banks.PairTextText, s.Text, s.Text, true},
				{banks.PairTextImage, s.Text, s.Image, false}, {banks.PairImageText, s.Image, s.Text, false}} {
				if len(p.a) == 0 || len(p.b) == 0 {
					continue
				}
				f, n, err := banks.UnrelatedQuantile(p.a, p.b, banks.NoiseQuantile, p.paired)
				if err != nil {
					return fmt.Errorf("%s: %w", p.pair, err)
				}
				cal.Floors[p.pair], cal.Pairs[p.pair] = f, n
			}
			if len(cal.Floors) == 0 {
				return fmt.Errorf("no images or texts in %s", desc)
			}
			b, _ := json.MarshalIndent(cal, "", "  ")
			if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s: model %s, %d images and %d texts of %s\n", out, cal.ModelVersion, len(s.Image), len(s.Text), desc)
			for _, p := range banks.Pairs {
				if f, ok := cal.Floors[p]; ok {
					fmt.Fprintf(w, "  %-11s floor %.4f (%d unrelated pairs)\n", p, f, cal.Pairs[p])
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&data, "data", nil, "posts.jsonl (or a directory holding one) of unrelated posts; repeatable")
	f.StringVar(&out, "out", "", "calibration file to write (then set banks.calibration to it)")
	f.IntVar(&batch, "batch", 32, "embedding batch size")
	f.IntVar(&maxSamples, "max-samples", 4000, "at most this many posts")
	return c
}

func bankSweepCmd(actor *string) *cobra.Command {
	return &cobra.Command{
		Use:   "sweep NAME",
		Short: "Sweep the posts already indexed for every PDQ entry of a bank (xmodal.v1.admin.banks.sweep); adds start one by themselves",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st banks.SweepStatus
			if err := bankDo(cmd, "admin.banks.sweep", query.BankNameRequest{Name: args[0], Actor: bankActor(cmd, *actor)}, &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sweep %d of bank %s: %d entries, %s ('xmodal bank sweep-status' shows its progress)\n", st.ID, st.Bank, st.Entries, st.State)
			return nil
		},
	}
}

func bankSweepStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sweep-status",
		Short: "Show the retro sweeps of the serving process that answers (xmodal.v1.banks.sweeps)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res query.SweepsResponse
			if err := bankDo(cmd, "banks.sweeps", struct{}{}, &res); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tBANK\tSTATE\tDONE\tRECORDS\tMATCHES\tKNOWN\tRESUMED\tQUEUED\tTOOK\tERROR")
			for _, s := range res.Sweeps {
				took := ""
				if !s.Finished.IsZero() && !s.Started.IsZero() {
					took = s.Finished.Sub(s.Started).Round(time.Millisecond).String()
				}
				resumed := "-" // the checkpoint a restart resumed the sweep from
				if s.Resumed > 0 {
					resumed = fmt.Sprintf("at %d", s.Resumed)
				}
				records := "-" // records scanned for text, URL and embedding entries
				if s.Records > 0 {
					records = fmt.Sprint(s.Records)
				}
				// KNOWN: posts found whose records already carried the match (no event).
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Bank, s.State, s.Done, s.Entries, records, s.Matches, s.Known, resumed,
					s.Queued.Format(time.RFC3339), took, s.Error)
			}
			return tw.Flush()
		},
	}
}
