package channel

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/omegareach/omega/activities/plugin"
	"github.com/omegareach/omega/store"
)

func init() {
	builtin.MustRegister(Spec{
		Name: "inapp",
		Doc:  "the in-app inbox: messages stored in PostgreSQL, read by the app through InboxService",
		New: func(_ plugin.Values, d Deps) (Channel, error) {
			if d.Inbox == nil {
				return nil, errors.New("an inbox store is required")
			}
			return NewInbox(d.Inbox), nil
		},
	})
}

// Inbox is the in-app channel: messages are stored in the user's inbox (store.Inbox, in
// PostgreSQL) and the app lists them and marks them read through InboxService.
type Inbox struct{ box store.Inbox }

// NewInbox delivers into box.
func NewInbox(box store.Inbox) *Inbox { return &Inbox{box: box} }

func (b *Inbox) Name() string { return "inapp" }

// Send stores the message once per idempotency key.
func (b *Inbox) Send(ctx context.Context, m Message) (Result, error) {
	id, dup, err := b.box.Put(ctx, store.InboxMessage{UserID: m.UserID, ReachID: m.ReachID, IdempotencyKey: m.IdempotencyKey,
		Template: m.Template, Title: m.Title, Body: m.Body, Data: m.Data})
	if err != nil {
		return Result{}, &RetryableError{Err: err}
	}
	return Result{ProviderMessageID: "inbox-" + strconv.FormatInt(id, 10), Status: http.StatusOK, Duplicate: dup}, nil
}
