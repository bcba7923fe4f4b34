package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// minMajor is the oldest Redis the scripts run on: they use PEXPIREAT
// with GT and PEXPIRETIME, both new in Redis 7.0 (Valkey has them too).
const minMajor = 7

// checkVersion refuses a server older than Redis 7, whose first failing
// script would otherwise surface at a user's sign-in.
func checkVersion(ctx context.Context, rdb *redis.Client) error {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return storeError("read the server's version", err)
	}
	return versionError(infoField(info, "redis_version"))
}

// versionError says why a server of version v will not do, or is nil.
func versionError(v string) error {
	major, err := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	if err != nil {
		return fmt.Errorf("redis session store: the server reports version %q, which is not a Redis version", v)
	}
	if major < minMajor {
		return fmt.Errorf("redis session store: the server runs Redis %s; ioproxy needs Redis %d.0 or newer (or Valkey 7.2 or newer)", v, minMajor)
	}
	return nil
}

// infoField is the value of one "name:value" line of INFO's answer.
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
