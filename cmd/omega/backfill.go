package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/backfill"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
)

const backfillUsage = `usage: omega rules backfill RULE --since 168h [flags]   (through the API: OMEGA_API_URL, OMEGA_API_KEY)

Replays the events topic's retained history from --since ago through the rule (its active version,
or --version N, a draft too) and reports its matches per day, with a sample. It reaches nobody
unless --start. Ctrl-C cancels it; the server then deletes its consumer group and state.

  --since D          how far back to replay (a Go duration: 168h, 36h30m); required
  --version N        a stored version (the active one when 0)
  --start            also start the reaches of the recent matches, under the workflow IDs live
                     matching uses (a reach that exists is not started again)
  --start-within D   with --start: matches whose event time is this recent (24h when 0)
  --sample N         matches listed (10; at most 100; 0: none)
  -o table|json
`

// runRuleBackfill runs omega rules backfill: progress on progressOut, the report on stdout.
func runRuleBackfill(ctx context.Context, cfg config, args []string, stdout, progressOut io.Writer) error {
	fs := flag.NewFlagSet("rules backfill", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	since := fs.Duration("since", 0, "")
	version := fs.Int("version", 0, "")
	start := fs.Bool("start", false, "")
	startWithin := fs.Duration("start-within", 0, "")
	sample := fs.Int("sample", backfill.DefaultSampleSize, "")
	output := fs.String("o", "table", "")
	if err := parseInterspersed(fs, args); err != nil {
		fmt.Fprint(stdout, backfillUsage)
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stdout, backfillUsage)
		return errors.New("want one RULE")
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("-o %s: want table or json", *output)
	}
	if *since <= 0 {
		return errors.New("--since: required, a positive duration such as 168h")
	}
	c, err := newAPIClient(cfg)
	if err != nil {
		return err
	}
	msg := &omegav1.BackfillRuleRequest{RuleId: fs.Arg(0), Version: int32(*version), Since: timestamppb.New(time.Now().Add(-*since)),
		Start: *start, SampleSize: int32(max(*sample, 1))}
	if *startWithin != 0 {
		msg.StartWithin = durationpb.New(*startWithin)
	}
	req := connect.NewRequest(msg)
	req.Header().Set("Authorization", "Bearer "+c.key)
	stream, err := c.rules.BackfillRule(ctx, req)
	if err != nil {
		return err
	}
	defer stream.Close()
	var rep *omegav1.BackfillReport
	shown := false
	for stream.Receive() {
		if p := stream.Msg().GetProgress(); p != nil {
			fmt.Fprintf(progressOut, "\rreplaying %s: %s", fs.Arg(0), progressLine(p))
			shown = true
		}
		if r := stream.Msg().GetReport(); r != nil {
			rep = r
		}
	}
	if shown {
		fmt.Fprintln(progressOut)
	}
	if err := stream.Err(); err != nil {
		if ctx.Err() != nil {
			return errors.New("backfill cancelled (the server deletes its consumer group and state)")
		}
		return err
	}
	if rep == nil {
		return errors.New("the backfill ended without a report")
	}
	if *sample == 0 {
		rep.Sample = nil // --sample 0: none (the API's 0 is its default)
	}
	if *output == "json" {
		return printJSON(stdout, rep)
	}
	return printBackfill(stdout, rep)
}

func progressLine(p *omegav1.BackfillProgress) string {
	pct := 100.0
	if p.GetRecordsTotal() > 0 {
		pct = 100 * float64(p.GetRecordsRead()) / float64(p.GetRecordsTotal())
	}
	return fmt.Sprintf("%d/%d records (%.1f%%), %d/%d partitions done, %d matches", p.GetRecordsRead(), p.GetRecordsTotal(), pct,
		p.GetPartitionsDone(), p.GetPartitions(), p.GetMatches())
}

// printBackfill prints a report as tables: the days, then the sample.
func printBackfill(w io.Writer, r *omegav1.BackfillReport) error {
	ts := func(t *timestamppb.Timestamp) string { return t.AsTime().UTC().Format(time.RFC3339) }
	fmt.Fprintf(w, "rule %s v%d: %d records from %s to %s, %d matches\n", r.GetRuleId(), r.GetRuleVersion(), r.GetRecords(),
		ts(r.GetSince()), ts(r.GetUntil()), r.GetMatches())
	started := r.GetStartAfter() != nil
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if started {
		fmt.Fprintln(tw, "\nDAY (UTC)\tMATCHES\tSTARTED")
	} else {
		fmt.Fprintln(tw, "\nDAY (UTC)\tMATCHES")
	}
	for _, d := range r.GetDays() {
		if started {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", d.GetDate(), d.GetMatches(), d.GetStarted())
		} else {
			fmt.Fprintf(tw, "%s\t%d\n", d.GetDate(), d.GetMatches())
		}
	}
	if started {
		fmt.Fprintf(tw, "total\t%d\t%d\n", r.GetMatches(), r.GetStarted())
	} else {
		fmt.Fprintf(tw, "total\t%d\n", r.GetMatches())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if started {
		fmt.Fprintf(w, "\nstarted %d reaches (matches since %s); %d existed already; %d older matches only reported\n",
			r.GetStarted(), ts(r.GetStartAfter()), r.GetExisting(), r.GetTooOld())
	} else {
		fmt.Fprintln(w, "\nnobody was reached (--start starts the recent matches' reaches)")
	}
	if len(r.GetSample()) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nsample (the first %d by event time):\n", len(r.GetSample()))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT TIME\tUSER\tEVENTS\tREACH ID")
	for _, m := range r.GetSample() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ts(m.GetEventTime()), m.GetUserId(), strings.Join(m.GetEventIds(), ","), m.GetReachId())
	}
	return tw.Flush()
}

// newRuleClient is RuleService through the API, without a client timeout: a backfill streams for
// as long as it runs, and Ctrl-C (ctx) ends it.
func newRuleClient(url string) omegav1connect.RuleServiceClient {
	return omegav1connect.NewRuleServiceClient(&http.Client{}, url)
}
