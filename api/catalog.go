package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/internal/versioned"
	"github.com/omegareach/omega/journey"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

// SpecStore keeps rules or journeys as versions (cep.RuleStore, journey.Store).
type SpecStore[T any] interface {
	Validate(T) error
	Apply(ctx context.Context, v T) (versioned.Applied, error)
	Draft(ctx context.Context, v T) (versioned.Applied, error)
	Activate(ctx context.Context, id string, version int) error
	Get(ctx context.Context, id string) (T, error)
	Version(ctx context.Context, id string, version int) (T, error)
	List(ctx context.Context) ([]T, error)
	Disable(ctx context.Context, id string) error
}

// specs serves one kind of data through its store: decoding, errors naming the field, and the
// wire shapes.
type specs[T any] struct {
	kind  string // "rule" or "journey": the request field and the error prefix
	store SpecStore[T]
	parse func([]byte) (T, error)
	meta  func(T) (id string, version int, disabled bool)
	field func(error) (string, bool) // the offending field of a validation error
	srv   *server
	// idField is the request field naming one ("id" when empty).
	idField string
}

func (c *specs[T]) idName() string {
	if c.idField == "" {
		return "id"
	}
	return c.idField
}

func (c *specs[T]) decode(s *structpb.Struct) (T, error) {
	var zero T
	if s == nil {
		return zero, invalid(c.kind, "required: the %s as in its file, as a JSON object", c.kind)
	}
	b, err := protojson.Marshal(s)
	if err != nil {
		return zero, invalid(c.kind, "%v", err)
	}
	v, err := c.parse(b)
	if err != nil {
		return zero, c.mapErr("parse", err)
	}
	return v, nil
}

// mapErr names the field of a validation error, and maps not found and backend failures.
func (c *specs[T]) mapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if field, ok := c.field(err); ok {
		return invalid(field, "%v", err)
	}
	if errors.Is(err, versioned.ErrNotFound) || errors.Is(err, journey.ErrNotFound) {
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("%s: not found", c.kind))
	}
	return c.srv.internal(what+" "+c.kind, err)
}

func (c *specs[T]) stored(v T) (*omegav1.Stored, error) {
	id, version, disabled := c.meta(v)
	b, err := json.Marshal(v)
	if err != nil {
		return nil, c.srv.internal("encode "+c.kind, err)
	}
	var s structpb.Struct
	if err := protojson.Unmarshal(b, &s); err != nil {
		return nil, c.srv.internal("encode "+c.kind, err)
	}
	return &omegav1.Stored{Id: id, Version: int32(version), Disabled: disabled, Spec: &s}, nil
}

func (c *specs[T]) validate(s *structpb.Struct) error {
	v, err := c.decode(s)
	if err != nil {
		return err
	}
	if err := c.store.Validate(v); err != nil {
		return c.mapErr("validate", err)
	}
	return nil
}

func (c *specs[T]) apply(ctx context.Context, s *structpb.Struct, draft bool) (*omegav1.Applied, error) {
	v, err := c.decode(s)
	if err != nil {
		return nil, err
	}
	apply := c.store.Apply
	if draft {
		apply = c.store.Draft
	}
	a, err := apply(ctx, v)
	if err != nil {
		return nil, c.mapErr("apply", err)
	}
	return &omegav1.Applied{Id: a.ID, Version: int32(a.Version), Status: a.Status}, nil
}

// load returns the active version of id, or the version asked for.
func (c *specs[T]) load(ctx context.Context, idField, id string, version int32) (T, error) {
	var zero T
	switch {
	case id == "":
		return zero, invalid(idField, "required")
	case version < 0:
		return zero, invalid("version", "must not be negative")
	}
	var v T
	var err error
	if version == 0 {
		v, err = c.store.Get(ctx, id)
	} else {
		v, err = c.store.Version(ctx, id, int(version))
	}
	if err != nil {
		return zero, c.mapErr("get", err)
	}
	return v, nil
}

func (c *specs[T]) get(ctx context.Context, id string, version int32) (*omegav1.Stored, error) {
	v, err := c.load(ctx, c.idName(), id, version)
	if err != nil {
		return nil, err
	}
	return c.stored(v)
}

// activate makes a stored version active; one that no longer validates is FailedPrecondition.
func (c *specs[T]) activate(ctx context.Context, id string, version int32) error {
	switch {
	case id == "":
		return invalid(c.idName(), "required")
	case version <= 0:
		return invalid("version", "required: the stored version to activate")
	}
	err := c.store.Activate(ctx, id, int(version))
	if field, ok := c.field(err); ok {
		return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("version %d no longer validates: %s: %w", version, field, err))
	}
	if err != nil {
		return c.mapErr("activate", err)
	}
	return nil
}

func (c *specs[T]) list(ctx context.Context) ([]*omegav1.Stored, error) {
	vs, err := c.store.List(ctx)
	if err != nil {
		return nil, c.mapErr("list", err)
	}
	out := make([]*omegav1.Stored, 0, len(vs))
	for _, v := range vs {
		s, err := c.stored(v)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (c *specs[T]) disable(ctx context.Context, id string) error {
	if id == "" {
		return invalid(c.idName(), "required")
	}
	if err := c.store.Disable(ctx, id); err != nil {
		return c.mapErr("disable", err)
	}
	return nil
}

func ruleSpecs(s *server, st SpecStore[cep.Rule]) *specs[cep.Rule] {
	return &specs[cep.Rule]{kind: "rule", store: st, parse: cep.ParseRule, srv: s,
		meta: func(r cep.Rule) (string, int, bool) { return r.ID, r.Version, r.Disabled },
		field: func(err error) (string, bool) {
			var re *cep.RuleError
			if errors.As(err, &re) {
				return "rule." + re.Field, true
			}
			return "", false
		}}
}

func journeySpecs(s *server, st SpecStore[journey.Journey]) *specs[journey.Journey] {
	return &specs[journey.Journey]{kind: "journey", store: st, parse: journey.Parse, srv: s,
		meta: func(j journey.Journey) (string, int, bool) { return j.ID, j.Version, j.Disabled },
		field: func(err error) (string, bool) {
			var je *journey.Error
			if !errors.As(err, &je) {
				return "", false
			}
			if je.Step != "" {
				return "journey.steps[" + je.Step + "]." + je.Field, true
			}
			return "journey." + je.Field, true
		}}
}
