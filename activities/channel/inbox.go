package channel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Inbox is the in-app channel: messages are stored in PostgreSQL (schema from audit.Migrate) and
// the app lists them and marks them read through InboxService.
type Inbox struct{ pool *pgxpool.Pool }

// NewInbox stores messages in pool's database.
func NewInbox(pool *pgxpool.Pool) *Inbox { return &Inbox{pool: pool} }

func (b *Inbox) Name() string { return "inapp" }

// Send stores the message once per idempotency key.
func (b *Inbox) Send(ctx context.Context, m Message) (Result, error) {
	data, err := json.Marshal(orEmpty(m.Data))
	if err != nil {
		return Result{}, &PermanentError{err}
	}
	var id int64
	dup := false
	err = b.pool.QueryRow(ctx, `INSERT INTO inbox_messages (user_id, reach_id, idempotency_key, template, title, body, data)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`,
		m.UserID, m.ReachID, m.IdempotencyKey, m.Template, m.Title, m.Body, data).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		dup = true
		err = b.pool.QueryRow(ctx, `SELECT id FROM inbox_messages WHERE idempotency_key = $1`, m.IdempotencyKey).Scan(&id)
	}
	if err != nil {
		return Result{}, &RetryableError{Err: fmt.Errorf("store inbox message: %w", err)}
	}
	return Result{ProviderMessageID: "inbox-" + strconv.FormatInt(id, 10), Status: http.StatusOK, Duplicate: dup}, nil
}

// InboxMessage is one stored message.
type InboxMessage struct {
	ID        int64
	ReachID   string
	Template  string
	Title     string
	Body      string
	Data      map[string]string
	CreatedAt time.Time
	ReadAt    *time.Time
}

// List returns a user's messages, newest first, at most limit, older than the message before
// (0: from the newest); unreadOnly leaves out those read.
func (b *Inbox) List(ctx context.Context, userID string, unreadOnly bool, limit int, before int64) ([]InboxMessage, error) {
	rows, err := b.pool.Query(ctx, `SELECT id, reach_id, template, title, body, data, created_at, read_at FROM inbox_messages
		WHERE user_id = $1 AND ($2::bigint = 0 OR id < $2) AND (NOT $3 OR read_at IS NULL)
		ORDER BY id DESC LIMIT $4`, userID, before, unreadOnly, limit)
	if err != nil {
		return nil, fmt.Errorf("list inbox: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (InboxMessage, error) {
		var m InboxMessage
		var data []byte
		if err := r.Scan(&m.ID, &m.ReachID, &m.Template, &m.Title, &m.Body, &data, &m.CreatedAt, &m.ReadAt); err != nil {
			return m, err
		}
		return m, json.Unmarshal(data, &m.Data)
	})
}

// MarkRead marks the user's messages ids read and returns how many were unread; other users'
// messages are left alone.
func (b *Inbox) MarkRead(ctx context.Context, userID string, ids []int64) (int64, error) {
	tag, err := b.pool.Exec(ctx, `UPDATE inbox_messages SET read_at = now() WHERE user_id = $1 AND id = ANY($2) AND read_at IS NULL`, userID, ids)
	if err != nil {
		return 0, fmt.Errorf("mark read: %w", err)
	}
	return tag.RowsAffected(), nil
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
