// Package audience selects users by what their profiles say: an audience is a CEL condition over
// the profile (its time zone, locale, attributes and consent), and a broadcast starts a journey
// for every user of an audience once (workflows.BroadcastWorkflow), a page of profiles at a time.
package audience

import (
	"context"
	"fmt"
	"regexp"

	"cel.dev/cel-go/cel"

	"github.com/omegareach/omega/profile"
)

// Audience is who a broadcast reaches: every profile for which When holds (every profile when
// When is empty) whose user is on each of Lists (the managed lists: whitelist, blacklist).
type Audience struct {
	ID    string   `json:"id"`
	When  string   `json:"when,omitempty"`
	Lists []string `json:"lists,omitempty"`
}

// ListChecker tells which users are on a list (store.Lists).
type ListChecker interface {
	HasMany(ctx context.Context, list string, users []string) ([]bool, error)
}

// OnLists returns those of users who are on every list of the audience (all of them when it
// names none), in their order: one round trip per list.
func (a Audience) OnLists(ctx context.Context, lists ListChecker, users []string) ([]string, error) {
	for _, l := range a.Lists {
		if len(users) == 0 {
			break
		}
		if lists == nil {
			return nil, fmt.Errorf("audience %s names list %s, and no list store is configured", a.ID, l)
		}
		on, err := lists.HasMany(ctx, l, users)
		if err != nil {
			return nil, err
		}
		kept := make([]string, 0, len(users))
		for i, u := range users {
			if on[i] {
				kept = append(kept, u)
			}
		}
		users = kept
	}
	return users, nil
}

// Env is the CEL environment of audience conditions: `profile` with user_id, time_zone, locale,
// attrs and consent (channel or channel:category -> granted).
var Env = func() *cel.Env {
	env, err := cel.NewEnv(cel.Variable("profile", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		panic(err)
	}
	return env
}()

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// FieldError names the field of an audience that is wrong.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Compile checks the audience and returns its condition, ready to test profiles.
func (a Audience) Compile() (*Condition, error) {
	if !idPattern.MatchString(a.ID) {
		return nil, &FieldError{"id", fmt.Sprintf("%q: want 1 to 63 of a-z, 0-9, _ and - (starting with a letter or digit)", a.ID)}
	}
	if a.When == "" {
		return &Condition{}, nil
	}
	ast, iss := Env.Compile(a.When)
	if iss.Err() != nil {
		return nil, &FieldError{"when", iss.Err().Error()}
	}
	if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
		return nil, &FieldError{"when", fmt.Sprintf("must be boolean, is %s", ast.OutputType())}
	}
	prg, err := Env.Program(ast)
	if err != nil {
		return nil, &FieldError{"when", err.Error()}
	}
	return &Condition{prg: prg}, nil
}

// Condition tests profiles against an audience.
type Condition struct{ prg cel.Program }

// Holds reports whether p is in the audience. A condition that fails on a profile (an attribute
// it lacks) does not hold: that user is not in the audience.
func (c *Condition) Holds(p profile.Profile) bool {
	if c.prg == nil {
		return true
	}
	consent := map[string]any{}
	for k, v := range p.Consent {
		consent[k] = v
	}
	vars := p.Vars()
	vars["user_id"] = p.UserID
	vars["consent"] = consent
	out, _, err := c.prg.Eval(map[string]any{"profile": vars})
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}
