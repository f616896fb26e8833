package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"connectrpc.com/connect"

	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
)

// Prefix is where the console is served.
const Prefix = "/console/"

// CookieName holds the visitor's API key: HttpOnly (no script reads it), SameSite=Strict,
// scoped to the console's path, gone when the browser session ends.
const CookieName = "omega_console_key"

// Config wires the console to the API.
type Config struct {
	// API serves the API (api.NewHandler). The console calls it in-process with the visitor's key,
	// so every figure on a page is the API's own answer, checked and rate-limited as any call.
	API http.Handler
	// TemporalUI is the Temporal web UI's base URL that runs link to (http://127.0.0.1:8233 when
	// empty); Namespace the namespace reaches run in ("default" when empty).
	TemporalUI string
	Namespace  string
	// SecureCookie marks the key cookie Secure (set when the API serves TLS or sits behind a
	// TLS-terminating proxy).
	SecureCookie bool
	Log          *slog.Logger
	// Now is the clock that default periods are read from (time.Now when nil).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.TemporalUI == "" {
		c.TemporalUI = "http://127.0.0.1:8233"
	}
	c.TemporalUI = strings.TrimRight(c.TemporalUI, "/")
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a config the console cannot run with.
func (c *Config) Validate() error {
	if c.API == nil {
		return errors.New("console: API handler is required")
	}
	u, err := url.Parse(c.TemporalUI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("console: Temporal UI URL %q: want http(s)://host[:port]", c.TemporalUI)
	}
	return nil
}

//go:embed web
var web embed.FS

type console struct {
	cfg      Config
	reaches  omegav1connect.ReachServiceClient
	rules    omegav1connect.RuleServiceClient
	journeys omegav1connect.JourneyServiceClient
	pages    map[string]*template.Template
}

// New returns the console's handler, serving everything under Prefix.
func New(cfg Config) (http.Handler, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: inProcess{cfg.API}}
	opts := []connect.ClientOption{connect.WithInterceptors(forwardKey{})}
	const base = "http://omega-api.in-process"
	c := &console{cfg: cfg,
		reaches:  omegav1connect.NewReachServiceClient(hc, base, opts...),
		rules:    omegav1connect.NewRuleServiceClient(hc, base, opts...),
		journeys: omegav1connect.NewJourneyServiceClient(hc, base, opts...),
		pages:    map[string]*template.Template{},
	}
	for _, p := range []string{"login", "journeys", "journey", "funnels", "rules", "user", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(web, "web/layout.html", "web/svg.html", "web/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parse %s: %w", p, err)
		}
		c.pages[p] = t
	}
	static, err := fs.Sub(web, "web/static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix+"static/", http.FileServerFS(static)))
	mux.HandleFunc("GET "+Prefix+"login", c.loginForm)
	mux.HandleFunc("POST "+Prefix+"login", c.login)
	mux.HandleFunc("POST "+Prefix+"logout", c.logout)
	mux.HandleFunc("GET "+Prefix+"{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"journeys", http.StatusSeeOther)
	})
	mux.Handle("GET "+Prefix+"journeys", c.page(c.journeysPage))
	mux.Handle("GET "+Prefix+"journeys/{id}", c.page(c.journeyPage))
	mux.Handle("GET "+Prefix+"funnels", c.page(c.funnelsPage))
	mux.Handle("GET "+Prefix+"rules", c.page(c.rulesPage))
	mux.Handle("GET "+Prefix+"users", c.page(c.userPage))
	return secureHeaders(mux), nil
}

// Mount serves the console under Prefix beside apiHandler, which serves everything else.
func Mount(apiHandler http.Handler, cfg Config) (http.Handler, error) {
	cfg.API = apiHandler
	h, err := New(cfg)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(Prefix, h)
	mux.Handle("/", apiHandler)
	return mux, nil
}

// secureHeaders: the console runs no script at all, so the policy forbids every script, frames
// of it, and forms posting elsewhere.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// inProcess hands a client's request straight to the API handler: no socket, and the API's
// interceptors (key, scope, rate, deadline) run as for any caller.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

type keyCtx struct{}

// forwardKey sends the visitor's key (from the context) as the API's bearer token.
type forwardKey struct{}

func (forwardKey) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if k, ok := ctx.Value(keyCtx{}).(string); ok {
			req.Header().Set("Authorization", "Bearer "+k)
		}
		return next(ctx, req)
	}
}

func (forwardKey) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (forwardKey) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// view is what a page handler returns: the template and its data.
type view struct {
	page  string
	title string
	data  any
}

// page turns a page handler into an HTTP handler: the key comes from the cookie (no cookie: the
// login form), the page renders into a buffer (a failing template is an error page, not half a
// page), and the server time is sent as Server-Timing.
func (c *console) page(fn func(ctx context.Context, r *http.Request) (view, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ck, err := r.Cookie(CookieName)
		if err != nil || ck.Value == "" {
			http.Redirect(w, r, Prefix+"login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		ctx := context.WithValue(r.Context(), keyCtx{}, ck.Value)
		v, err := fn(ctx, r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		c.render(w, http.StatusOK, v, start)
	})
}

func (c *console) render(w http.ResponseWriter, status int, v view, start time.Time) {
	var b bytes.Buffer
	err := c.pages[v.page].Execute(&b, map[string]any{"Title": v.title, "Page": v.page, "Data": v.data})
	if err != nil {
		c.cfg.Log.Error("console render", "page", v.page, "err", err)
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Server-Timing", fmt.Sprintf("page;dur=%.1f", float64(time.Since(start).Microseconds())/1000))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// fail shows an API error: an unknown or revoked key goes back to the login form (the cookie
// cleared), the rest as a page saying what the API said.
func (c *console) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := connect.CodeOf(err)
	if code == connect.CodeUnauthenticated {
		c.clearKey(w, r)
		http.Redirect(w, r, Prefix+"login?error=key", http.StatusSeeOther)
		return
	}
	status := map[connect.Code]int{connect.CodeInvalidArgument: http.StatusBadRequest, connect.CodeNotFound: http.StatusNotFound,
		connect.CodePermissionDenied: http.StatusForbidden, connect.CodeResourceExhausted: http.StatusTooManyRequests}[code]
	if status == 0 {
		status = http.StatusBadGateway
		c.cfg.Log.Warn("console: api call failed", "path", r.URL.Path, "err", err)
	}
	msg := err.Error()
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg = ce.Message()
	}
	c.render(w, status, view{page: "error", title: http.StatusText(status), data: msg}, time.Now())
}

func (c *console) loginForm(w http.ResponseWriter, r *http.Request) {
	msg := ""
	switch r.URL.Query().Get("error") {
	case "key":
		msg = "The API refused that key (unknown or revoked). Enter a key with the read scope."
	case "scope":
		msg = "That key lacks the read scope the console needs."
	}
	c.render(w, http.StatusOK, view{page: "login", title: "Sign in", data: map[string]string{"Error": msg, "Next": safeNext(r.URL.Query().Get("next"))}}, time.Now())
}

// login checks the key with a read call to the API (the same check every page's calls get), then
// keeps it in the session cookie.
func (c *console) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site sign-in refused", http.StatusForbidden)
		return
	}
	key := strings.TrimSpace(r.PostFormValue("key"))
	next := safeNext(r.PostFormValue("next"))
	if key == "" || len(key) > 512 {
		http.Redirect(w, r, Prefix+"login?error=key", http.StatusSeeOther)
		return
	}
	ctx := context.WithValue(r.Context(), keyCtx{}, key)
	if _, err := c.journeys.ListJourneys(ctx, connect.NewRequest(&omegav1.ListJourneysRequest{})); err != nil {
		switch connect.CodeOf(err) {
		case connect.CodeUnauthenticated:
			http.Redirect(w, r, Prefix+"login?error=key", http.StatusSeeOther)
		case connect.CodePermissionDenied:
			http.Redirect(w, r, Prefix+"login?error=scope", http.StatusSeeOther)
		default:
			c.fail(w, r, err)
		}
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: key, Path: Prefix, HttpOnly: true, Secure: c.cfg.SecureCookie || r.TLS != nil,
		SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *console) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site sign-out refused", http.StatusForbidden)
		return
	}
	c.clearKey(w, r)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

func (c *console) clearKey(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true,
		Secure: c.cfg.SecureCookie || r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// sameOrigin refuses a form posted from another site (login CSRF: signing the visitor in with
// someone else's key). Browsers send Origin on every POST; a client that sends none is no browser.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return r.Header.Get("Sec-Fetch-Site") == "" || r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// safeNext keeps a post-login redirect inside the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return Prefix + "journeys"
	}
	return next
}
