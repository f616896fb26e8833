package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/omegareach/omega/event"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
)

const reachesUsage = `usage: omega reaches <command> [flags]   (through the API: OMEGA_API_URL, OMEGA_API_KEY)

  list --user U [--status S] [--limit N]   a user's reaches, newest first
  get ID                                    one reach with its audit trail
  cancel ID [--reason R]                    stop one open reach
  cancel --user U (--rule R | --journey J) [--reason R]
                                            stop every open reach of a user for a rule or journey
  timeline --user U [--limit N]             every audited step of a user's reaches, newest first
  funnel (--rule R | --journey J) [--version N] [--since 24h] [--by path]
                                            matched -> sent -> opened -> converted, suppressed by filter;
                                            --by path: per split path, its conversion rate (95% interval),
                                            lift over the holdout, p-value, and the winner
  trigger --user U --journey J --key K [--attr k=v ...]
                                            start a journey for a user (the same key twice is one reach)

flags: -o table|json (output format)
`

const eventsUsage = `usage: omega events send [flags]   (through the API: OMEGA_API_URL, OMEGA_API_KEY)
       omega events types <command>  (the event catalogue: omega events types for help)

  send --user U --type T [--item I] [--attr k=v ...] [--id ID] [--ts TIME]
                                    one event (ID generated when omitted; TIME RFC 3339, now when omitted)
  send -f FILE.jsonl [--check]      events, one JSON object per line, in batches of 1000; a batch
                                    with bad events is refused whole, each bad line named;
                                    --check checks every line as the API would and sends nothing
`

// apiClient calls the API with the key from OMEGA_API_KEY.
type apiClient struct {
	reaches   omegav1connect.ReachServiceClient
	events    omegav1connect.EventServiceClient
	audiences omegav1connect.AudienceServiceClient
	// rules carries no key by itself (its streaming call sets the header from key).
	rules omegav1connect.RuleServiceClient
	key   string
}

func newAPIClient(cfg config) (apiClient, error) {
	if err := cfg.need("OMEGA_API_KEY"); err != nil {
		return apiClient{}, err
	}
	key := cfg.apiKey
	if key == "" {
		return apiClient{}, errors.New("OMEGA_API_KEY is not set (make run prints a development key; omega apikey create makes one)")
	}
	url := cfg.apiURL
	withKey := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+key)
			return next(ctx, req)
		}
	})
	hc := &http.Client{Timeout: 60 * time.Second}
	return apiClient{
		reaches:   omegav1connect.NewReachServiceClient(hc, url, connect.WithInterceptors(withKey)),
		events:    omegav1connect.NewEventServiceClient(hc, url, connect.WithInterceptors(withKey)),
		audiences: omegav1connect.NewAudienceServiceClient(hc, url, connect.WithInterceptors(withKey)),
		rules:     newRuleClient(url),
		key:       key,
	}, nil
}

// attrFlags collects repeated --attr k=v flags.
type attrFlags map[string]any

func (a attrFlags) String() string { return "" }
func (a attrFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	var parsed any
	if json.Unmarshal([]byte(val), &parsed) != nil {
		parsed = val // not JSON: a string
	}
	a[k] = parsed
	return nil
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// reachesFlags: the flags each reaches command reads.
var reachesFlags = map[string][]string{
	"list":     {"user", "status", "limit", "o"},
	"get":      {"o"},
	"cancel":   {"reason", "user", "rule", "journey", "o"},
	"timeline": {"user", "limit", "o"},
	"funnel":   {"rule", "journey", "version", "since", "by", "o"},
	"trigger":  {"user", "journey", "key", "attr", "o"},
}

func runReaches(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, reachesUsage)
		return errors.New("missing reaches command")
	}
	fs := flag.NewFlagSet("reaches "+args[0], flag.ContinueOnError)
	user := fs.String("user", "", "user ID")
	status := fs.String("status", "", "only reaches with this status")
	limit := fs.Int("limit", 20, "most reaches to list")
	rule := fs.String("rule", "", "rule ID")
	journeyID := fs.String("journey", "", "journey ID")
	reason := fs.String("reason", "", "why (kept in the audit trail)")
	key := fs.String("key", "", "idempotency key")
	version := fs.Int("version", 0, "journey version (funnel)")
	since := fs.Duration("since", 24*time.Hour, "funnel over reaches matched this long ago until now")
	by := fs.String("by", "", "funnel: path (per split path, with lift over the holdout)")
	output := fs.String("o", "table", "output: table or json")
	attrs := attrFlags{}
	fs.Var(attrs, "attr", "key=value (repeatable; JSON values are parsed)")
	scope := scopeFlags(fs, reachesFlags[args[0]])
	// Flags may follow the positional ID: omega reaches cancel ID --reason R.
	if err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	if err := scope(); err != nil {
		return err
	}
	pos := fs.Args()
	if *limit < 1 {
		return fmt.Errorf("--limit must be at least 1 (got %d)", *limit)
	}
	c, err := newAPIClient(cfg)
	if err != nil {
		return err
	}
	switch args[0] {
	case "list":
		var rs []*omegav1.Reach
		token := ""
		for len(rs) < *limit {
			resp, err := c.reaches.List(ctx, connect.NewRequest(&omegav1.ListRequest{UserId: *user, Status: *status,
				PageSize: int32(min(*limit-len(rs), 100)), PageToken: token}))
			if err != nil {
				return err
			}
			rs = append(rs, resp.Msg.GetReaches()...)
			if token = resp.Msg.GetNextPageToken(); token == "" {
				break
			}
		}
		if *output == "json" {
			return printJSON(stdout, &omegav1.ListResponse{Reaches: rs})
		}
		return render(stdout, *output, rs, []string{"REACH", "RULE", "JOURNEY", "STATUS", "CHANNEL", "STARTED", "UPDATED"}, func(r *omegav1.Reach) []any {
			return []any{r.GetReachId(), r.GetRuleId(), r.GetJourneyId(), r.GetStatus(), orDash(r.GetChannel()),
				r.GetStartedAt().AsTime().Local().Format(time.DateTime), r.GetUpdatedAt().AsTime().Local().Format(time.DateTime)}
		})
	case "get":
		if len(pos) != 1 {
			return errors.New("usage: omega reaches get ID")
		}
		resp, err := c.reaches.Get(ctx, connect.NewRequest(&omegav1.GetRequest{ReachId: pos[0]}))
		if err != nil {
			return err
		}
		r := resp.Msg.GetReach()
		if *output == "json" {
			return printJSON(stdout, r)
		}
		fmt.Fprintf(stdout, "reach    %s\nuser     %s\nrule     %s\njourney  %s\nstatus   %s\n", r.GetReachId(), r.GetUserId(),
			r.GetRuleId(), r.GetJourneyId(), r.GetStatus())
		if r.GetCurrentStep() != "" {
			fmt.Fprintf(stdout, "at step  %s (journey version %d)\n", r.GetCurrentStep(), r.GetJourneyVersion())
		}
		if recs := r.GetAudit(); len(recs) > 0 && recs[0].GetTraceId() != "" {
			fmt.Fprintf(stdout, "trace    %s\n", recs[0].GetTraceId())
		}
		fmt.Fprintln(stdout)
		return render(stdout, "table", r.GetAudit(), []string{"AT", "STEP", "KIND", "OUTCOME", "CHANNEL", "REASON"}, func(a *omegav1.AuditRecord) []any {
			return []any{a.GetAt().AsTime().Local().Format("15:04:05.000"), a.GetStep(), a.GetKind(), orDash(a.GetOutcome()), orDash(a.GetChannel()), orDash(a.GetReason())}
		})
	case "cancel":
		req := &omegav1.CancelRequest{Reason: *reason, UserId: *user, RuleId: *rule, JourneyId: *journeyID}
		switch len(pos) {
		case 0:
		case 1:
			req.ReachId = pos[0]
		default:
			return errors.New("usage: omega reaches cancel ID, or --user U --rule R|--journey J")
		}
		resp, err := c.reaches.Cancel(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(stdout, resp.Msg)
		}
		for _, id := range resp.Msg.GetCancelled() {
			fmt.Fprintf(stdout, "cancelled %s\n", id)
		}
		if len(resp.Msg.GetCancelled()) == 0 {
			fmt.Fprintln(stdout, "no open reach matched")
		}
		if resp.Msg.GetTruncated() {
			fmt.Fprintln(stdout, "more open reaches remain: run the same cancel again")
		}
		return nil
	case "timeline":
		var recs []*omegav1.TimelineRecord
		token := ""
		for len(recs) < *limit {
			resp, err := c.reaches.Timeline(ctx, connect.NewRequest(&omegav1.TimelineRequest{UserId: *user,
				PageSize: int32(min(*limit-len(recs), 500)), PageToken: token}))
			if err != nil {
				return err
			}
			recs = append(recs, resp.Msg.GetRecords()...)
			if token = resp.Msg.GetNextPageToken(); token == "" {
				break
			}
		}
		if *output == "json" {
			return printJSON(stdout, &omegav1.TimelineResponse{Records: recs})
		}
		return render(stdout, *output, recs, []string{"AT", "REACH", "STEP", "KIND", "OUTCOME", "CHANNEL", "REASON"}, func(r *omegav1.TimelineRecord) []any {
			a := r.GetRecord()
			return []any{a.GetAt().AsTime().Local().Format("2006-01-02 15:04:05.000"), r.GetReachId(), a.GetStep(), a.GetKind(),
				orDash(a.GetOutcome()), orDash(a.GetChannel()), orDash(a.GetReason())}
		})
	case "funnel":
		now := time.Now()
		resp, err := c.reaches.Funnel(ctx, connect.NewRequest(&omegav1.FunnelRequest{RuleId: *rule, JourneyId: *journeyID,
			JourneyVersion: int32(*version), From: timestamppb.New(now.Add(-*since)), To: timestamppb.New(now)}))
		if err != nil {
			return err
		}
		f := resp.Msg
		if *output == "json" {
			return printJSON(stdout, f)
		}
		if *by == "path" {
			return renderLift(stdout, f.GetLift())
		} else if *by != "" {
			return fmt.Errorf("--by %q: want path", *by)
		}
		pct := func(n int64) string {
			if f.GetMatched() == 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(f.GetMatched()))
		}
		type row struct {
			stage string
			n     int64
		}
		rows := []row{{"matched", f.GetMatched()}, {"sent", f.GetSent()}, {"opened", f.GetOpened()}, {"converted", f.GetConverted()},
			{"suppressed", f.GetSuppressed()}}
		for _, by := range slices.Sorted(maps.Keys(f.GetSuppressedBy())) {
			rows = append(rows, row{"  by " + by, f.GetSuppressedBy()[by]})
		}
		rows = append(rows, row{"failed", f.GetFailed()}, row{"cancelled", f.GetCancelled()}, row{"running", f.GetRunning()})
		if f.GetHeldOut() > 0 {
			rows = append(rows, row{"held out (control group)", f.GetHeldOut()})
		}
		return render(stdout, "table", rows, []string{"STAGE", "REACHES", "OF MATCHED"}, func(r row) []any {
			return []any{r.stage, r.n, pct(r.n)}
		})
	case "trigger":
		st, err := structpb.NewStruct(attrs)
		if err != nil {
			return err
		}
		resp, err := c.reaches.Trigger(ctx, connect.NewRequest(&omegav1.TriggerRequest{UserId: *user, JourneyId: *journeyID,
			IdempotencyKey: *key, Attrs: st}))
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(stdout, resp.Msg)
		}
		verb := "started"
		if !resp.Msg.GetCreated() {
			verb = "already started"
		}
		fmt.Fprintf(stdout, "%s %s\n", verb, resp.Msg.GetReachId())
		return nil
	default:
		fmt.Fprint(stdout, reachesUsage)
		return fmt.Errorf("unknown reaches command %q", args[0])
	}
}

// renderLift prints a funnel's split paths against the holdout.
func renderLift(w io.Writer, paths []*omegav1.PathLift) error {
	if len(paths) == 0 {
		fmt.Fprintln(w, "no reach met a split in the range")
		return nil
	}
	rate := func(p *omegav1.PathLift) string {
		return fmt.Sprintf("%.2f%% [%.2f, %.2f]", 100*p.GetRate(), 100*p.GetRateLow(), 100*p.GetRateHigh())
	}
	err := render(w, "table", paths, []string{"PATH", "REACHED", "CONVERTED", "RATE [95% CI]", "LIFT", "DIFF [95% CI] (points)", "P", "WINS"},
		func(p *omegav1.PathLift) []any {
			if !p.GetCompared() {
				return []any{p.GetPath(), p.GetReached(), p.GetConverted(), rate(p), "-", "-", "-", "-"}
			}
			lift := fmt.Sprintf("%+.1f%%", 100*p.GetLift())
			if math.IsInf(p.GetLift(), 1) {
				lift = "+inf"
			}
			wins := "-"
			if p.GetWins() {
				wins = "yes"
			}
			return []any{p.GetPath(), p.GetReached(), p.GetConverted(), rate(p), lift,
				fmt.Sprintf("%+.2f [%+.2f, %+.2f]", 100*p.GetDiff(), 100*p.GetDiffLow(), 100*p.GetDiffHigh()),
				fmt.Sprintf("%.4f", p.GetPValue()), wins}
		})
	if err != nil {
		return err
	}
	for _, p := range paths {
		if p.GetWins() {
			fmt.Fprintf(w, "path %s wins: its rate is above the holdout's and every other path's (p < 0.05 against each)\n", p.GetPath())
			return nil
		}
	}
	if !slices.ContainsFunc(paths, func(p *omegav1.PathLift) bool { return p.GetPath() == "holdout" && p.GetReached() > 0 }) {
		fmt.Fprintln(w, "no holdout reaches in the range: nothing to compare with")
		return nil
	}
	fmt.Fprintln(w, "no path wins yet: none is significantly above the holdout and every other path")
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runEvents(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "types" {
		return runEventTypes(ctx, cfg, args[1:], stdout)
	}
	if len(args) == 0 || args[0] != "send" {
		fmt.Fprint(stdout, eventsUsage)
		return errors.New("want: omega events send, or omega events types")
	}
	fs := flag.NewFlagSet("events send", flag.ContinueOnError)
	path := fs.String("f", "", "events, one JSON object per line ('-' for stdin)")
	user := fs.String("user", "", "user ID")
	typ := fs.String("type", "", "event type")
	item := fs.String("item", "", "item ID")
	id := fs.String("id", "", "event ID")
	ts := fs.String("ts", "", "when the event happened, RFC 3339 (2026-12-02T10:00:00Z; now when omitted)")
	check := fs.Bool("check", false, "with -f: check every line as the API would, send nothing, and name every bad line")
	attrs := attrFlags{}
	fs.Var(attrs, "attr", "key=value (repeatable; JSON values are parsed)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *path != "" {
		var set []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "f" && f.Name != "check" {
				set = append(set, "--"+f.Name)
			}
		})
		if len(set) > 0 {
			return fmt.Errorf("%s: with -f, every field comes from the file's lines", strings.Join(set, ", "))
		}
	}
	c, err := newAPIClient(cfg)
	if err != nil {
		return err
	}
	send := func(evs []*omegav1.Event) (int, error) {
		resp, err := c.events.Ingest(ctx, connect.NewRequest(&omegav1.IngestRequest{Events: evs, ValidateOnly: *check}))
		if err != nil {
			return 0, err
		}
		return int(resp.Msg.GetAccepted()), nil
	}
	if *path == "" {
		if *id == "" {
			*id = fmt.Sprintf("cli-%d", time.Now().UnixNano())
		}
		st, err := structpb.NewStruct(attrs)
		if err != nil {
			return err
		}
		at := time.Now()
		if *ts != "" {
			if at, err = time.Parse(time.RFC3339Nano, *ts); err != nil {
				return fmt.Errorf("--ts: want a time such as 2026-12-02T10:00:00Z: %w", err)
			}
		}
		n, err := send([]*omegav1.Event{{EventId: *id, UserId: *user, Type: *typ, ItemId: *item, Ts: timestamppb.New(at), Attrs: st}})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "accepted %d event (%s)\n", n, *id)
		return nil
	}
	var r io.Reader = os.Stdin
	if *path != "-" {
		f, err := os.Open(*path)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	// A line that is not an event stops the sending: the batch it is in and all after it stay
	// unsent, and the rest of the file is read to name every such line. With --check nothing is
	// sent, every line is checked and every bad one named.
	var malformed []string
	nMalformed, unsentFrom := 0, 0
	br := bufio.NewReaderSize(r, 64<<10)
	var batch []*omegav1.Event
	var lines []int // the line of each event of the batch
	total, line, size := 0, 0, 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n, err := send(batch)
		if err != nil && *check {
			// Checking: every batch is checked, its bad lines kept for the report.
			bad, nBad, ok := badLines(err, lines)
			if !ok {
				return fmt.Errorf("checking the batch of lines %d-%d: %w", lines[0], lines[len(lines)-1], err)
			}
			malformed = append(malformed, bad...)
			nMalformed += nBad
			n = len(batch) - nBad
			err = nil
		}
		if err != nil {
			if total > 0 {
				fmt.Fprintln(os.Stderr)
			}
			return batchRefused(os.Stderr, err, lines, total)
		}
		total += n
		batch, lines, size = batch[:0], lines[:0], 0
		if *check {
			fmt.Fprintf(os.Stderr, "\rchecked %d lines", line)
		} else {
			fmt.Fprintf(os.Stderr, "\raccepted %d", total)
		}
		return nil
	}
	for {
		raw, tooLong, err := readLine(br, maxLine)
		if err == io.EOF && len(raw) == 0 && !tooLong {
			break
		}
		if err != nil && err != io.EOF {
			return err
		}
		line++
		text := bytes.TrimSpace(raw)
		if len(text) == 0 && !tooLong {
			continue
		}
		var ev omegav1.Event
		perr := protojson.Unmarshal(text, &ev)
		if tooLong {
			perr = fmt.Errorf("longer than %d bytes (an event is at most %d)", maxLine, event.MaxSize)
		}
		if perr != nil {
			err := perr
			if nMalformed == 0 {
				unsentFrom = line
				if len(lines) > 0 {
					unsentFrom = lines[0]
				}
			}
			nMalformed++
			if len(malformed) < 100 || *check && len(malformed) < 10_000 {
				// protojson puts non-breaking spaces in its messages (so nobody parses them).
				malformed = append(malformed, fmt.Sprintf("line %d: not an event: %s", line, strings.ReplaceAll(err.Error(), "\u00a0", " ")))
			}
			continue
		}
		if nMalformed > 0 && !*check {
			continue
		}
		// A batch is at most 1,000 events and maxBatchBytes (the API takes requests of 4 MiB).
		if n := proto.Size(&ev); len(batch) == 1000 || size+n > maxBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		batch, lines, size = append(batch, &ev), append(lines, line), size+proto.Size(&ev)
	}
	if *check {
		if err := flush(); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr)
		sortByLine(malformed)
		for _, m := range malformed {
			fmt.Fprintln(os.Stderr, m)
		}
		if nMalformed > 0 {
			return fmt.Errorf("%d bad lines (listed above), %s fit to send; nothing was sent (--check)", nMalformed, nEvents(total))
		}
		fmt.Fprintf(stdout, "%s fit to send; nothing was sent (--check)\n", nEvents(total))
		return nil
	}
	if nMalformed > 0 {
		if total > 0 {
			fmt.Fprintln(os.Stderr)
		}
		for _, m := range malformed {
			fmt.Fprintln(os.Stderr, m)
		}
		return fmt.Errorf("%s%s: nothing from line %d on was sent (events before it accepted: %d); fix the lines and send the file from line %d",
			malformed[0], moreAbove(len(malformed), nMalformed, "such line"), unsentFrom, total, unsentFrom)
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "\n")
	fmt.Fprintf(stdout, "accepted %d events\n", total)
	return nil
}

// batchRefused says which lines of a refused batch were bad (the API names events[i] in its
// error's field violations) on w, and returns the error: the first bad line, and how the file
// stands (the batches before it were accepted, this one and those after it were not sent).
func batchRefused(w io.Writer, err error, lines []int, accepted int) error {
	bad, total, ok := badLines(err, lines)
	if !ok {
		return fmt.Errorf("the batch of lines %d-%d was refused (events before it accepted: %d): %w", lines[0], lines[len(lines)-1], accepted, err)
	}
	for _, b := range bad {
		fmt.Fprintln(w, b)
	}
	return fmt.Errorf("%s%s: the batch of lines %d-%d was refused whole, nothing of it sent (events before it accepted: %d); fix the lines and send the file from line %d",
		bad[0], moreAbove(len(bad), total, "bad line"), lines[0], lines[len(lines)-1], accepted, lines[0])
}

// badLines are the field violations of an InvalidArgument error from Ingest, each naming the
// file's line of its events[i] (lines[i]), and how many the API counted (it lists at most 100);
// false for another error.
func badLines(err error, lines []int) (bad []string, total int, ok bool) {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
		return nil, 0, false
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		br, isBR := v.(*errdetails.BadRequest)
		if derr != nil || !isBR {
			continue
		}
		for _, fv := range br.GetFieldViolations() {
			where := fv.GetField()
			var i int
			if k, _ := fmt.Sscanf(where, "events[%d]", &i); k == 1 && i >= 0 && i < len(lines) {
				rest := strings.TrimPrefix(where[strings.Index(where, "]")+1:], ".")
				where = "line " + strconv.Itoa(lines[i])
				if rest != "" {
					where += ": " + rest
				}
			}
			bad = append(bad, where+": "+fv.GetDescription())
		}
	}
	if len(bad) == 0 {
		return nil, 0, false
	}
	total = len(bad)
	if i := strings.Index(ce.Message(), " (and "); i >= 0 {
		var n int
		if k, _ := fmt.Sscanf(ce.Message()[i:], " (and %d more violations", &n); k == 1 {
			total = max(total, n+1)
		}
	}
	return bad, total, true
}

// moreAbove says, after the first of total lines of a kind (what: "bad line"), how many more are
// listed above it, and how many in all when only the first listed are.
func moreAbove(listed, total int, what string) string {
	switch {
	case total > listed:
		return fmt.Sprintf(" (%d %ss in all, the first %d listed above)", total, what, listed)
	case total == 2:
		return " (and 1 more " + what + " above)"
	case total > 2:
		return fmt.Sprintf(" (and %d more %ss above)", total-1, what)
	}
	return ""
}

const (
	// maxLine bounds a line of an events file: past it the line is named, not read (an event is
	// at most event.MaxSize).
	maxLine = 1 << 20
	// maxBatchBytes bounds one Ingest call's events, under the API's 4 MiB request limit.
	maxBatchBytes = 3 << 20
)

// readLine reads the next line (without its end) of up to max bytes; a longer one is read to its
// end and dropped (tooLong). At the end of the input it returns io.EOF with the last line, if any.
func readLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > max+1 { // +1: the newline
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), tooLong, err
	}
}

// sortByLine orders "line N: ..." messages by N.
func sortByLine(ms []string) {
	n := func(m string) int {
		var i int
		_, _ = fmt.Sscanf(m, "line %d", &i)
		return i
	}
	slices.SortStableFunc(ms, func(a, b string) int { return n(a) - n(b) })
}

// nEvents is "1 event" or "n events".
func nEvents(n int) string {
	if n == 1 {
		return "1 event"
	}
	return strconv.Itoa(n) + " events"
}
