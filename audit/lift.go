package audit

import (
	"math"
	"sort"
)

// Confidence is the level of every interval and test here (95%, two-sided).
const Confidence = 0.95

// z95 is the standard normal quantile of a two-sided 95% interval.
const z95 = 1.959963984540054

// PathFunnel is a split path's funnel (or the control group's): the reaches that took the path,
// how many sent, were opened and converted, and the conversion rate with its Wilson interval.
// Against the control (Holdout), Lift is rate/control rate - 1, Diff* the difference of the rates
// with its Newcombe (hybrid Wilson) interval, and P the two-sided p-value of the pooled
// two-proportion z-test.
type PathFunnel struct {
	Path                          string
	Reached, Sent, Opened         int64
	Converted                     int64
	Rate, RateLow, RateHigh       float64
	Lift, Diff, DiffLow, DiffHigh float64
	P                             float64
	Compared                      bool // a control group exists and this path is not it
	Wins                          bool
}

// Holdout is the path of a split's holdout group (journey.Holdout), the control its paths are
// compared with.
const Holdout = "holdout"

// ControlGroup is the path of the reaches the global control group held out (journey.ControlGroup).
const ControlGroup = "control"

// Lift compares a funnel's paths (Funnel.BySplitPath) with their control, in path order: each
// path's conversion rate with its Wilson interval, its lift over the control, and the winner: the
// path whose rate is the highest and significantly above the control's and every other path's
// (P < 0.05 against each). The control is a split's holdout when there is one, else the global
// control group; a journey without a split is then one path, "reached": its reaches not held out.
func Lift(f Funnel) []PathFunnel {
	if len(f.BySplitPath) == 0 {
		return nil
	}
	out := make([]PathFunnel, 0, len(f.BySplitPath)+1)
	for path, pf := range f.BySplitPath {
		out = append(out, PathFunnel{Path: path, Reached: pf.Matched, Sent: pf.Sent, Opened: pf.Opened, Converted: pf.Converted})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	control := Holdout
	if _, ok := f.BySplitPath[Holdout]; !ok {
		control = ControlGroup
	}
	if c, ok := f.BySplitPath[ControlGroup]; ok && len(f.BySplitPath) == 1 {
		out = append([]PathFunnel{{Path: "reached", Reached: f.Matched - c.Matched, Sent: f.Sent - c.Sent,
			Opened: f.Opened - c.Opened, Converted: f.Converted - c.Converted}}, out...)
	}
	return compare(out, control)
}

// CompareWithControl fills the rates, the comparisons with the control (Holdout) and the winner
// of paths whose counts are set.
func CompareWithControl(paths []PathFunnel) []PathFunnel { return compare(paths, Holdout) }

func compare(paths []PathFunnel, controlPath string) []PathFunnel {
	var control *PathFunnel
	for i := range paths {
		p := &paths[i]
		p.Rate, p.RateLow, p.RateHigh = wilson(p.Converted, p.Reached)
		if p.Path == controlPath {
			control = p
		}
	}
	if control == nil || control.Reached == 0 {
		return paths
	}
	for i := range paths {
		p := &paths[i]
		if p == control || p.Reached == 0 || p.Path == Holdout || p.Path == ControlGroup {
			continue // the other control (a split's holdout beside the global group) is not a path
		}
		p.Compared = true
		p.Diff, p.DiffLow, p.DiffHigh = newcombe(p.Converted, p.Reached, control.Converted, control.Reached)
		p.P = twoProportionP(p.Converted, p.Reached, control.Converted, control.Reached)
		if control.Rate > 0 {
			p.Lift = p.Rate/control.Rate - 1
		} else {
			p.Lift = math.Inf(1)
			if p.Rate == 0 {
				p.Lift = 0
			}
		}
	}
	// The winner beats the control and every other path.
	order := make([]int, 0, len(paths))
	for i := range paths {
		if paths[i].Compared {
			order = append(order, i)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return paths[order[a]].Rate > paths[order[b]].Rate })
	if len(order) > 0 {
		best := &paths[order[0]]
		wins := best.P < 1-Confidence && best.Diff > 0
		for _, i := range order[1:] {
			o := paths[i]
			if twoProportionP(best.Converted, best.Reached, o.Converted, o.Reached) >= 1-Confidence || best.Rate <= o.Rate {
				wins = false
			}
		}
		best.Wins = wins
	}
	return paths
}

// wilson is the rate x/n with its Wilson score interval.
func wilson(x, n int64) (rate, low, high float64) {
	if n == 0 {
		return 0, 0, 0
	}
	p, fn, z := float64(x)/float64(n), float64(n), z95
	den := 1 + z*z/fn
	mid := (p + z*z/(2*fn)) / den
	half := z * math.Sqrt(p*(1-p)/fn+z*z/(4*fn*fn)) / den
	return p, math.Max(0, mid-half), math.Min(1, mid+half)
}

// newcombe is the difference of two rates, x1/n1 - x2/n2, with Newcombe's hybrid score interval
// (method 10 of Newcombe 1998), built from each rate's Wilson interval.
func newcombe(x1, n1, x2, n2 int64) (diff, low, high float64) {
	p1, l1, u1 := wilson(x1, n1)
	p2, l2, u2 := wilson(x2, n2)
	diff = p1 - p2
	low = diff - math.Sqrt((p1-l1)*(p1-l1)+(u2-p2)*(u2-p2))
	high = diff + math.Sqrt((u1-p1)*(u1-p1)+(p2-l2)*(p2-l2))
	return diff, low, high
}

// twoProportionP is the two-sided p-value of the pooled two-proportion z-test of x1/n1 = x2/n2.
func twoProportionP(x1, n1, x2, n2 int64) float64 {
	if n1 == 0 || n2 == 0 {
		return 1
	}
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	pool := float64(x1+x2) / float64(n1+n2)
	se := math.Sqrt(pool * (1 - pool) * (1/float64(n1) + 1/float64(n2)))
	if se == 0 {
		return 1
	}
	z := (p1 - p2) / se
	return math.Erfc(math.Abs(z) / math.Sqrt2)
}
