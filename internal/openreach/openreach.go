// Package openreach indexes each user's open reaches in Redis: the reach workflow registers itself
// (with the response events its journey listens for) when it starts and removes itself when it
// ends; the CEP stage looks a user up when a response event comes and signals those reaches. The
// index also bounds how many runs of one rule a user may have open at once.
package openreach

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key is the hash of userID's open reaches; the {user} hash tag keeps it on the user's slot.
func Key(prefix, userID string) string { return prefix + ":{" + userID + "}:open" }

// Entry is one open reach.
type Entry struct {
	RuleID string   `json:"rule"`
	Events []string `json:"events,omitempty"`
	// Until is when the entry is considered stale (a run that died without unregistering).
	Until int64 `json:"until"`
}

// MaxAge bounds how long an entry lives unless the run registers again (it does on every
// continue-as-new).
const MaxAge = 30 * 24 * time.Hour

//go:embed register.lua
var registerSrc string

var registerScript = redis.NewScript(registerSrc)

// Register adds reachID to userID's open reaches. With maxOpen > 0 it refuses (false) when the
// user already has maxOpen open runs of the rule. Registering again refreshes the entry.
func Register(ctx context.Context, rdb redis.Scripter, prefix, userID, reachID string, e Entry, maxOpen int, now time.Time) (bool, error) {
	if e.Until == 0 {
		e.Until = now.Add(MaxAge).Unix()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	ok, err := registerScript.Run(ctx, rdb, []string{Key(prefix, userID)},
		reachID, b, e.RuleID, maxOpen, now.Unix(), int64(MaxAge/time.Second)).Int()
	if err != nil {
		return false, fmt.Errorf("register open reach %s: %w", reachID, err)
	}
	return ok == 1, nil
}

// Unregister removes reachID from userID's open reaches.
func Unregister(ctx context.Context, rdb redis.Cmdable, prefix, userID, reachID string) error {
	if err := rdb.HDel(ctx, Key(prefix, userID), reachID).Err(); err != nil {
		return fmt.Errorf("unregister open reach %s: %w", reachID, err)
	}
	return nil
}

// Waiting returns, from a user's HGETALL, the reaches that listen for eventType and are not
// stale, in ID order.
func Waiting(all map[string]string, eventType string, now time.Time) []string {
	var out []string
	for id, v := range all {
		var e Entry
		if json.Unmarshal([]byte(v), &e) != nil || e.Until < now.Unix() {
			continue
		}
		if slices.Contains(e.Events, eventType) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
