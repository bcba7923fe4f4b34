package sessions

import (
	"reflect"
	"testing"
	"time"
)

func TestOptionsWithDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Options
		want Options // Now aside
	}{
		{"zero", Options{}, Options{MaxSessions: DefaultMaxSessions, MaxPerAccount: DefaultMaxPerAccount, MaxPending: DefaultMaxPending,
			MaxPendingPerClient: DefaultMaxPendingPerClient, MaxPendingPerIssuer: DefaultMaxPending / 4}},
		{"set", Options{MaxSessions: 5, MaxPerAccount: 2, MaxPending: 3, MaxPendingPerClient: 1, MaxPendingPerIssuer: 7},
			Options{MaxSessions: 5, MaxPerAccount: 2, MaxPending: 3, MaxPendingPerClient: 1, MaxPendingPerIssuer: 7}},
		// An issuer's share follows MaxPending, and is never none.
		{"small MaxPending", Options{MaxPending: 3}, Options{MaxSessions: DefaultMaxSessions, MaxPerAccount: DefaultMaxPerAccount, MaxPending: 3,
			MaxPendingPerClient: DefaultMaxPendingPerClient, MaxPendingPerIssuer: 1}},
		{"negative", Options{MaxSessions: -1, MaxPending: -1, MaxPendingPerIssuer: -1}, Options{MaxSessions: DefaultMaxSessions, MaxPerAccount: DefaultMaxPerAccount,
			MaxPending: DefaultMaxPending, MaxPendingPerClient: DefaultMaxPendingPerClient, MaxPendingPerIssuer: DefaultMaxPending / 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in.WithDefaults()
			if got.Now == nil {
				t.Fatal("no clock")
			}
			got.Now = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("WithDefaults = %+v, want %+v", got, tc.want)
			}
		})
	}
	fixed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := (Options{Now: func() time.Time { return fixed }}).WithDefaults().Now(); !got.Equal(fixed) {
		t.Errorf("WithDefaults replaced the clock: %v", got)
	}
}
