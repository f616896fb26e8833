package filter_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/filter"
)

// fake is a filter with a fixed answer that records whether it was asked.
type fake struct {
	name    string
	verdict filter.Verdict
	err     error
	checked *[]string
}

func (f fake) Name() string { return f.name }

func (f fake) Check(context.Context, filter.Request) (filter.Verdict, error) {
	*f.checked = append(*f.checked, f.name)
	return f.verdict, f.err
}

// releasing is a fake that reserves, so it can give back.
type releasing struct {
	fake
	err      error
	released *[]string
}

func (r releasing) Release(_ context.Context, req filter.Request) error {
	*r.released = append(*r.released, r.name+":"+req.DispatchKey)
	return r.err
}

var errStore = errors.New("store down")

func TestChainCheck(t *testing.T) {
	pass := filter.Verdict{Outcome: filter.Pass}
	drop := filter.Verdict{Outcome: filter.Drop, Reason: "on the list"}
	deferred := filter.Verdict{Outcome: filter.Defer, Reason: "quiet hours"}

	type spec struct {
		name    string
		verdict filter.Verdict
		err     error
	}
	tests := []struct {
		name    string
		filters []spec

		want        filter.Verdict
		wantErr     error
		wantErrText string
		wantChecked []string
	}{
		{name: "empty chain passes", want: pass},
		{
			name:        "all pass",
			filters:     []spec{{"a", pass, nil}, {"b", pass, nil}},
			want:        pass,
			wantChecked: []string{"a", "b"},
		},
		{
			name:        "first non-pass wins and names its filter",
			filters:     []spec{{"a", pass, nil}, {"b", drop, nil}, {"c", deferred, nil}},
			want:        filter.Verdict{Outcome: filter.Drop, Filter: "b", Reason: "on the list"},
			wantChecked: []string{"a", "b"},
		},
		{
			name:        "defer stops the chain",
			filters:     []spec{{"a", deferred, nil}, {"b", drop, nil}},
			want:        filter.Verdict{Outcome: filter.Defer, Filter: "a", Reason: "quiet hours"},
			wantChecked: []string{"a"},
		},
		{
			name:        "error stops the chain and is wrapped",
			filters:     []spec{{"a", pass, nil}, {"b", filter.Verdict{}, errStore}, {"c", drop, nil}},
			wantErr:     errStore,
			wantErrText: "filter b: store down",
			wantChecked: []string{"a", "b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var checked []string
			var chain filter.Chain
			for _, s := range tt.filters {
				chain = append(chain, fake{name: s.name, verdict: s.verdict, err: s.err, checked: &checked})
			}
			got, err := chain.Check(context.Background(), filter.Request{UserID: "u1"})
			require.Equal(t, tt.wantChecked, checked)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.EqualError(t, err, tt.wantErrText)
				require.Equal(t, filter.Verdict{}, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestChainRelease(t *testing.T) {
	pass := filter.Verdict{Outcome: filter.Pass}
	tests := []struct {
		name         string
		failing      string // the releaser that fails, if any
		wantReleased []string
		wantErrText  string
	}{
		{name: "every releaser", wantReleased: []string{"cap:k1", "quota:k1"}},
		{name: "error stops and is wrapped", failing: "cap", wantReleased: []string{"cap:k1"}, wantErrText: "release cap: store down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var checked, released []string
			rel := func(name string) releasing {
				r := releasing{fake: fake{name: name, verdict: pass, checked: &checked}, released: &released}
				if name == tt.failing {
					r.err = errStore
				}
				return r
			}
			chain := filter.Chain{
				fake{name: "blacklist", verdict: pass, checked: &checked}, // reserves nothing
				rel("cap"),
				rel("quota"),
			}
			err := chain.Release(context.Background(), filter.Request{DispatchKey: "k1"})
			require.Equal(t, tt.wantReleased, released)
			require.Empty(t, checked, "release checks nothing")
			if tt.wantErrText != "" {
				require.ErrorIs(t, err, errStore)
				require.EqualError(t, err, tt.wantErrText)
				return
			}
			require.NoError(t, err)
		})
	}
}

func TestVerdictString(t *testing.T) {
	tests := []struct {
		name string
		v    filter.Verdict
		want string
	}{
		{name: "pass", v: filter.Verdict{Outcome: filter.Pass, Filter: "ignored"}, want: "pass"},
		{name: "drop", v: filter.Verdict{Outcome: filter.Drop, Filter: "blacklist", Reason: "user is on the blacklist"}, want: "drop by blacklist: user is on the blacklist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.v.String())
		})
	}
}

// A drop after a reserving filter gives the reservation back.
func TestChainReleasesEarlierReservationsOnDrop(t *testing.T) {
	res := &reserving{}
	chain := filter.Chain{res, dropAll{}}
	v, err := chain.Check(context.Background(), filter.Request{DispatchKey: "k"})
	require.NoError(t, err)
	require.Equal(t, filter.Drop, v.Outcome)
	require.Equal(t, []string{"k"}, res.released)
}

type reserving struct{ released []string }

func (r *reserving) Name() string { return "reserving" }
func (r *reserving) Check(context.Context, filter.Request) (filter.Verdict, error) {
	return filter.Verdict{Outcome: filter.Pass}, nil
}
func (r *reserving) Release(_ context.Context, req filter.Request) error {
	r.released = append(r.released, req.DispatchKey)
	return nil
}

type dropAll struct{}

func (dropAll) Name() string { return "drop_all" }
func (dropAll) Check(context.Context, filter.Request) (filter.Verdict, error) {
	return filter.Verdict{Outcome: filter.Drop, Reason: "no"}, nil
}
