package api

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/store"
)

const maxListBatch = 10000

type listService struct {
	s     *server
	lists store.Lists
}

func (h listService) known(name string) error {
	names := h.lists.Names()
	if !slices.Contains(names, name) {
		return invalid("list", "unknown list %q (lists: %s)", name, strings.Join(names, ", "))
	}
	return nil
}

func (h listService) members(name string, ids []string) error {
	if err := h.known(name); err != nil {
		return err
	}
	if len(ids) == 0 || len(ids) > maxListBatch {
		return invalid("user_ids", "1 to %d users", maxListBatch)
	}
	for i, id := range ids {
		if err := checkID(fmt.Sprintf("user_ids[%d]", i), id); err != nil {
			return err
		}
	}
	return nil
}

func (h listService) AddMembers(ctx context.Context, req *connect.Request[omegav1.AddMembersRequest]) (*connect.Response[omegav1.AddMembersResponse], error) {
	if err := h.members(req.Msg.GetList(), req.Msg.GetUserIds()); err != nil {
		return nil, err
	}
	n, err := h.lists.Add(ctx, req.Msg.GetList(), req.Msg.GetUserIds())
	if err != nil {
		return nil, h.s.internal("add list members", err)
	}
	return connect.NewResponse(&omegav1.AddMembersResponse{Added: n}), nil
}

func (h listService) RemoveMembers(ctx context.Context, req *connect.Request[omegav1.RemoveMembersRequest]) (*connect.Response[omegav1.RemoveMembersResponse], error) {
	if err := h.members(req.Msg.GetList(), req.Msg.GetUserIds()); err != nil {
		return nil, err
	}
	n, err := h.lists.Remove(ctx, req.Msg.GetList(), req.Msg.GetUserIds())
	if err != nil {
		return nil, h.s.internal("remove list members", err)
	}
	return connect.NewResponse(&omegav1.RemoveMembersResponse{Removed: n}), nil
}

func (h listService) ListMembers(ctx context.Context, req *connect.Request[omegav1.ListMembersRequest]) (*connect.Response[omegav1.ListMembersResponse], error) {
	if err := h.known(req.Msg.GetList()); err != nil {
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
	ids, next, err := h.lists.Scan(ctx, req.Msg.GetList(), cursor, size)
	if err != nil {
		return nil, h.s.internal("list members", err)
	}
	out := &omegav1.ListMembersResponse{UserIds: ids}
	if next != 0 {
		out.NextPageToken = strconv.FormatUint(next, 10)
	}
	return connect.NewResponse(out), nil
}

func (h listService) CheckMember(ctx context.Context, req *connect.Request[omegav1.CheckMemberRequest]) (*connect.Response[omegav1.CheckMemberResponse], error) {
	if err := h.known(req.Msg.GetList()); err != nil {
		return nil, err
	}
	if err := checkID("user_id", req.Msg.GetUserId()); err != nil {
		return nil, err
	}
	in, err := h.lists.Has(ctx, req.Msg.GetList(), req.Msg.GetUserId())
	if err != nil {
		return nil, h.s.internal("check list member", err)
	}
	return connect.NewResponse(&omegav1.CheckMemberResponse{Member: in}), nil
}
