package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/omegareach/omega/profile"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

// ProfileStore keeps user profiles (profile.Cached: writes go through its cache).
type ProfileStore interface {
	// Stored returns the stored profiles of userIDs; users without one are absent.
	Stored(ctx context.Context, userIDs []string) (map[string]profile.Profile, error)
	UpsertMany(ctx context.Context, ps []profile.Profile) error
}

// MaxImportProfiles is the most profiles one ImportProfiles call takes.
const MaxImportProfiles = 1000

type profileService struct {
	srv   *server
	store ProfileStore
}

// fromProtoProfile converts through JSON: the wire names are the store's JSON names.
func fromProtoProfile(field string, pp *omegav1.Profile) (profile.Profile, error) {
	if pp == nil {
		return profile.Profile{}, invalid(field, "required")
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(pp)
	if err != nil {
		return profile.Profile{}, invalid(field, "%v", err)
	}
	var p profile.Profile
	if err := json.Unmarshal(b, &p); err != nil {
		return profile.Profile{}, invalid(field, "%v", err)
	}
	if err := checkID(field+".user_id", p.UserID); err != nil {
		return profile.Profile{}, err
	}
	if err := p.Validate(); err != nil {
		// Validate's errors start with the field's name.
		name, reason, _ := strings.Cut(err.Error(), ": ")
		return profile.Profile{}, invalid(field+"."+name, "%s", reason)
	}
	return p, nil
}

func toProtoProfile(p profile.Profile) (*omegav1.Profile, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	var pp omegav1.Profile
	if err := protojson.Unmarshal(b, &pp); err != nil {
		return nil, err
	}
	return &pp, nil
}

func (h profileService) UpsertProfile(ctx context.Context, req *connect.Request[omegav1.UpsertProfileRequest]) (*connect.Response[omegav1.UpsertProfileResponse], error) {
	p, err := fromProtoProfile("profile", req.Msg.GetProfile())
	if err != nil {
		return nil, err
	}
	if err := h.store.UpsertMany(ctx, []profile.Profile{p}); err != nil {
		return nil, h.srv.internal("store profile", err)
	}
	return connect.NewResponse(&omegav1.UpsertProfileResponse{}), nil
}

func (h profileService) GetProfile(ctx context.Context, req *connect.Request[omegav1.GetProfileRequest]) (*connect.Response[omegav1.GetProfileResponse], error) {
	id := req.Msg.GetUserId()
	if err := checkID("user_id", id); err != nil {
		return nil, err
	}
	ps, err := h.store.Stored(ctx, []string{id})
	if err != nil {
		return nil, h.srv.internal("read profile", err)
	}
	p, ok := ps[id]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("user_id: no profile for %q", id))
	}
	pp, err := toProtoProfile(p)
	if err != nil {
		return nil, h.srv.internal("encode profile", err)
	}
	return connect.NewResponse(&omegav1.GetProfileResponse{Profile: pp}), nil
}

func (h profileService) ImportProfiles(ctx context.Context, req *connect.Request[omegav1.ImportProfilesRequest]) (*connect.Response[omegav1.ImportProfilesResponse], error) {
	in := req.Msg.GetProfiles()
	switch {
	case len(in) == 0:
		return nil, invalid("profiles", "at least one profile is required")
	case len(in) > MaxImportProfiles:
		return nil, invalid("profiles", "at most %d profiles per call, got %d", MaxImportProfiles, len(in))
	}
	out := &omegav1.ImportProfilesResponse{}
	ps := make([]profile.Profile, 0, len(in))
	seen := map[string]int{}
	for i, pp := range in {
		p, err := fromProtoProfile(fmt.Sprintf("profiles[%d]", i), pp)
		if err == nil {
			if j, dup := seen[p.UserID]; dup {
				err = fmt.Errorf("profiles[%d].user_id: %q also at profiles[%d]", i, p.UserID, j)
			}
		}
		if err != nil {
			var ce *connect.Error
			if errors.As(err, &ce) {
				out.Errors = append(out.Errors, ce.Message())
			} else {
				out.Errors = append(out.Errors, err.Error())
			}
			continue
		}
		seen[p.UserID] = i
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		return nil, invalid("profiles", "no valid profile: %s", strings.Join(out.Errors, "; "))
	}
	if err := h.store.UpsertMany(ctx, ps); err != nil {
		return nil, h.srv.internal("store profiles", err)
	}
	out.Stored = int32(len(ps))
	return connect.NewResponse(out), nil
}
