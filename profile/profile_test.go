package profile_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/testenv"
	"github.com/omegareach/omega/profile"
)

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		p    profile.Profile
		want string
	}{
		{profile.Profile{}, "user_id: is required"},
		{profile.Profile{UserID: "u", TimeZone: "Mars/Olympus"}, "time_zone"},
		{profile.Profile{UserID: "u", Locale: "!!"}, "locale"},
		{profile.Profile{UserID: "u", Locale: "pt_BR"}, "locale"},
		{profile.Profile{UserID: "u", Locale: "d"}, "locale"},
		{profile.Profile{UserID: "u", Locale: "de-"}, "locale"},
		{profile.Profile{UserID: "u", Addresses: profile.Addresses{Phone: "0151 123"}}, "addresses.phone"},
		{profile.Profile{UserID: "u", Addresses: profile.Addresses{Push: []profile.PushToken{{Token: "t", Platform: "nokia"}}}}, "addresses.push[0].platform"},
		{profile.Profile{UserID: "u", Addresses: profile.Addresses{Push: []profile.PushToken{{Platform: "ios"}}}}, "addresses.push[0].token"},
	} {
		require.ErrorContains(t, tt.p.Validate(), tt.want)
	}
	require.NoError(t, profile.Profile{UserID: "u", TimeZone: "Asia/Tokyo", Addresses: profile.Addresses{Phone: "+819012345678",
		Push: []profile.PushToken{{Token: "t", Platform: "ios"}}}}.Validate())
	for _, l := range []string{"de", "pt-BR", "zh-Hant-TW", "es-419", "fil"} {
		require.NoError(t, profile.Profile{UserID: "u", Locale: l}.Validate(), l)
	}
}

func TestStoreCacheAndImport(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			store := profile.NewStore(env.Audit(t).Pool())
			rdb := target.Client
			ctx := context.Background()
			c := &profile.Cached{Store: store, Redis: rdb, Prefix: testenv.Unique("p")}
			u := testenv.Unique("u")

			missing, err := c.Get(ctx, u)
			require.NoError(t, err)
			require.Equal(t, profile.Profile{UserID: u}, missing, "no profile reads as the zero profile")

			p := profile.Profile{UserID: u, TimeZone: "Europe/Berlin", Locale: "de", Attrs: map[string]any{"tier": "gold"},
				Consent:   map[string]bool{"sms:marketing": true},
				Addresses: profile.Addresses{Phone: "+4915112345678", Push: []profile.PushToken{{Token: "tok", Platform: "android", Device: "pixel"}}}}
			require.NoError(t, c.Upsert(ctx, p))
			got, err := c.Get(ctx, u)
			require.NoError(t, err)
			require.Equal(t, p, got)

			// A write through the store alone is not seen until the cached copy expires; a write through
			// the cache is seen at once (an unsubscribe must stop the next send).
			p.Consent = map[string]bool{"sms:marketing": false}
			require.NoError(t, store.Upsert(ctx, p))
			stale, err := c.Get(ctx, u)
			require.NoError(t, err)
			require.True(t, stale.Consent["sms:marketing"], "served from the cache")
			require.NoError(t, c.Upsert(ctx, p))
			fresh, err := c.Get(ctx, u)
			require.NoError(t, err)
			require.False(t, fresh.Consent["sms:marketing"])

			// Bulk import: good lines go in, bad ones are reported by line number.
			var jsonl strings.Builder
			for i := range 1203 {
				fmt.Fprintf(&jsonl, `{"user_id":"%s-%d","time_zone":"UTC","attrs":{"n":%d}}`+"\n", u, i, i)
			}
			jsonl.WriteString(`{"user_id":"` + u + `-bad","time_zone":"Nowhere/City"}` + "\n")
			jsonl.WriteString(`{"user":"typo"}` + "\n")
			var progress []int
			rep, err := profile.Import(ctx, c, strings.NewReader(jsonl.String()), "jsonl", func(r profile.Report) { progress = append(progress, r.Imported) })
			require.NoError(t, err)
			require.Equal(t, 1205, rep.Lines)
			require.Equal(t, 1203, rep.Imported)
			require.Equal(t, []int{500, 1000, 1203}, progress)
			require.Len(t, rep.Errors, 2)
			require.Equal(t, 1204, rep.Errors[0].Line)
			require.Contains(t, rep.Errors[0].Reason, "time_zone")
			require.Equal(t, 1205, rep.Errors[1].Line)
			got, err = store.Get(ctx, u+"-1202")
			require.NoError(t, err)
			require.EqualValues(t, 1202, got.Attrs["n"])

			csv := "user_id,time_zone,phone,segment\n" + u + "-c1,Asia/Tokyo,+819012345678,vip\n" + u + "-c2,UTC,12345,\n" + u + "-c3,UTC\n"
			rep, err = profile.Import(ctx, c, strings.NewReader(csv), "csv", nil)
			require.NoError(t, err)
			require.Equal(t, 3, rep.Lines)
			require.Equal(t, 1, rep.Imported)
			require.Equal(t, []int{3, 4}, []int{rep.Errors[0].Line, rep.Errors[1].Line})
			got, err = c.Get(ctx, u+"-c1")
			require.NoError(t, err)
			require.Equal(t, "vip", got.Attrs["segment"])
			require.Equal(t, "+819012345678", got.Addresses.Phone)
		})
	}
}

func TestGetMany(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			store := profile.NewStore(env.Audit(t).Pool())
			c := &profile.Cached{Store: store, Redis: target.Client, Prefix: testenv.Unique("p")}
			ctx := context.Background()
			a, b := testenv.Unique("u"), testenv.Unique("u")
			require.NoError(t, c.Upsert(ctx, profile.Profile{UserID: a, Attrs: map[string]any{"tier": "gold"}}))
			_, err := c.Get(ctx, a) // cached now
			require.NoError(t, err)
			ps, err := c.GetMany(ctx, []string{a, b})
			require.NoError(t, err)
			require.Equal(t, "gold", ps[a].Attrs["tier"])
			require.Equal(t, profile.Profile{UserID: b}, ps[b])
			ps, err = c.GetMany(ctx, []string{a, b}) // both from the cache this time
			require.NoError(t, err)
			require.Len(t, ps, 2)
		})
	}
}

// A CSV refresh of attributes keeps what the file does not carry (consent, push tokens); a user
// twice in a file keeps the last line.
func TestCSVImportKeepsWhatItDoesNotCarry(t *testing.T) {
	env := testenv.Require(t)
	for _, target := range env.Redises(t) {
		t.Run(target.Name, func(t *testing.T) {
			c := &profile.Cached{Store: profile.NewStore(env.Audit(t).Pool()), Redis: target.Client, Prefix: testenv.Unique("p")}
			ctx := context.Background()
			u := testenv.Unique("u")
			require.NoError(t, c.Upsert(ctx, profile.Profile{UserID: u, TimeZone: "Asia/Tokyo", Attrs: map[string]any{"tier": "gold", "score": "1"},
				Consent:   map[string]bool{"*:marketing": false},
				Addresses: profile.Addresses{Phone: "+819012345678", Push: []profile.PushToken{{Token: "t", Platform: "ios"}}}}))
			csv := "user_id,score\n" + u + ",2\n" + u + ",3\n"
			rep, err := profile.Import(ctx, c, strings.NewReader(csv), "csv", nil)
			require.NoError(t, err)
			require.Equal(t, profile.Report{Lines: 2, Imported: 1, Repeated: 1}, rep)
			got, err := c.Get(ctx, u)
			require.NoError(t, err)
			require.Equal(t, map[string]any{"tier": "gold", "score": "3"}, got.Attrs)
			require.Equal(t, map[string]bool{"*:marketing": false}, got.Consent, "an unsubscribe survives an attribute refresh")
			require.Len(t, got.Addresses.Push, 1)
			require.Equal(t, "Asia/Tokyo", got.TimeZone)
			require.Equal(t, "+819012345678", got.Addresses.Phone)
		})
	}
}
