package app

import (
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/cmd/statusphere/store"
)

func TestLineDates(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no time zone data:", err)
	}
	// The morning after the switch to summer time: yesterday lasted 23 hours.
	now := time.Date(2026, 3, 30, 9, 0, 0, 0, paris)
	tests := []struct {
		name      string
		indexed   time.Time
		createdAt string
		today     bool
		when      string
	}{
		{"an hour ago", now.Add(-time.Hour), "", true, ""},
		{"just after midnight", time.Date(2026, 3, 30, 0, 1, 0, 0, paris), "", true, ""},
		{"yesterday across DST", time.Date(2026, 3, 29, 0, 30, 0, 0, paris), "", false, "yesterday"},
		{"two days ago", time.Date(2026, 3, 28, 12, 0, 0, 0, paris), "", false, "on Sat Mar 28 2026"},
		{"createdAt earlier than indexing wins", now, "2026-03-20T10:00:00Z", false, "on Fri Mar 20 2026"},
		{"createdAt in the future is ignored", now.Add(-time.Hour), "2030-01-01T00:00:00Z", true, ""},
		{"unparsable createdAt is ignored", now.Add(-time.Hour), "soon", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := line(store.Status{Status: "👍", CreatedAt: tt.createdAt, IndexedAt: tt.indexed}, "alice.test", now)
			if l.Today != tt.today || l.When != tt.when {
				t.Errorf("today=%v when=%q, want today=%v when=%q", l.Today, l.When, tt.today, tt.when)
			}
			if l.ProfileURL != "https://bsky.app/profile/alice.test" {
				t.Errorf("profile = %q", l.ProfileURL)
			}
		})
	}
}
