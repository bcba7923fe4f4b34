package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/server"
	"github.com/ioproxy/ioproxy/sessions"
)

const keyUsage = `Usage:
  ioproxy key status -config FILE
      show the OAuth client's keys: which signs, which are published at
      /@/jwks.json, and when that changes
  ioproxy key rotate -config FILE [-sign-after 24h] [-drop-after 24h]
      publish a new client key now, sign with it after -sign-after (time
      for authorization servers to drop their cached key set), and take
      the old key out of the set -drop-after later. Running replicas on
      Redis pick the change up within a minute; an ioproxy on bbolt must
      be stopped first (it holds the file) and started again after.
`

// Default delays of a rotation: the reference PDS caches a client's key
// set for hours, so a day is safe.
const (
	defaultSignAfter = 24 * time.Hour
	defaultDropAfter = 24 * time.Hour
)

// cmdKey runs the key subcommands.
func cmdKey(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "rotate" && args[0] != "status") {
		fmt.Fprint(stderr, keyUsage)
		return 2
	}
	sub := args[0]
	var signAfter, dropAfter *time.Duration
	cfg, _, ok := loadConfig("key "+sub, args[1:], stderr, func(fs *flag.FlagSet) {
		if sub == "rotate" {
			signAfter = fs.Duration("sign-after", defaultSignAfter, "how long the next key is published before it signs")
			dropAfter = fs.Duration("drop-after", defaultDropAfter, "how long the old key stays published after the next one signs")
		}
	})
	if !ok {
		return 1
	}
	if !confidential(cfg) {
		fmt.Fprintf(stderr, "ioproxy: no host in %s signs in with a client key (every atproto host uses the localhost client); there is nothing to rotate\n", cfg.Filename)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := server.OpenStore(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintf(stderr, "ioproxy: key %s: %v\n", sub, err)
		if cfg.Sessions.Store != config.StoreRedis {
			fmt.Fprintln(stderr, "An ioproxy on bbolt holds its file while it runs: stop it, run this again, then start it.")
		}
		return 1
	}
	defer store.Close()
	now := time.Now()
	if sub == "status" {
		ring, err := server.LoadClientKeys(ctx, store)
		if err != nil {
			fmt.Fprintln(stderr, "ioproxy: key status:", err)
			return 1
		}
		fmt.Fprint(stdout, describeKeys(ring, now))
		return 0
	}
	return rotate(ctx, store, now, *signAfter, *dropAfter, stdout, stderr)
}

func rotate(ctx context.Context, store sessions.Store, now time.Time, signAfter, dropAfter time.Duration, stdout, stderr io.Writer) int {
	if signAfter < 0 || dropAfter < 0 {
		fmt.Fprintln(stderr, "ioproxy: key rotate: -sign-after and -drop-after must not be negative")
		return 2
	}
	ring, err := server.RotateClientKey(ctx, store, now, signAfter, dropAfter)
	if errors.Is(err, oauth.ErrRotationUnderWay) {
		fmt.Fprintf(stderr, "ioproxy: key rotate: %v; rotate again once it is over (ioproxy key status shows when)\n", err)
		return 1
	} else if err != nil {
		fmt.Fprintln(stderr, "ioproxy: key rotate:", err)
		return 1
	}
	keys := ring.Keys()
	next := keys[len(keys)-1]
	fmt.Fprintf(stdout, "The next client key %s is published at /@/jwks.json now (running replicas on Redis within a minute).\n", next.Key.KeyID())
	fmt.Fprintf(stdout, "It signs from %s (in %s).\n", stamp(next.SignFrom), signAfter)
	for _, k := range keys[:len(keys)-1] {
		if !k.DropAt.IsZero() {
			fmt.Fprintf(stdout, "The current key %s leaves the key set at %s.\n", k.Key.KeyID(), stamp(k.DropAt))
		}
	}
	if signAfter < time.Hour {
		fmt.Fprintln(stdout, "Warning: authorization servers that cached the old key set refuse sign-ins until their cache expires.")
	}
	if dropAfter < 10*time.Minute {
		fmt.Fprintln(stdout, "Warning: the old key leaves the key set right after the switch; servers that fetched the set just before may refuse sign-ins for a while.")
	}
	fmt.Fprintln(stdout, "The times are this machine's clock: keep the replicas' clocks in step with it (NTP).")
	return 0
}

// describeKeys is the key ring at now, one line per key.
func describeKeys(ring *oauth.KeyRing, now time.Time) string {
	signer := ring.Signer(now)
	var b strings.Builder
	for _, k := range ring.Keys() {
		var state []string
		switch {
		case !k.DropAt.IsZero() && !now.Before(k.DropAt):
			state = append(state, "gone from the key set since "+stamp(k.DropAt))
		case k.Key == signer:
			state = append(state, "signs, published")
		case now.Before(k.SignFrom):
			state = append(state, "published, signs from "+stamp(k.SignFrom))
		default:
			state = append(state, "published")
		}
		if !k.DropAt.IsZero() && now.Before(k.DropAt) {
			state = append(state, "leaves the key set at "+stamp(k.DropAt))
		}
		fmt.Fprintf(&b, "%s  %s\n", k.Key.KeyID(), strings.Join(state, "; "))
	}
	return b.String()
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// confidential reports whether any host signs in with the client key.
func confidential(cfg *config.Config) bool {
	for _, h := range cfg.Hosts {
		if h.ATProto != nil && h.ATProto.Local == 0 {
			return true
		}
	}
	return false
}
