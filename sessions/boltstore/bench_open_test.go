package boltstore

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// BenchmarkOpen100k is the start of an ioproxy whose store holds 100,000
// sessions (the default max_sessions), plain and sealed: Open loads every
// session into memory, so this is the start-up time and the memory the
// sessions take (heap-MB).
//
//	go test -run '^$' -bench BenchmarkOpen100k -benchtime 3x ./sessions/boltstore/
func BenchmarkOpen100k(b *testing.B) {
	keys, err := sealed.ParseKeys([]string{sealed.Generate()})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		keys *sealed.Keys
	}{{"plain", nil}, {"sealed", keys}} {
		b.Run(tc.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "data", "db")
			fill(b, path, tc.keys, 100000)
			var heap uint64
			for b.Loop() {
				before := heapInUse()
				s, err := Open(Config{Path: path, Keys: tc.keys})
				if err != nil {
					b.Fatal(err)
				}
				if after := heapInUse(); after > before {
					heap = after - before
				}
				runtime.KeepAlive(s)
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
		})
	}
}

// fill writes n sessions of typical size into a new store at path, in
// one transaction (n Creates would be n fsyncs).
func fill(b *testing.B, path string, keys *sealed.Keys, n int) {
	b.Helper()
	s, err := Open(Config{Path: path, Keys: keys})
	if err != nil {
		b.Fatal(err)
	}
	c := &clock{now: time.Now()}
	err = s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketSessions)
		for i := range n {
			sess := newSession(c)
			sess.DID = fmt.Sprintf("did:plc:%024d", i)
			sess.AccessToken = fmt.Sprintf("%01000d", i) // about the reference server's 1 KB
			v, err := sessions.EncodeSession(&sess)
			if err != nil {
				return err
			}
			if err := bk.Put([]byte(sess.ID), s.seal(sessionKind, sess.ID, v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
