package redisstore

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
)

// BenchmarkGetCached is the lookup every ingress request makes (Get of a
// session the replica has cached, and ByProxyKey for a calling port), on
// this store and on boltstore in one run: once cached, the shared store
// costs a request no more than the embedded one (no Redis round trip,
// which TestCache checks by Redis's own count).
//
//	IOPROXY_REQUIRE_REDIS=1 go test -run '^$' -bench BenchmarkGetCached ./sessions/redisstore/
func BenchmarkGetCached(b *testing.B) {
	keys := testKeys(b)
	bolt, err := boltstore.Open(boltstore.Config{Path: filepath.Join(b.TempDir(), "data", "s.db"), Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	defer bolt.Close()
	srv := redistest.Start(b, redistest.Options{})
	rs, err := Open(context.Background(), Config{URL: srv.URL(), Prefix: "bench:", Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	defer rs.Close()
	waitListening(b, rs, resubscribe) // it caches only once invalidations arrive
	for _, st := range []struct {
		name  string
		store sessions.Store
	}{{"bbolt", bolt}, {"redis", rs}} {
		sess := newSession(b)
		if _, err := st.store.Create(context.Background(), sess); err != nil {
			b.Fatal(err)
		}
		b.Run(st.name+"/Get", func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := st.store.Get(ctx, sess.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(st.name+"/ByProxyKey", func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := st.store.ByProxyKey(ctx, sess.ProxyKey); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(st.name+"/Get-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := st.store.Get(ctx, sess.ID); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
