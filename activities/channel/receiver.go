package channel

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Delivery is one message a Receiver accepted.
type Delivery struct {
	IdempotencyKey string    `json:"idempotency_key"`
	ProviderID     string    `json:"provider_message_id"`
	Message        Message   `json:"message"`
	ReceivedAt     time.Time `json:"received_at"`
	// Attempts counts the POSTs that carried this key (retries included).
	Attempts int `json:"attempts"`
}

// Receiver is a stand-in provider for the local stack and tests: it accepts webhook posts, keeps one
// delivery per idempotency key (as real providers do), logs each, and lists them on GET.
type Receiver struct {
	log *slog.Logger

	mu         sync.Mutex
	deliveries []*Delivery
	byKey      map[string]*Delivery
}

// NewReceiver returns an empty receiver that logs to log.
func NewReceiver(log *slog.Logger) *Receiver {
	return &Receiver{log: log, byKey: map[string]*Delivery{}}
}

// ServeHTTP accepts POST (a delivery) and GET (the list of deliveries as JSON).
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rc.Deliveries())
	case http.MethodPost:
		rc.accept(w, r)
	default:
		http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
	}
}

func (rc *Receiver) accept(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(HeaderIdempotencyKey)
	if key == "" {
		http.Error(w, "missing "+HeaderIdempotencyKey, http.StatusBadRequest)
		return
	}
	var m Message
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&m); err != nil {
		http.Error(w, "body is not a message: "+err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	d, dup := rc.byKey[key]
	if !dup {
		d = &Delivery{IdempotencyKey: key, ProviderID: "msg-" + strconv.Itoa(len(rc.deliveries)+1), Message: m, ReceivedAt: time.Now()}
		rc.byKey[key] = d
		rc.deliveries = append(rc.deliveries, d)
	}
	d.Attempts++
	res := Result{ProviderMessageID: d.ProviderID, Status: http.StatusOK, Duplicate: dup}
	rc.mu.Unlock()

	rc.log.Info("delivery", "idempotency_key", key, "user_id", m.UserID, "template", m.Template,
		"title", m.Title, "duplicate", dup)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

// Deliveries returns a copy of what was accepted, in arrival order.
func (rc *Receiver) Deliveries() []Delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make([]Delivery, len(rc.deliveries))
	for i, d := range rc.deliveries {
		out[i] = *d
	}
	return out
}
