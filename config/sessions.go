package config

// Defaults of the sessions block.
const (
	DefaultMaxSessions   = 100000
	DefaultMaxPerAccount = 10
)

// sessions builds the sessions block: the limits of the session store.
func (b *builder) sessions(raw *sessionsSchema) Sessions {
	s := Sessions{MaxSessions: DefaultMaxSessions, MaxPerAccount: DefaultMaxPerAccount}
	if raw == nil {
		return s
	}
	if raw.MaxSessions != nil {
		s.MaxSessions = b.limit(raw.MaxSessionsRange, "max_sessions", *raw.MaxSessions, DefaultMaxSessions,
			"how many sessions ioproxy stores at once, across all accounts")
		if s.MaxSessions < 1 {
			return s
		}
	}
	if raw.MaxPerAccount == nil {
		// The default per-account limit never exceeds a smaller total
		// that was written: asking for both would be a chore, not a fix.
		s.MaxPerAccount = min(s.MaxPerAccount, s.MaxSessions)
		return s
	}
	s.MaxPerAccount = *raw.MaxPerAccount
	switch {
	case s.MaxPerAccount < 1:
		b.errorf(raw.MaxPerAccountRange, "Invalid max_per_account", "%d is not a limit: max_per_account is how many sessions one account may hold at once (each sign-in from another browser is one). Write a number of at least 1, such as max_per_account = %d.", s.MaxPerAccount, DefaultMaxPerAccount)
	case s.MaxPerAccount > s.MaxSessions:
		b.errorf(raw.MaxPerAccountRange, "max_per_account over max_sessions", "One account may not hold more sessions (%d) than all accounts together (max_sessions = %d); write max_per_account = %d or less, or raise max_sessions.", s.MaxPerAccount, s.MaxSessions, s.MaxSessions)
	}
	return s
}
