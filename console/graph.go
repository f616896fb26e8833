package console

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/omegareach/omega/journey"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

// The journey graph, laid out here and drawn as SVG by the template: steps in layers from the
// first step down (a step's layer is the first at which a path from the start reaches it), the
// end below them all, goals in a column of their own on the right (no step leads to a goal: a goal
// event converts the run wherever it is). Journeys are a handful of steps, so a plain layering
// reads well; edges going back up (a loop) bend around the right side.

const (
	nodeW, nodeH = 210, 92
	gapX, gapY   = 36, 64
	margin       = 16
)

// Graph is a laid-out journey version.
type Graph struct {
	Width, Height int
	Nodes         []Node
	Edges         []Edge
}

// Node is a step (or the end) with what the trail says happened there.
type Node struct {
	ID, Kind string
	X, Y     int
	W, H     int
	// Lines are the counts shown in the box, in words ("entered 12").
	Lines []string
	// Dropped marks a step where reaches were dropped (drawn in a warning colour).
	Dropped bool
	End     bool
	Goal    bool
}

// Edge is a transition with how many reaches took it, where the trail says (split paths, branch
// cases, wait_for responses and time-outs).
type Edge struct {
	Path       string // SVG path data
	Label      string
	LabelX     int
	LabelY     int
	Back       bool
	HasLabel   bool
	FromID, To string
}

// stepFigures are one step's counts, keyed by journey step ID, from JourneySteps.
type stepFigures map[string]*omegav1.StepCount

func figuresOf(steps []*omegav1.StepCount) stepFigures {
	out := stepFigures{}
	for _, s := range steps {
		out[s.GetStep()] = s
	}
	return out
}

// Layout lays j out with its figures.
func Layout(j *journey.Journey, figs stepFigures) Graph {
	layer := map[string]int{}
	var order []string
	first := j.First()
	if first != journey.End {
		layer[first] = 0
		queue := []string{first}
		for len(queue) > 0 {
			id := queue[0]
			queue = queue[1:]
			order = append(order, id)
			s, ok := j.Step(id)
			if !ok {
				continue
			}
			for _, t := range j.Targets(s) {
				if _, seen := layer[t]; seen || t == journey.End {
					continue
				}
				if _, ok := j.Step(t); !ok {
					continue
				}
				layer[t] = layer[id] + 1
				queue = append(queue, t)
			}
		}
	}
	deepest := -1
	for _, l := range layer {
		deepest = max(deepest, l)
	}
	// Steps no path reaches still show, below the rest.
	for _, s := range j.Steps {
		if _, ok := layer[s.ID]; !ok && s.Goal == nil {
			deepest++
			layer[s.ID] = deepest
			order = append(order, s.ID)
		}
	}
	layer[journey.End] = deepest + 1
	order = append(order, journey.End)

	rows := map[int][]string{}
	for _, id := range order {
		rows[layer[id]] = append(rows[layer[id]], id)
	}
	// Within a layer, steps keep the order the journey lists them in.
	index := map[string]int{journey.End: len(j.Steps)}
	for i, s := range j.Steps {
		index[s.ID] = i
	}
	widest := 1
	for _, r := range rows {
		sort.SliceStable(r, func(a, b int) bool { return index[r[a]] < index[r[b]] })
		widest = max(widest, len(r))
	}
	var goals []journey.Step
	for _, s := range j.Steps {
		if s.Goal != nil {
			goals = append(goals, s)
		}
	}
	flowW := widest*(nodeW+gapX) - gapX
	g := Graph{Width: 2*margin + flowW + 60}
	if len(goals) > 0 {
		g.Width += gapX + nodeW
	}
	pos := map[string]*Node{}
	for l := 0; l <= deepest+1; l++ {
		r := rows[l]
		offset := margin + (flowW-(len(r)*(nodeW+gapX)-gapX))/2
		for i, id := range r {
			n := Node{ID: id, X: offset + i*(nodeW+gapX), Y: margin + l*(nodeH+gapY), W: nodeW, H: nodeH}
			if id == journey.End {
				n.End, n.Kind, n.H = true, "end", 40
			} else {
				s, _ := j.Step(id)
				n.Kind = s.Kind()
				n.Lines, n.Dropped = stepLines(s, figs[id])
			}
			g.Nodes = append(g.Nodes, n)
		}
	}
	for i := range g.Nodes {
		pos[g.Nodes[i].ID] = &g.Nodes[i]
	}
	for i, s := range goals {
		n := Node{ID: s.ID, Kind: "goal", Goal: true, X: margin + flowW + 60 + gapX, Y: margin + i*(nodeH+gapY), W: nodeW, H: nodeH}
		n.Lines = goalLines(s.Goal, figs["goal"])
		g.Nodes = append(g.Nodes, n)
	}
	g.Height = margin
	for _, n := range g.Nodes {
		g.Height = max(g.Height, n.Y+n.H+margin)
	}
	for _, s := range j.Steps {
		from, ok := pos[s.ID]
		if !ok || s.Goal != nil {
			continue
		}
		out := edgesOf(j, &s, figs[s.ID])
		for k, e := range out {
			to := pos[e.To]
			if to == nil {
				continue
			}
			g.Edges = append(g.Edges, route(from, to, e, k, len(out), g.Width))
		}
	}
	return g
}

// edgeOut is one way out of a step, before routing.
type edgeOut struct {
	To, Label string
	Count     int64
	Counted   bool
}

func edgesOf(j *journey.Journey, s *journey.Step, f *omegav1.StepCount) []edgeOut {
	r := func(t string) string { return j.Resolve(s.ID, t) }
	o := f.GetOutcomes()
	switch {
	case s.Send != nil:
		return []edgeOut{{To: r(s.Next), Label: "sent", Count: f.GetSent(), Counted: true}}
	case s.Wait != nil:
		return []edgeOut{{To: r(s.Next)}}
	case s.WaitFor != nil:
		var responded int64
		for k, n := range o {
			if k != "timeout" {
				responded += n
			}
		}
		return []edgeOut{
			{To: r(s.WaitFor.Then), Label: strings.Join(s.WaitFor.Events, "/"), Count: responded, Counted: true},
			{To: r(s.WaitFor.OnTimeout), Label: "timeout " + journey.Human(s.WaitFor.Timeout.D()), Count: o["timeout"], Counted: true},
		}
	case s.Branch != nil:
		var out []edgeOut
		for i, c := range s.Branch.Cases {
			out = append(out, edgeOut{To: r(c.Next), Label: clip(c.When, 28), Count: o[fmt.Sprintf("case %d", i)], Counted: true})
		}
		return append(out, edgeOut{To: r(s.Branch.Else), Label: "else", Count: o["else"], Counted: true})
	case s.Split != nil:
		var out []edgeOut
		for _, p := range s.Split.Paths {
			out = append(out, edgeOut{To: r(p.Next), Label: p.Name, Count: o[p.Name], Counted: true})
		}
		if s.Split.Holdout > 0 {
			out = append(out, edgeOut{To: journey.End, Label: journey.Holdout, Count: o[journey.Holdout], Counted: true})
		}
		return out
	}
	return nil
}

// route draws an edge: straight down to a lower layer, around the right side back up.
func route(from, to *Node, e edgeOut, k, n, width int) Edge {
	out := Edge{FromID: from.ID, To: to.ID, Label: e.Label, HasLabel: e.Label != ""}
	if e.Counted {
		out.Label = fmt.Sprintf("%s: %d", e.Label, e.Count)
	}
	// Several ways out of one step leave from points spread along its bottom.
	x1 := from.X + from.W*(k+1)/(n+1)
	y1 := from.Y + from.H
	x2, y2 := to.X+to.W/2, to.Y
	if to.Y > from.Y {
		midY := (y1 + y2) / 2
		out.Path = fmt.Sprintf("M%d,%d C%d,%d %d,%d %d,%d", x1, y1, x1, midY, x2, midY, x2, y2-2)
		out.LabelX, out.LabelY = (x1+x2)/2+4, midY-4+12*(k%2)
		return out
	}
	// A loop: out of the right side, up the margin, into the target's right side.
	out.Back = true
	side := min(width-8, max(from.X, to.X)+nodeW+24+8*k)
	ya, yb := from.Y+from.H/2, to.Y+to.H/2
	out.Path = fmt.Sprintf("M%d,%d C%d,%d %d,%d %d,%d", from.X+from.W, ya, side, ya, side, yb, to.X+to.W+2, yb)
	out.LabelX, out.LabelY = side-60, (ya+yb)/2
	return out
}

// stepLines are a step's counts in words, and whether any reach was dropped there.
func stepLines(s *journey.Step, f *omegav1.StepCount) ([]string, bool) {
	lines := []string{fmt.Sprintf("entered %d", f.GetEntered())}
	switch {
	case s.Send != nil:
		lines = append(lines, fmt.Sprintf("sent %d · waited %d", f.GetSent(), f.GetWaited()))
		drop := fmt.Sprintf("dropped %d", f.GetDropped())
		if by := droppedBy(f.GetDroppedBy()); by != "" {
			drop += " (" + by + ")"
		}
		lines = append(lines, clip(drop, 34))
		if f.GetFailed() > 0 {
			lines[1] += fmt.Sprintf(" · failed %d", f.GetFailed())
		}
	case s.Wait != nil, s.WaitFor != nil:
		lines = append(lines, fmt.Sprintf("waited %d", f.GetWaited()))
	}
	lines = append(lines, fmt.Sprintf("converted %d", f.GetConverted()))
	return lines, f.GetDropped() > 0
}

func goalLines(g *journey.Goal, f *omegav1.StepCount) []string {
	var n int64
	for _, ev := range g.Events {
		n += f.GetOutcomes()[ev]
	}
	return []string{strings.Join(g.Events, ", "), fmt.Sprintf("converted %d", n)}
}

// droppedBy names the filters that dropped reaches, the most first: "fatigue 3, consent 1".
func droppedBy(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return int(m[b] - m[a])
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func clip(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
