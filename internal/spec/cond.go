package spec

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
)

// Fields are what a condition's variables hold: per variable, its fields and their kinds
// (string, number, bool, map, any). Variables not named here are not checked.
type Fields map[string]map[string]string

// CheckCondition refuses a condition that compiles but cannot hold as its author meant: one that
// reads a field its variable does not have (match.amount, where the match's attributes are
// match.attrs.amount: it fails at run time, and a failing condition does not hold), or one that is
// a single field of a kind other than bool (event.user_id, or an attribute attrKind declares a
// number: such a value is never true), or one that compares a field of a known kind with a
// literal of another (event.attrs.amount > "x": a number and a string never compare). attrKind
// (nil: none known) gives the declared kind of an attribute of one of vars' maps, "" when
// undeclared.
func CheckCondition(a *cel.Ast, vars Fields, attrKind func(path, attr string) string) error {
	root := a.NativeRep().Expr()
	var err error
	celast.PreOrderVisit(root, celast.NewExprVisitor(func(e celast.Expr) {
		if err != nil || e.Kind() != celast.SelectKind {
			return
		}
		s := e.AsSelect()
		if s.Operand().Kind() != celast.IdentKind {
			return
		}
		v := s.Operand().AsIdent()
		fields, ok := vars[v]
		if _, has := fields[s.FieldName()]; ok && !has {
			err = fmt.Errorf("%s has no field %s (it has %s)", v, s.FieldName(), strings.Join(slices.Sorted(maps.Keys(fields)), ", "))
			if _, attrs := fields["attrs"]; attrs {
				err = fmt.Errorf("%w: an attribute is %s.attrs.%s", err, v, s.FieldName())
			}
		}
	}))
	if err == nil {
		err = checkComparisons(root, vars, attrKind)
	}
	if err != nil || a.OutputType() != cel.DynType {
		return err
	}
	path := SelectPath(root)
	kind := pathKind(path, vars, attrKind)
	if kind == "" || kind == "bool" || kind == "any" {
		return nil
	}
	return fmt.Errorf("%s is a %s, never true: compare it (%s == ...)", strings.Join(path, "."), kind, strings.Join(path, "."))
}

// SelectPath is the names of a condition that is one field selection (event.attrs.vip), nil for
// any other.
func SelectPath(e celast.Expr) []string {
	var path []string
	for {
		switch e.Kind() {
		case celast.SelectKind:
			s := e.AsSelect()
			if s.IsTestOnly() {
				return nil
			}
			path = append(path, s.FieldName())
			e = s.Operand()
		case celast.IdentKind:
			path = append(path, e.AsIdent())
			slices.Reverse(path)
			return path
		default:
			return nil
		}
	}
}

// pathKind is the kind of the field a selection path names ("" when unknown).
func pathKind(path []string, vars Fields, attrKind func(path, attr string) string) string {
	switch len(path) {
	case 1:
		if _, ok := vars[path[0]]; ok {
			return "map"
		}
	case 2:
		return vars[path[0]][path[1]]
	case 3:
		if vars[path[0]][path[1]] == "map" && attrKind != nil {
			return attrKind(path[0]+"."+path[1], path[2])
		}
	}
	return ""
}

// comparisons are CEL's comparison operators, as people write them.
var comparisons = map[string]string{"_==_": "==", "_!=_": "!=", "_<_": "<", "_<=_": "<=", "_>_": ">", "_>=_": ">="}

// checkComparisons refuses a comparison of a field of a known kind (string, number, bool) with a
// literal of another kind: it never holds (!= always does), at run time, silently.
func checkComparisons(root celast.Expr, vars Fields, attrKind func(path, attr string) string) error {
	var err error
	celast.PreOrderVisit(root, celast.NewExprVisitor(func(e celast.Expr) {
		if err != nil || e.Kind() != celast.CallKind {
			return
		}
		c := e.AsCall()
		op, ok := comparisons[c.FunctionName()]
		if !ok || len(c.Args()) != 2 {
			return
		}
		for i, arg := range c.Args() {
			lit := c.Args()[1-i]
			if lit.Kind() != celast.LiteralKind {
				continue
			}
			path := SelectPath(arg)
			kind := pathKind(path, vars, attrKind)
			litKind := literalKind(lit)
			if kind != "string" && kind != "number" && kind != "bool" || litKind == "" || litKind == kind {
				continue
			}
			shown := fmt.Sprint(lit.AsLiteral().Value())
			if litKind == "string" {
				shown = strconv.Quote(shown)
			}
			err = fmt.Errorf("%s is a %s, compared (%s) with a %s (%s): the comparison never holds as meant; compare it with a %s",
				strings.Join(path, "."), kind, op, litKind, shown, kind)
			return
		}
	}))
	return err
}

// literalKind is the kind of a literal, as Fields name kinds ("" for null and bytes).
func literalKind(e celast.Expr) string {
	switch e.AsLiteral().Type().TypeName() {
	case "string":
		return "string"
	case "int", "uint", "double":
		return "number"
	case "bool":
		return "bool"
	}
	return ""
}
