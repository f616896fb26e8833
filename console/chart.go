package console

import (
	"fmt"
	"time"

	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

// BarChart is a horizontal bar chart drawn as SVG by the template: one bar per figure, its value
// written beside it.
type BarChart struct {
	Title         string
	Width, Height int
	Bars          []Bar
}

// Bar is one bar; Value is the figure shown, exactly as the API returned it.
type Bar struct {
	Label      string
	Value      int64
	Y, W       int
	TextX      int
	Class      string
	LabelWidth int
}

const (
	barH, barGap, labelW, chartW = 22, 8, 150, 640
)

// funnelChart draws a funnel: the stages a reach goes through, then how the others ended.
func funnelChart(title string, f *omegav1.FunnelResponse) BarChart {
	type fig struct {
		label string
		v     int64
		class string
	}
	figs := []fig{{"matched", f.GetMatched(), "stage"}, {"sent", f.GetSent(), "stage"}, {"opened", f.GetOpened(), "stage"},
		{"converted", f.GetConverted(), "good"}, {"suppressed", f.GetSuppressed(), "bad"}}
	for _, k := range sortedKeys(f.GetSuppressedBy()) {
		figs = append(figs, fig{"  by " + k, f.GetSuppressedBy()[k], "bad sub"})
	}
	figs = append(figs, fig{"failed", f.GetFailed(), "bad"}, fig{"cancelled", f.GetCancelled(), "other"}, fig{"running", f.GetRunning(), "other"})
	top := int64(1)
	for _, x := range figs {
		top = max(top, x.v)
	}
	c := BarChart{Title: title, Width: chartW, Height: len(figs)*(barH+barGap) + barGap}
	span := chartW - labelW - 70
	for i, x := range figs {
		w := int(x.v * int64(span) / top)
		if x.v > 0 {
			w = max(w, 2)
		}
		c.Bars = append(c.Bars, Bar{Label: x.label, Value: x.v, Y: barGap + i*(barH+barGap), W: w, TextX: labelW + w + 6,
			Class: x.class, LabelWidth: labelW})
	}
	return c
}

// Spark is a rule's matches per hour over the last day: a column per hour, live and shadow
// stacked.
type Spark struct {
	Width, Height int
	Cols          []SparkCol
	Live, Shadow  int64
	Peak          int64
}

// SparkCol is one hour.
type SparkCol struct {
	X, LiveY, LiveH, ShadowY, ShadowH int
	Title                             string
}

const sparkHours, sparkColW, sparkH = 24, 10, 40

func spark(hours []*omegav1.MatchHour, end time.Time) Spark {
	start := end.UTC().Truncate(time.Hour).Add(-(sparkHours - 1) * time.Hour)
	var live, shadow [sparkHours]int64
	s := Spark{Width: sparkHours * sparkColW, Height: sparkH}
	for _, h := range hours {
		i := int(h.GetHour().AsTime().Sub(start) / time.Hour)
		if i < 0 || i >= sparkHours {
			continue
		}
		live[i] += h.GetLive()
		shadow[i] += h.GetShadow()
	}
	for i := range sparkHours {
		s.Live += live[i]
		s.Shadow += shadow[i]
		s.Peak = max(s.Peak, live[i]+shadow[i])
	}
	for i := range sparkHours {
		col := SparkCol{X: i * sparkColW, Title: fmt.Sprintf("%s UTC: %d live, %d shadow", start.Add(time.Duration(i)*time.Hour).Format("Jan 2 15:04"), live[i], shadow[i])}
		if s.Peak > 0 {
			col.LiveH = int(live[i] * sparkH / s.Peak)
			col.ShadowH = int(shadow[i] * sparkH / s.Peak)
		}
		col.LiveY = sparkH - col.LiveH
		col.ShadowY = col.LiveY - col.ShadowH
		s.Cols = append(s.Cols, col)
	}
	return s
}
