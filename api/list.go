package api

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"

	"github.com/omegareach/omega/activities/filter"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
)

const maxListBatch = 10000

type listService struct {
	s       *server
	redis   redis.UniversalClient
	keys    map[string]string // list name -> Redis set
	durable *filter.Lists     // PostgreSQL first, Redis the copy (Redis alone when nil)
}

func (h listService) key(name string) (string, error) {
	k, ok := h.keys[name]
	if !ok {
		names := make([]string, 0, len(h.keys))
		for n := range h.keys {
			names = append(names, n)
		}
		slices.Sort(names)
		return "", invalid("list", "unknown list %q (lists: %s)", name, strings.Join(names, ", "))
	}
	return k, nil
}

func (h listService) members(name string, ids []string) (string, []any, error) {
	k, err := h.key(name)
	if err != nil {
		return "", nil, err
	}
	if len(ids) == 0 || len(ids) > maxListBatch {
		return "", nil, invalid("user_ids", "1 to %d users", maxListBatch)
	}
	out := make([]any, len(ids))
	for i, id := range ids {
		if err := checkID(fmt.Sprintf("user_ids[%d]", i), id); err != nil {
			return "", nil, err
		}
		out[i] = id
	}
	return k, out, nil
}

func (h listService) AddMembers(ctx context.Context, req *connect.Request[omegav1.AddMembersRequest]) (*connect.Response[omegav1.AddMembersResponse], error) {
	k, ids, err := h.members(req.Msg.GetList(), req.Msg.GetUserIds())
	if err != nil {
		return nil, err
	}
	var n int64
	if h.durable != nil {
		n, err = h.durable.Add(ctx, req.Msg.GetList(), k, req.Msg.GetUserIds())
	} else {
		n, err = h.redis.SAdd(ctx, k, ids...).Result()
	}
	if err != nil {
		return nil, h.s.internal("add list members", err)
	}
	return connect.NewResponse(&omegav1.AddMembersResponse{Added: n}), nil
}

func (h listService) RemoveMembers(ctx context.Context, req *connect.Request[omegav1.RemoveMembersRequest]) (*connect.Response[omegav1.RemoveMembersResponse], error) {
	k, ids, err := h.members(req.Msg.GetList(), req.Msg.GetUserIds())
	if err != nil {
		return nil, err
	}
	var n int64
	if h.durable != nil {
		n, err = h.durable.Remove(ctx, req.Msg.GetList(), k, req.Msg.GetUserIds())
	} else {
		n, err = h.redis.SRem(ctx, k, ids...).Result()
	}
	if err != nil {
		return nil, h.s.internal("remove list members", err)
	}
	return connect.NewResponse(&omegav1.RemoveMembersResponse{Removed: n}), nil
}

func (h listService) ListMembers(ctx context.Context, req *connect.Request[omegav1.ListMembersRequest]) (*connect.Response[omegav1.ListMembersResponse], error) {
	k, err := h.key(req.Msg.GetList())
	if err != nil {
		return nil, err
	}
	size := int64(req.Msg.GetPageSize())
	if size < 0 || size > maxListBatch {
		return nil, invalid("page_size", "between 0 and %d", maxListBatch)
	}
	if size == 0 {
		size = 1000
	}
	var cursor uint64
	if t := req.Msg.GetPageToken(); t != "" {
		c, err := strconv.ParseUint(t, 10, 64)
		if err != nil || c == 0 {
			return nil, invalid("page_token", "not a token this service issued")
		}
		cursor = c
	}
	if err := h.ensure(ctx, req.Msg.GetList(), k); err != nil {
		return nil, err
	}
	ids, next, err := h.redis.SScan(ctx, k, cursor, "", size).Result()
	if err != nil {
		return nil, h.s.internal("list members", err)
	}
	ids = slices.DeleteFunc(ids, func(id string) bool { return id == filter.LoadedMember })
	out := &omegav1.ListMembersResponse{UserIds: ids}
	if next != 0 {
		out.NextPageToken = strconv.FormatUint(next, 10)
	}
	return connect.NewResponse(out), nil
}

func (h listService) CheckMember(ctx context.Context, req *connect.Request[omegav1.CheckMemberRequest]) (*connect.Response[omegav1.CheckMemberResponse], error) {
	k, err := h.key(req.Msg.GetList())
	if err != nil {
		return nil, err
	}
	if err := checkID("user_id", req.Msg.GetUserId()); err != nil {
		return nil, err
	}
	if err := h.ensure(ctx, req.Msg.GetList(), k); err != nil {
		return nil, err
	}
	in, err := h.redis.SIsMember(ctx, k, req.Msg.GetUserId()).Result()
	if err != nil {
		return nil, h.s.internal("check list member", err)
	}
	return connect.NewResponse(&omegav1.CheckMemberResponse{Member: in}), nil
}

// ensure reloads a list's Redis copy from PostgreSQL when Redis lost it.
func (h listService) ensure(ctx context.Context, name, key string) error {
	if h.durable == nil {
		return nil
	}
	if err := h.durable.Ensure(ctx, name, key); err != nil {
		return h.s.internal("load list", err)
	}
	return nil
}
