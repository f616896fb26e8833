package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Inbox keeps the in-app channel's messages: the channel puts them, the app lists them and marks
// them read through InboxService.
type Inbox interface {
	// Put stores m once per m.IdempotencyKey and returns its id; dup says the key was stored
	// before (the id is the first one's).
	Put(ctx context.Context, m InboxMessage) (id int64, dup bool, err error)
	// List returns a user's messages, newest first, at most limit, older than the message before
	// (0: from the newest); unreadOnly leaves out those read.
	List(ctx context.Context, userID string, unreadOnly bool, limit int, before int64) ([]InboxMessage, error)
	// MarkRead marks the user's messages ids read and returns how many were unread; other users'
	// messages are left alone.
	MarkRead(ctx context.Context, userID string, ids []int64) (int64, error)
}

// InboxMessage is one message of a user's inbox.
type InboxMessage struct {
	ID             int64
	UserID         string
	ReachID        string
	IdempotencyKey string
	Template       string
	Title          string
	Body           string
	Data           map[string]string
	CreatedAt      time.Time
	ReadAt         *time.Time
}

// InboxTable is the Inbox in table inbox_messages.
type InboxTable struct{ pool *pgxpool.Pool }

var _ Inbox = (*InboxTable)(nil)

// NewInbox returns the inbox in pool's database.
func NewInbox(pool *pgxpool.Pool) *InboxTable { return &InboxTable{pool: pool} }

func (b *InboxTable) Put(ctx context.Context, m InboxMessage) (int64, bool, error) {
	data := m.Data
	if data == nil {
		data = map[string]string{}
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return 0, false, err
	}
	var id int64
	dup := false
	err = b.pool.QueryRow(ctx, `INSERT INTO inbox_messages (user_id, reach_id, idempotency_key, template, title, body, data)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`,
		m.UserID, m.ReachID, m.IdempotencyKey, m.Template, m.Title, m.Body, raw).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		dup = true
		err = b.pool.QueryRow(ctx, `SELECT id FROM inbox_messages WHERE idempotency_key = $1`, m.IdempotencyKey).Scan(&id)
	}
	if err != nil {
		return 0, false, fmt.Errorf("store inbox message: %w", err)
	}
	return id, dup, nil
}

func (b *InboxTable) List(ctx context.Context, userID string, unreadOnly bool, limit int, before int64) ([]InboxMessage, error) {
	rows, err := b.pool.Query(ctx, `SELECT id, reach_id, template, title, body, data, created_at, read_at FROM inbox_messages
		WHERE user_id = $1 AND ($2::bigint = 0 OR id < $2) AND (NOT $3 OR read_at IS NULL)
		ORDER BY id DESC LIMIT $4`, userID, before, unreadOnly, limit)
	if err != nil {
		return nil, fmt.Errorf("list inbox: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (InboxMessage, error) {
		m := InboxMessage{UserID: userID}
		var data []byte
		if err := r.Scan(&m.ID, &m.ReachID, &m.Template, &m.Title, &m.Body, &data, &m.CreatedAt, &m.ReadAt); err != nil {
			return m, err
		}
		return m, json.Unmarshal(data, &m.Data)
	})
}

func (b *InboxTable) MarkRead(ctx context.Context, userID string, ids []int64) (int64, error) {
	tag, err := b.pool.Exec(ctx, `UPDATE inbox_messages SET read_at = now() WHERE user_id = $1 AND id = ANY($2) AND read_at IS NULL`, userID, ids)
	if err != nil {
		return 0, fmt.Errorf("mark read: %w", err)
	}
	return tag.RowsAffected(), nil
}
