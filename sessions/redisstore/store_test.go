package redisstore

import (
	"testing"

	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/sealed"
	"github.com/ioproxy/ioproxy/sessions/storetest"
)

// testKeys is a keyring of one fresh key.
func testKeys(t testing.TB) *sealed.Keys {
	t.Helper()
	k, err := sealed.ParseKeys([]string{sealed.Generate()})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// openOn opens a store on srv under prefix.
func openOn(t testing.TB, srv *redistest.Server, prefix string, keys *sealed.Keys, opts sessions.Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), Config{URL: srv.URL(), Prefix: prefix, Keys: keys, Options: opts})
	if err != nil {
		t.Fatalf("open redis store: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	keys := testKeys(t)
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T, opts sessions.Options) sessions.Store {
			return openOn(t, srv, "test:"+t.Name()+":", keys, opts)
		},
		Concurrent: true,
	})
}
