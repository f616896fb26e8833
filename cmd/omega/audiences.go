package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"connectrpc.com/connect"

	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

const audiencesUsage = `usage: omega audiences <command> [flags]   (through the API: OMEGA_API_URL, OMEGA_API_KEY)

  count AUDIENCE [--when CEL] [--list L] [--sample N]
                                             a dry run: profiles in the audience, and a sample
  broadcast AUDIENCE --journey J [--when CEL] [--run R] [--rate 20]
                                             start journey J once for every user of the audience
                                             (reach/audience/AUDIENCE/<user>/R; R: a UTC timestamp
                                             when empty); the same run again reaches nobody twice
  schedule AUDIENCE --journey J --cron C [--when CEL] [--rate 20]
                                             broadcast on a schedule (cron in UTC, "0 9 * * MON");
                                             each run is scheduled-<fire time>; again: replaced
  unschedule AUDIENCE                        stop the schedule (broadcasts running go on)
  status AUDIENCE --run R                    a broadcast's progress
  pause | resume | cancel AUDIENCE --run R   stop starting reaches, go on, or end the broadcast

--when is a CEL condition over profile (user_id, time_zone, locale, attrs, consent), e.g.
  'profile.attrs.tier == "gold" && profile.time_zone == "Europe/Berlin"'; every profile when empty.
--list L (repeatable, count, broadcast, schedule): members must also be on list L (whitelist ...).
flags: -o table|json (output format)
`

// audiencesFlags: the flags each audiences command reads.
var audiencesFlags = map[string][]string{
	"count":      {"when", "list", "sample", "o"},
	"broadcast":  {"journey", "when", "list", "run", "rate", "o"},
	"schedule":   {"journey", "cron", "when", "list", "rate", "o"},
	"unschedule": {"o"},
	"status":     {"run", "o"},
	"pause":      {"run", "o"},
	"resume":     {"run", "o"},
	"cancel":     {"run", "o"},
}

func runAudiences(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, audiencesUsage)
		return errors.New("missing audiences command")
	}
	fs := flag.NewFlagSet("audiences "+args[0], flag.ContinueOnError)
	when := fs.String("when", "", "CEL condition over profile")
	sample := fs.Int("sample", 10, "members to list (count)")
	journeyID := fs.String("journey", "", "journey each member starts (broadcast)")
	run := fs.String("run", "", "the broadcast's run")
	cron := fs.String("cron", "", "cron expression in UTC (schedule)")
	rate := fs.Float64("rate", 0, "reaches started per second at most (broadcast; 20 when 0)")
	output := fs.String("o", "table", "output: table or json")
	var lists listFlags
	fs.Var(&lists, "list", "members must also be on this list (repeatable: whitelist, blacklist)")
	scope := scopeFlags(fs, audiencesFlags[args[0]])
	if err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	if err := scope(); err != nil {
		return err
	}
	pos := fs.Args()
	if len(pos) != 1 {
		fmt.Fprint(stdout, audiencesUsage)
		return fmt.Errorf("audiences %s: name one audience", args[0])
	}
	aud := &omegav1.Audience{Id: pos[0], When: *when, Lists: lists}
	c, err := newAPIClient(cfg)
	if err != nil {
		return err
	}
	show := func(b *omegav1.Broadcast) error {
		if *output == "json" {
			return printJSON(stdout, b)
		}
		return render(stdout, *output, []*omegav1.Broadcast{b},
			[]string{"BROADCAST", "JOURNEY", "STATE", "SCANNED", "MEMBERS", "STARTED", "ALREADY", "CURSOR"},
			func(b *omegav1.Broadcast) []any {
				return []any{b.GetWorkflowId(), orDash(b.GetJourneyId()), b.GetState(), b.GetScanned(), b.GetMatched(),
					b.GetStarted(), b.GetAlready(), orDash(b.GetCursor())}
			})
	}
	switch args[0] {
	case "count":
		resp, err := c.audiences.CountAudience(ctx, connect.NewRequest(&omegav1.CountAudienceRequest{Audience: aud, Sample: int32(*sample)}))
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(stdout, resp.Msg)
		}
		fmt.Fprintf(stdout, "%d of %d profiles are in audience %s\n", resp.Msg.GetMembers(), resp.Msg.GetScanned(), aud.GetId())
		for _, u := range resp.Msg.GetSample() {
			fmt.Fprintf(stdout, "  %s\n", u)
		}
		return nil
	case "broadcast":
		resp, err := c.audiences.StartBroadcast(ctx, connect.NewRequest(&omegav1.StartBroadcastRequest{Audience: aud,
			JourneyId: *journeyID, Run: *run, Rate: *rate}))
		if err != nil {
			return err
		}
		if !resp.Msg.GetCreated() && *output != "json" {
			fmt.Fprintln(stdout, "already started:")
		}
		return show(resp.Msg.GetBroadcast())
	case "schedule":
		resp, err := c.audiences.ScheduleBroadcast(ctx, connect.NewRequest(&omegav1.ScheduleBroadcastRequest{Audience: aud,
			JourneyId: *journeyID, Cron: *cron, Rate: *rate}))
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(stdout, resp.Msg)
		}
		fmt.Fprintf(stdout, "schedule %s: journey %s, %q\n", resp.Msg.GetScheduleId(), *journeyID, *cron)
		for _, t := range resp.Msg.GetNext() {
			fmt.Fprintf(stdout, "  next %s\n", t.AsTime().Format(time.RFC3339))
		}
		return nil
	case "unschedule":
		if _, err := c.audiences.DeleteBroadcastSchedule(ctx, connect.NewRequest(&omegav1.DeleteBroadcastScheduleRequest{AudienceId: aud.GetId()})); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "schedule of %s deleted\n", aud.GetId())
		return nil
	case "status", "pause", "resume", "cancel":
		var b *omegav1.Broadcast
		switch args[0] {
		case "status":
			r, err := c.audiences.GetBroadcast(ctx, connect.NewRequest(&omegav1.GetBroadcastRequest{AudienceId: aud.GetId(), Run: *run}))
			if err != nil {
				return err
			}
			b = r.Msg.GetBroadcast()
		case "pause":
			r, err := c.audiences.PauseBroadcast(ctx, connect.NewRequest(&omegav1.PauseBroadcastRequest{AudienceId: aud.GetId(), Run: *run}))
			if err != nil {
				return err
			}
			b = r.Msg.GetBroadcast()
		case "resume":
			r, err := c.audiences.ResumeBroadcast(ctx, connect.NewRequest(&omegav1.ResumeBroadcastRequest{AudienceId: aud.GetId(), Run: *run}))
			if err != nil {
				return err
			}
			b = r.Msg.GetBroadcast()
		case "cancel":
			r, err := c.audiences.CancelBroadcast(ctx, connect.NewRequest(&omegav1.CancelBroadcastRequest{AudienceId: aud.GetId(), Run: *run}))
			if err != nil {
				return err
			}
			b = r.Msg.GetBroadcast()
		}
		return show(b)
	default:
		fmt.Fprint(stdout, audiencesUsage)
		return fmt.Errorf("unknown audiences command %q", args[0])
	}
}

// listFlags collects repeated --list flags.
type listFlags []string

func (l *listFlags) String() string     { return strings.Join(*l, ",") }
func (l *listFlags) Set(v string) error { *l = append(*l, v); return nil }
