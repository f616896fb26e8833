package channel

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
	// TraceParent is the first POST's traceparent header.
	TraceParent string `json:"traceparent,omitempty"`
}

// Receiver is a stand-in provider for the local stack and tests: it accepts webhook posts, keeps one
// delivery per idempotency key (as real providers do), logs each, and lists them on GET.
type Receiver struct {
	log *slog.Logger

	mu         sync.Mutex
	deliveries []*Delivery
	byKey      map[string]*Delivery
	// Failure injection (Fail).
	failStatus, failTimes int
	latency               time.Duration
	retryAfter            string
	hold                  time.Duration
	holdTimes             int
}

// NewReceiver returns an empty receiver that logs to log.
func NewReceiver(log *slog.Logger) *Receiver {
	return &Receiver{log: log, byKey: map[string]*Delivery{}}
}

// Fail makes the next times deliveries fail with status (Retry-After retryAfter when set) after
// latency: the local stack's way to exercise retries.
func (rc *Receiver) Fail(status, times int, latency time.Duration, retryAfter string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.failStatus, rc.failTimes, rc.latency, rc.retryAfter = status, times, latency, retryAfter
}

// HoldAfterAccept makes the next times new deliveries wait d after being recorded before the
// answer goes out.
func (rc *Receiver) HoldAfterAccept(d time.Duration, times int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.hold, rc.holdTimes = d, times
}

// ServeHTTP accepts POST (a delivery, on any path: webhook, FCM-, APNs- and SMS-style bodies), GET
// (the list of deliveries as JSON) and POST /control?status=503&times=2&latency=200ms (fail the
// next deliveries).
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/control" && r.Method == http.MethodPost {
		q := r.URL.Query()
		status, _ := strconv.Atoi(q.Get("status"))
		times, _ := strconv.Atoi(q.Get("times"))
		latency, _ := time.ParseDuration(q.Get("latency"))
		rc.Fail(status, times, latency, q.Get("retry_after"))
		_, _ = io.WriteString(w, "ok\n")
		return
	}
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
	rc.mu.Lock()
	latency, status, retryAfter := rc.latency, 0, rc.retryAfter
	if rc.failTimes > 0 {
		rc.failTimes--
		status = rc.failStatus
	}
	rc.mu.Unlock()
	if latency > 0 {
		time.Sleep(latency)
	}
	if status != 0 {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		http.Error(w, "failure injected by /control", status)
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m, err := decodeDelivery(r, b)
	if err != nil {
		http.Error(w, "body is not a message: "+err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	d, dup := rc.byKey[key]
	if !dup {
		d = &Delivery{IdempotencyKey: key, ProviderID: "msg-" + strconv.Itoa(len(rc.deliveries)+1), Message: m, ReceivedAt: time.Now(),
			TraceParent: r.Header.Get("traceparent")}
		rc.byKey[key] = d
		rc.deliveries = append(rc.deliveries, d)
	}
	d.Attempts++
	res := Result{ProviderMessageID: d.ProviderID, Status: http.StatusOK, Duplicate: dup}
	hold := time.Duration(0)
	if rc.holdTimes > 0 && !dup {
		rc.holdTimes--
		hold = rc.hold
	}
	rc.mu.Unlock()
	if hold > 0 {
		// Accepted, but the answer is late: the caller may die before it knows (the case a
		// retried dispatch must not deliver twice).
		select {
		case <-time.After(hold):
		case <-r.Context().Done():
			return
		}
	}

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

// decodeDelivery reads the message of any channel: the webhook's Message JSON, or a provider
// body (FCM, APNs, SMS as JSON or form) with the Omega-* headers for attribution.
func decodeDelivery(r *http.Request, b []byte) (Message, error) {
	m := Message{ReachID: r.Header.Get(HeaderReachID), UserID: r.Header.Get(HeaderUserID),
		Channel: r.Header.Get(HeaderChannel), Template: r.Header.Get(HeaderTemplate)}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		v, err := url.ParseQuery(string(b))
		if err != nil {
			return Message{}, err
		}
		m.Body = v.Get("body")
		return m, nil
	}
	var body struct {
		Message
		FCM struct {
			Notification struct{ Title, Body string } `json:"notification"`
		} `json:"message"`
		APS struct {
			Alert struct{ Title, Body string } `json:"alert"`
		} `json:"aps"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return Message{}, err
	}
	if body.IdempotencyKey != "" { // the webhook posts the Message itself
		return body.Message, nil
	}
	switch {
	case body.FCM.Notification.Body != "":
		m.Title, m.Body = body.FCM.Notification.Title, body.FCM.Notification.Body
	case body.APS.Alert.Body != "":
		m.Title, m.Body = body.APS.Alert.Title, body.APS.Alert.Body
	default: // SMS: {"to", "from", "body"}
		m.Body = body.Body
	}
	return m, nil
}
