package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/server"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
	"github.com/ioproxy/ioproxy/sessions/redisstore"
)

const sessionsUsage = `Usage:
  ioproxy sessions migrate -config FILE -from PATH/ioproxy.db
      copy every live session and the OAuth client key from a bbolt file
      (stop the ioproxy that uses it first) into the Redis store that FILE
      configures, so that moving to several replicas signs nobody out
`

// cmdSessions runs the sessions subcommands.
func cmdSessions(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "migrate" {
		fmt.Fprint(stderr, sessionsUsage)
		return 2
	}
	var from *string
	cfg, _, ok := loadConfig("sessions migrate", args[1:], stderr, func(fs *flag.FlagSet) {
		from = fs.String("from", "", "the bbolt file to copy from, such as ./data/ioproxy.db")
	})
	if !ok {
		return 1
	}
	if *from == "" {
		fmt.Fprintf(stderr, "ioproxy: -from is required: the bbolt file to copy from, such as %s/ioproxy.db\n", cfg.DataDir)
		return 2
	}
	if cfg.Sessions.Store != config.StoreRedis {
		fmt.Fprintf(stderr, "ioproxy: %s does not configure a Redis store; write sessions { store = \"redis\" … } in it first\n", cfg.Filename)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := migrate(ctx, cfg, *from)
	if err != nil {
		fmt.Fprintln(stderr, "ioproxy: migrate:", err)
		return 1
	}
	fmt.Fprintf(stdout, "copied %d sessions (%d were there already) and %d secrets from %s\n", res.Sessions, res.Present, res.Secrets, *from)
	return 0
}

// migrate copies the bbolt file at path into cfg's Redis store.
func migrate(ctx context.Context, cfg *config.Config, path string) (sessions.CopyResult, error) {
	c := cfg.Sessions
	opts := sessions.Options{MaxSessions: c.MaxSessions, MaxPerAccount: c.MaxPerAccount}
	from, err := boltstore.Open(boltstore.Config{Path: path, Options: opts, Keys: c.EncryptionKey})
	if err != nil {
		return sessions.CopyResult{}, err
	}
	defer from.Close()
	to, err := redisstore.Open(ctx, redisstore.Config{URL: c.URL, Prefix: c.KeyPrefix, Keys: c.EncryptionKey, Options: opts})
	if err != nil {
		return sessions.CopyResult{}, err
	}
	defer to.Close()
	return sessions.Copy(ctx, from, to, server.Secrets)
}
