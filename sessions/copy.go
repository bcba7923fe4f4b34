package sessions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// CopyResult says what Copy did.
type CopyResult struct {
	// Sessions were copied; Present were in the target already (a second
	// run after one that stopped half way).
	Sessions, Present int
	// Secrets were copied or found equal in the target.
	Secrets int
}

// Copy copies every live session and the named secrets from one store to
// another, so that moving a deployment to another store (bbolt to Redis)
// signs nobody out. Sign-ins in progress are not copied: they last
// minutes. A secret that the target holds already with another value
// (replicas that started before the move made their own client key) is an
// error, not overwritten: which key servers have cached is for the
// operator to decide.
func Copy(ctx context.Context, from, to Store, secrets []string) (CopyResult, error) {
	var res CopyResult
	for _, name := range secrets {
		v, err := from.LoadSecret(ctx, name)
		if errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return res, fmt.Errorf("read secret %q: %w", name, err)
		}
		got, err := to.Secret(ctx, name, func() ([]byte, error) { return v, nil })
		if err != nil {
			return res, fmt.Errorf("write secret %q: %w", name, err)
		}
		if !bytes.Equal(got, v) {
			return res, fmt.Errorf("secret %q: the target holds another value already (an ioproxy on it made its own); delete it there to copy this one, or keep it and leave this one", name)
		}
		res.Secrets++
	}
	all, err := from.List(ctx)
	if err != nil {
		return res, fmt.Errorf("list sessions: %w", err)
	}
	for _, sess := range all {
		if _, err := to.Latest(ctx, sess.ID); err == nil {
			res.Present++
			continue
		}
		evicted, err := to.Create(ctx, sess)
		if err != nil {
			return res, fmt.Errorf("copy session of %s: %w", sess.DID, err)
		}
		if len(evicted) > 0 {
			return res, fmt.Errorf("copy session of %s: the target's max_per_account ended %d other sessions; raise it to at least the source's", sess.DID, len(evicted))
		}
		res.Sessions++
	}
	return res, nil
}
