package api

import (
	"context"
	"strconv"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/store"
)

type inboxService struct {
	s     *server
	inbox store.Inbox
}

func (h inboxService) ListInbox(ctx context.Context, req *connect.Request[omegav1.ListInboxRequest]) (*connect.Response[omegav1.ListInboxResponse], error) {
	m := req.Msg
	if err := checkID("user_id", m.GetUserId()); err != nil {
		return nil, err
	}
	size := int(m.GetPageSize())
	switch {
	case size < 0 || size > 100:
		return nil, invalid("page_size", "between 0 and 100")
	case size == 0:
		size = 20
	}
	var before int64
	if t := m.GetPageToken(); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n <= 0 {
			return nil, invalid("page_token", "not a token this service issued")
		}
		before = n
	}
	msgs, err := h.inbox.List(ctx, m.GetUserId(), m.GetUnreadOnly(), size+1, before)
	if err != nil {
		return nil, h.s.internal("list inbox", err)
	}
	out := &omegav1.ListInboxResponse{}
	if len(msgs) > size {
		msgs = msgs[:size]
		out.NextPageToken = strconv.FormatInt(msgs[size-1].ID, 10)
	}
	for _, x := range msgs {
		im := &omegav1.InboxMessage{Id: x.ID, ReachId: x.ReachID, Template: x.Template, Title: x.Title, Body: x.Body,
			Data: x.Data, CreatedAt: timestamppb.New(x.CreatedAt)}
		if x.ReadAt != nil {
			im.ReadAt = timestamppb.New(*x.ReadAt)
		}
		out.Messages = append(out.Messages, im)
	}
	return connect.NewResponse(out), nil
}

func (h inboxService) MarkRead(ctx context.Context, req *connect.Request[omegav1.MarkReadRequest]) (*connect.Response[omegav1.MarkReadResponse], error) {
	m := req.Msg
	if err := checkID("user_id", m.GetUserId()); err != nil {
		return nil, err
	}
	if len(m.GetIds()) == 0 || len(m.GetIds()) > 1000 {
		return nil, invalid("ids", "1 to 1000 message IDs")
	}
	n, err := h.inbox.MarkRead(ctx, m.GetUserId(), m.GetIds())
	if err != nil {
		return nil, h.s.internal("mark read", err)
	}
	return connect.NewResponse(&omegav1.MarkReadResponse{Marked: n}), nil
}
