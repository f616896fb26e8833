package journey

import (
	"slices"
	"text/template/parse"
)

// ReachFields are what every reach gives its templates besides the match's attrs.
var ReachFields = []string{"user_id", "item_id", "rule_id", "event_type", "profile"}

// TemplateFields returns, by template ID, the fields its texts (every locale) read from the top
// level that neither its defaults nor the reach (ReachFields) fill: the attributes the match's
// event must carry, or the send fails. Fields read inside with and range blocks (where the dot is
// something else) are not counted.
func (j *Journey) TemplateFields() map[string][]string {
	out := map[string][]string{}
	for id, t := range j.Templates {
		texts := []string{t.Title, t.Body}
		for _, x := range t.Locales {
			texts = append(texts, x.Title, x.Body)
		}
		var fields []string
		for _, text := range texts {
			tp, err := ParseTemplate("t", text)
			if err != nil || tp.Tree == nil {
				continue // Validate reports it
			}
			topFields(tp.Tree.Root, &fields)
		}
		var need []string
		for _, f := range fields {
			if _, def := t.Defaults[f]; def || slices.Contains(ReachFields, f) || slices.Contains(need, f) {
				continue
			}
			need = append(need, f)
		}
		if len(need) > 0 {
			slices.Sort(need)
			out[id] = need
		}
	}
	return out
}

// topFields collects the first identifiers of the field chains read with the template's own dot.
func topFields(n parse.Node, out *[]string) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			topFields(c, out)
		}
	case *parse.ActionNode:
		topFields(n.Pipe, out)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			for _, a := range c.Args {
				topFields(a, out)
			}
		}
	case *parse.FieldNode:
		if len(n.Ident) > 0 {
			*out = append(*out, n.Ident[0])
		}
	case *parse.IfNode:
		topFields(n.Pipe, out)
		topFields(n.List, out)
		topFields(n.ElseList, out)
	case *parse.WithNode: // the dot is the pipeline's value inside
		topFields(n.Pipe, out)
		topFields(n.ElseList, out)
	case *parse.RangeNode:
		topFields(n.Pipe, out)
		topFields(n.ElseList, out)
	}
}
