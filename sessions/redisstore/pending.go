package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ioproxy/ioproxy/sessions"
)

// pendingGrace is how long Redis keeps a pending sign-in after it
// expired: a callback that comes late is told the sign-in expired
// (ErrExpired), not that it never was.
const pendingGrace = time.Hour

// PutPending stores an authorization request under its state; see
// sessions.Store. The limits hold across replicas: one script counts
// and stores.
func (s *Store) PutPending(ctx context.Context, p sessions.Pending) error {
	if !sessions.WellFormedToken(p.State) {
		return errors.New("store pending sign-in: the state is not a token of NewToken's shape")
	}
	plain, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode pending sign-in: %w", err)
	}
	r := ref(p.State)
	v := s.seal.Seal(plain, pendingRecord(r))
	client, clientKey := "", ""
	if p.Client != "" {
		client = digest(p.Client)
		clientKey = s.keys.client(client)
	}
	issuer := digest(sessions.IssuerGroup(p.Issuer))
	res, err := putPendingScript.Run(ctx, s.rdb,
		[]string{s.keys.pending(r), s.keys.pendingAll(), clientKey, s.keys.issuer(issuer)},
		string(s.keys), r, v, client, issuer, micros(s.now()), micros(p.Expiry),
		expireAtMillis(p.Expiry.Add(pendingGrace)),
		s.opts.MaxPending, s.opts.MaxPendingPerClient, s.opts.MaxPendingPerIssuer).StringSlice()
	if err != nil {
		return storeError("store pending sign-in", err)
	}
	switch res[0] {
	case "ok":
		return nil
	case "exists":
		return errors.New("store pending sign-in: the state is taken")
	}
	switch res[1] {
	case "client":
		return fmt.Errorf("store pending sign-in: %s sign-ins in progress from %s: %w", res[2], p.Client, sessions.ErrFull)
	case "issuer":
		return fmt.Errorf("store pending sign-in: %s sign-ins in progress with %s: %w", res[2], sessions.IssuerGroup(p.Issuer), sessions.ErrFull)
	}
	return fmt.Errorf("store pending sign-in: %s sign-ins in progress: %w", res[2], sessions.ErrFull)
}

// TakePending deletes and returns the authorization request for state;
// see sessions.Store. One script reads and deletes it, so that of two
// callbacks with one state, on two replicas, one finds nothing.
func (s *Store) TakePending(ctx context.Context, state string) (sessions.Pending, error) {
	if !sessions.WellFormedToken(state) {
		return sessions.Pending{}, sessions.ErrNotFound
	}
	r := ref(state)
	v, err := takePendingScript.Run(ctx, s.rdb, nil, string(s.keys), r).Text()
	if errors.Is(err, redis.Nil) {
		return sessions.Pending{}, sessions.ErrNotFound
	} else if err != nil {
		return sessions.Pending{}, storeError("take pending sign-in", err)
	}
	plain, err := s.open([]byte(v), pendingRecord(r))
	if err != nil {
		return sessions.Pending{}, storeError("take pending sign-in", err)
	}
	var p sessions.Pending
	if err := json.Unmarshal(plain, &p); err != nil {
		return sessions.Pending{}, fmt.Errorf("decode pending sign-in: %w", err)
	}
	if p.State != state {
		return sessions.Pending{}, storeError("take pending sign-in", errors.New("the stored sign-in is not the one its key names"))
	}
	if s.now().After(p.Expiry) {
		return sessions.Pending{}, sessions.ErrExpired
	}
	return p, nil
}
