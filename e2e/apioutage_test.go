package e2e_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/internal/faultproxy"
)

// TestIngestThroughPostgreSQLOutage: `omega api` as a process, its PostgreSQL behind a proxy
// taken away. A calling service's key, checked before the outage, keeps ingesting past the key
// cache's 10 s (events need only Kafka); a key the API never saw is refused as unavailable, not
// taken; when PostgreSQL is back both are looked up again (found from outside: every call was
// refused while PostgreSQL was down).
func TestIngestThroughPostgreSQLOutage(t *testing.T) {
	p := newPipeline(t)
	bin := omegaBinary(t)
	pgu, err := url.Parse(p.env.PGURL)
	require.NoError(t, err)
	px, err := faultproxy.Start(pgu.Host)
	require.NoError(t, err)
	t.Cleanup(px.Close)
	viaProxy := *pgu
	viaProxy.Host = px.Addr()

	addr := p.startAPIProcess(t, bin, "OMEGA_PG_URL="+viaProxy.String())
	omega := p.omegaWithKey(bin, addr)
	create := func(name string) string {
		out, err := omega("", "apikey", "create", "--name", p.id+"-"+name, "--scopes", "ingest")
		require.NoError(t, err)
		return strings.TrimSpace(out)
	}
	known, unseen := create("known"), create("unseen")
	send := func(key, id string) (string, error) {
		return omega(key, "events", "send", "--user", p.id+"-u", "--type", "view", "--item", "i1", "--id", p.id+"-"+id)
	}
	out, err := send(known, "e1")
	require.NoError(t, err)
	require.Contains(t, out, "accepted 1 event")

	px.SetDown(true)
	time.Sleep(11 * time.Second) // past the key cache's 10 s: the key is looked up, and the lookup fails
	out, err = send(known, "e2")
	require.NoError(t, err, "a key checked before the outage ingests through it")
	require.Contains(t, out, "accepted 1 event")
	_, err = send(unseen, "e3")
	require.ErrorContains(t, err, "unavailable", "a key never seen cannot be checked")

	px.SetDown(false)
	require.Eventually(t, func() bool {
		_, err := send(unseen, "e4")
		return err == nil
	}, 30*time.Second, 500*time.Millisecond, "PostgreSQL back: the new key is looked up")
}
