package channel

import (
	"context"
	"net/http"
	"strconv"

	"github.com/omegareach/omega/store"
)

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
