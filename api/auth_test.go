package api_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/omegareach/omega/api"
	"github.com/omegareach/omega/audit"
	"github.com/omegareach/omega/cep"
	"github.com/omegareach/omega/event"
	"github.com/omegareach/omega/internal/apikey"
	"github.com/omegareach/omega/internal/versioned"
	"github.com/omegareach/omega/journey"
	"github.com/omegareach/omega/profile"
	omegav1 "github.com/omegareach/omega/proto/gen/omega/v1"
	"github.com/omegareach/omega/proto/gen/omega/v1/omegav1connect"
	"github.com/omegareach/omega/store"
)

// allProcedures lists every method of every omega.v1 service, from the compiled descriptors: a
// method added to a .proto shows up here whether or not anyone remembered it.
func allProcedures(t *testing.T) []string {
	t.Helper()
	var out []string
	protoregistry.GlobalFiles.RangeFilesByPackage("omega.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				out = append(out, "/"+string(sd.FullName())+"/"+string(sd.Methods().Get(j).Name()))
			}
		}
		return true
	})
	require.NotEmpty(t, out)
	_ = omegav1.File_omega_v1_reach_proto // the descriptors are registered by importing the package
	return out
}

func TestEveryMethodHasAScope(t *testing.T) {
	for _, p := range allProcedures(t) {
		scope, ok := api.MethodScopes[p]
		require.True(t, ok, "%s has no scope in api.MethodScopes: it would be refused to every key", p)
		require.Contains(t, apikey.Scopes, scope, p)
	}
}

// servedAll serves every service (backends that the auth checks never reach).
func servedAll(t *testing.T, keys api.KeySource) *httptest.Server {
	t.Helper()
	nowhere := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	return serve(t, api.Config{Audit: audit.NewStore(nil), Keys: keys,
		RuleStore: nopSpecs[cep.Rule]{}, JourneyStore: nopSpecs[journey.Journey]{}, EventTypes: nopEventTypes{},
		Redis: nowhere, Lists: store.NewLists(nil, nowhere, nil), Inbox: store.NewInbox(nil), Profiles: nopProfiles{},
		Backfill: &fakeBackfill{}, Pages: nopProfiles{}})
}

// nopSpecs and nopProfiles are stores with nothing in them.
type nopSpecs[T any] struct{}

func (nopSpecs[T]) Validate(T) error { return nil }
func (nopSpecs[T]) Apply(context.Context, T) (versioned.Applied, error) {
	return versioned.Applied{}, nil
}
func (nopSpecs[T]) Draft(context.Context, T) (versioned.Applied, error) {
	return versioned.Applied{}, nil
}
func (nopSpecs[T]) Activate(context.Context, string, int) error { return versioned.ErrNotFound }
func (nopSpecs[T]) Get(context.Context, string) (T, error)      { var z T; return z, versioned.ErrNotFound }
func (nopSpecs[T]) Version(context.Context, string, int) (T, error) {
	var z T
	return z, versioned.ErrNotFound
}
func (nopSpecs[T]) List(context.Context) ([]T, error)     { return nil, nil }
func (nopSpecs[T]) Disable(context.Context, string) error { return versioned.ErrNotFound }

type nopEventTypes struct{ nopSpecs[event.Type] }

func (nopEventTypes) Current() *event.Catalog { return event.Default() }

type nopProfiles struct{}

func (nopProfiles) Stored(context.Context, []string) (map[string]profile.Profile, error) {
	return nil, nil
}
func (nopProfiles) UpsertMany(context.Context, []profile.Profile) error { return nil }
func (nopProfiles) Page(context.Context, string, int) ([]profile.Profile, error) {
	return nil, nil
}

// streaming are the server-streaming procedures: the Connect protocol frames their messages.
var streaming = map[string]bool{omegav1connect.RuleServiceBackfillRuleProcedure: true}

// call posts {} to a procedure with the Connect protocol and returns the error code ("" for OK).
func call(t *testing.T, srv *httptest.Server, procedure, key string) (code, msg string) {
	t.Helper()
	if streaming[procedure] {
		return callStreaming(t, srv, procedure, key)
	}
	req, err := http.NewRequest(http.MethodPost, srv.URL+procedure, strings.NewReader("{}"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return "", ""
	}
	var e struct{ Code, Message string }
	require.NoError(t, json.Unmarshal(b, &e), "%s: %s", procedure, b)
	return e.Code, e.Message
}

// Every method of every service, over HTTP: no key and an unknown key are unauthenticated; a key
// without the method's scope is denied; a key with it gets past the check (to argument
// validation).
func TestEveryMethodNeedsItsScope(t *testing.T) {
	srv := servedAll(t, testKeys)
	byScope := map[string]string{apikey.ScopeIngest: ingestKey, apikey.ScopeTrigger: triggerKey, apikey.ScopeRead: readKey, apikey.ScopeAdmin: adminKey}
	for _, p := range allProcedures(t) {
		t.Run(strings.TrimPrefix(p, "/omega.v1."), func(t *testing.T) {
			code, msg := call(t, srv, p, "")
			require.Equal(t, "unauthenticated", code, msg)
			require.Contains(t, msg, "Authorization: Bearer")
			code, _ = call(t, srv, p, "omk_not-a-key")
			require.Equal(t, "unauthenticated", code)
			need := api.MethodScopes[p]
			for scope, key := range byScope {
				code, msg := call(t, srv, p, key)
				if scope == need || scope == apikey.ScopeAdmin {
					require.NotContains(t, []string{"unauthenticated", "permission_denied", "unimplemented"}, code, "%s with %s: %s", p, scope, msg)
					continue
				}
				require.Equal(t, "permission_denied", code, "%s with a %s key: %s", p, scope, msg)
				require.Contains(t, msg, need)
			}
		})
	}
	// Health and reflection stay open: probes and tools carry no key.
	code, msg := call(t, srv, "/grpc.health.v1.Health/Check", "")
	require.Equal(t, "", code, msg)
}

func TestKeyRateLimit(t *testing.T) {
	keys := apikey.Static{"omk_slow": {ID: "s", Name: "slow", Scopes: []string{apikey.ScopeRead}, RateLimit: 1}, readKey: testKeys[readKey]}
	srv := servedAll(t, keys)
	c := omegav1connect.NewReachServiceClient(keyed(srv, "omk_slow"), srv.URL)
	_, err := c.Get(context.Background(), connect.NewRequest(&omegav1.GetRequest{}))
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "first call passes the limit: %v", err)
	_, err = c.Get(context.Background(), connect.NewRequest(&omegav1.GetRequest{}))
	require.Equal(t, connect.CodeResourceExhausted, connect.CodeOf(err), "second call within the second: %v", err)
	var ce *connect.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "1", ce.Meta().Get("Retry-After"))
	// Another key has its own bucket.
	other := omegav1connect.NewReachServiceClient(keyed(srv, readKey), srv.URL)
	_, err = other.Get(context.Background(), connect.NewRequest(&omegav1.GetRequest{}))
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))
}

func TestScopesAreChecked(t *testing.T) {
	require.Error(t, apikey.CheckScopes(nil))
	require.Error(t, apikey.CheckScopes([]string{"read", "root"}))
	require.NoError(t, apikey.CheckScopes([]string{"read", "trigger"}))
	k := apikey.Key{Scopes: []string{apikey.ScopeRead}}
	require.True(t, k.Allows(apikey.ScopeRead))
	require.False(t, k.Allows(apikey.ScopeAdmin))
	require.True(t, apikey.Key{Scopes: []string{apikey.ScopeAdmin}}.Allows(apikey.ScopeIngest))
	require.True(t, slices.Contains(apikey.Scopes, apikey.ScopeAdmin))
}

// A request over the size limit is refused before any handler reads it.
func TestRequestSizeLimit(t *testing.T) {
	srv := serve(t, api.Config{Audit: audit.NewStore(nil), MaxRequestBytes: 4 << 10})
	body := `{"events":[{"event_id":"e1","user_id":"u1","type":"cart_add","attrs":{"x":"` + strings.Repeat("x", 8<<10) + `"}}]}`
	_, b := postJSON(t, srv, omegav1connect.EventServiceIngestProcedure, ingestKey, body)
	require.Contains(t, b, "resource_exhausted", "%s", b)
}

// postJSON posts body to a unary procedure with the Connect protocol's JSON and returns the HTTP
// status and the response body.
func postJSON(t *testing.T, srv *httptest.Server, procedure, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+procedure, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// callStreaming is call for a server-streaming procedure: one enveloped {} in, and the error of
// the end-of-stream message out.
func callStreaming(t *testing.T, srv *httptest.Server, procedure, key string) (code, msg string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+procedure, bytes.NewReader([]byte{0, 0, 0, 0, 2, '{', '}'}))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/connect+json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for len(b) >= 5 {
		flags, n := b[0], int(binary.BigEndian.Uint32(b[1:5]))
		require.GreaterOrEqual(t, len(b)-5, n, "%s: a truncated envelope", procedure)
		if flags&2 != 0 { // end of stream
			var end struct {
				Error *struct{ Code, Message string }
			}
			require.NoError(t, json.Unmarshal(b[5:5+n], &end), "%s: %s", procedure, b[5:5+n])
			if end.Error == nil {
				return "", ""
			}
			return end.Error.Code, end.Error.Message
		}
		b = b[5+n:]
	}
	t.Fatalf("%s: no end of stream", procedure)
	return "", ""
}

// A JSON body of the wrong shape is refused naming the request and the field as the schema does
// (event_id), not by Go type and JSON name; a good one still decodes, with unknown fields ignored.
func TestJSONErrorsNameTheField(t *testing.T) {
	srv := serve(t, api.Config{Audit: audit.NewStore(nil)})
	post := func(body string) (int, string) {
		return postJSON(t, srv, omegav1connect.ReachServiceListProcedure, readKey, body)
	}
	code, body := post(`{"user_id": 5}`)
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "invalid_argument")
	require.Contains(t, body, "omega.v1.ListRequest")
	require.Contains(t, body, "field user_id")
	require.NotContains(t, body, "userId")
	require.NotContains(t, body, "*omegav1")
	code, body = post(`{"page_token": "", "pageSize": "x"}`)
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "field page_size")
	// An unknown field is ignored: the request decodes, and the handler's own check answers.
	code, body = post(`{"user_id": "", "no_such_field": 1}`)
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "user_id: required")
	require.NotContains(t, body, "unmarshal")
}
