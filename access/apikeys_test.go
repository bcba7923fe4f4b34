package access

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func bcryptHash(t testing.TB, key string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(key), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func shaHash(key string) string {
	sum := sha1.Sum([]byte(key))
	return "{SHA}" + base64.StdEncoding.EncodeToString(sum[:])
}

func TestParseKeyEntry(t *testing.T) {
	h := bcryptHash(t, "secret", bcrypt.MinCost) // "$2a$04$…"
	body := strings.TrimPrefix(h, "$2a$")
	for _, tt := range []struct {
		line, name string
		kind       HashKind
	}{
		{"ci:" + h, "ci", HashBcrypt},
		{"ci:$2b$" + body, "ci", HashBcrypt},
		{"ci:$2y$" + body, "ci", HashBcrypt},
		{"deploy.bot_1@example-org:" + h, "deploy.bot_1@example-org", HashBcrypt},
		{"old:" + shaHash("secret"), "old", HashSHA1},
		{strings.Repeat("n", 64) + ":" + h, strings.Repeat("n", 64), HashBcrypt},
	} {
		e, err := ParseKeyEntry(tt.line)
		if err != nil {
			t.Errorf("ParseKeyEntry(%q): %v", tt.line, err)
			continue
		}
		if e.Name != tt.name || e.Kind != tt.kind || e.Hash != tt.line[len(tt.name)+1:] {
			t.Errorf("ParseKeyEntry(%q) = %+v", tt.line, e)
		}
	}
	for _, tt := range []struct{ line, want string }{
		{"ci", "is not a \"name:hash\" entry; make one with `htpasswd -nbB name secret`"},
		{"", `is not a "name:hash" entry`},
		{":" + h, `is not a "name:hash" entry`},
		{"ci:", `is not a "name:hash" entry`},
		{"ci:hunter2", "a plain-text secret?); write a bcrypt hash made with `htpasswd -nbB ci secret`"},
		{"ci:secret:with:colons", "plain-text secret"},
		{"ci:$apr1$abcdefgh$0123456789abcdefghijkl", "in a crypt format ioproxy does not read; use bcrypt: `htpasswd -nbB ci secret`"},
		{"ci:$1$abcdefgh$0123456789abcdefghijkl", "crypt format"},
		{"ci:$5$rounds=5000$abc$def", "crypt format"},
		{"ci:$6$abc$def", "crypt format"},
		{"ci:$2y$05$short", "the bcrypt hash of \"ci\" is damaged"},
		{"ci:$2y$05$short", "make it again with `htpasswd -nbB ci secret`"},
		{"ci:$2a$99$" + body[3:], "is damaged"},
		{"ci:{SHA}not-base64!", "is not base64 of a 20-byte SHA-1; make a bcrypt one instead with `htpasswd -nbB ci secret`"},
		{"ci:{SHA}" + base64.StdEncoding.EncodeToString([]byte("short")), "20-byte SHA-1"},
		{"ci:{SSHA}" + base64.StdEncoding.EncodeToString(make([]byte, 24)), "no known hash"},
		{"c i:" + h, "may hold only letters, digits and . _ @ -"},
		{"ci/bot:" + h, "letters, digits"},
		{"ci\t:" + h, "letters, digits"},
		{"é:" + h, "letters, digits"},
		{strings.Repeat("n", 65) + ":" + h, "up to 64 characters"},
		{"Apikey-User\r\nX:" + h, "passed to the backend in a header"},
	} {
		e, err := ParseKeyEntry(tt.line)
		if err == nil {
			t.Errorf("ParseKeyEntry(%q) = %+v, want an error", tt.line, e)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseKeyEntry(%q) error %q does not say %q", tt.line, err, tt.want)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error %q repeats the plain-text secret", err)
		}
	}
	// Long lines are clipped in errors.
	_, err := ParseKeyEntry(strings.Repeat("x", 500))
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("error for a long line: %v", err)
	}
}

func mustEntries(t testing.TB, lines ...string) []KeyEntry {
	t.Helper()
	var es []KeyEntry
	for _, l := range lines {
		e, err := ParseKeyEntry(l)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	return es
}

func TestKeysCheck(t *testing.T) {
	ci := bcryptHash(t, "ci-key", bcrypt.MinCost)
	colon := bcryptHash(t, "with:colon:key", bcrypt.MinCost)
	y := "$2y$" + strings.TrimPrefix(bcryptHash(t, "y-key", bcrypt.MinCost), "$2a$")
	k := NewKeys(mustEntries(t,
		"ci:"+ci,
		"old:"+shaHash("old-key"),
		"colon:"+colon,
		"y:"+y,
	))
	for _, tt := range []struct {
		name, key string
		ok        bool
	}{
		{"ci", "ci-key", true},
		{"ci", "wrong", false},
		{"ci", "", false},
		{"ci", "ci-key ", false},
		{"ci", "CI-KEY", false},
		{"CI", "ci-key", false},
		{"nobody", "ci-key", false},
		{"", "ci-key", false},
		{"old", "old-key", true},
		{"old", "old-key2", false},
		{"old", "", false},
		{"colon", "with:colon:key", true},
		{"colon", "with", false},
		{"y", "y-key", true},
		{"y", "ci-key", false},
		// Again, now that the good keys are remembered.
		{"ci", "ci-key", true},
		{"ci", "wrong", false},
		{"old", "old-key", true},
		{"colon", "with:colon:key", true},
		{"colon", "with", false},
	} {
		err := k.Check(tt.name, tt.key)
		if tt.ok && err != nil {
			t.Errorf("Check(%q, %q) = %v, want nil", tt.name, tt.key, err)
		}
		if !tt.ok && !errors.Is(err, ErrWrongKey) {
			t.Errorf("Check(%q, %q) = %v, want ErrWrongKey", tt.name, tt.key, err)
		}
	}
	names := k.Names()
	if len(names) != 4 {
		t.Errorf("Names() = %v", names)
	}
}

// A key given as "curl -u name:key" reaches Check split at the first
// colon, as net/http's BasicAuth splits it.
func TestKeysCheckBasicAuthSplit(t *testing.T) {
	k := NewKeys(mustEntries(t, "ci:"+bcryptHash(t, "a:b:c", bcrypt.MinCost)))
	name, key, _ := strings.Cut("ci:a:b:c", ":")
	if err := k.Check(name, key); err != nil {
		t.Errorf("Check(%q, %q) = %v", name, key, err)
	}
	if err := k.Check("ci:a", "b:c"); !errors.Is(err, ErrWrongKey) {
		t.Errorf("split at the wrong colon: %v", err)
	}
}

// Remembering a good key must not make other keys good, for the same
// name or another, nor stop the good key from passing.
func TestKeysCheckCache(t *testing.T) {
	k := NewKeys(mustEntries(t,
		"a:"+bcryptHash(t, "key-a", bcrypt.MinCost),
		"b:"+bcryptHash(t, "key-b", bcrypt.MinCost),
		"s:"+shaHash("key-s"),
	))
	steps := []struct {
		name, key string
		ok        bool
	}{
		{"a", "key-a", true},
		{"a", "key-b", false},
		{"a", "key-a\x00", false},
		{"a", "", false},
		{"b", "key-a", false}, // a's good key is not b's
		{"a", "key-a", true},
		{"b", "key-b", true},
		{"a", "key-b", false},
		{"b", "key-a", false},
		{"a", "key-a", true},
		{"s", "key-s", true},
		{"s", "key-a", false},
		{"s", "key-s", true},
		{"nobody", "key-a", false},
		{"", "", false},
	}
	for round := range 3 {
		for _, st := range steps {
			err := k.Check(st.name, st.key)
			if (err == nil) != st.ok {
				t.Errorf("round %d: Check(%q, %q) = %v, want ok=%v", round, st.name, st.key, err, st.ok)
			}
		}
	}
	// The memory holds a keyed hash per name, never a key.
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.good) != 3 {
		t.Errorf("remembered %d names, want 3", len(k.good))
	}
	for name, sum := range k.good {
		if strings.Contains(string(sum), "key-") {
			t.Errorf("the memory of %q holds the key", name)
		}
	}
}

// An unknown name must cost what a wrong key costs, so names cannot be
// found by timing: the decoy is of the entries' kind and cost.
func TestKeysDecoy(t *testing.T) {
	k := NewKeys(mustEntries(t, "a:"+bcryptHash(t, "x", bcrypt.MinCost)))
	if c, err := bcrypt.Cost([]byte(k.decoy.Hash)); k.decoy.Kind != HashBcrypt || err != nil || c != bcrypt.MinCost {
		t.Errorf("decoy of a bcrypt cost-%d host: kind %v cost %d %v", bcrypt.MinCost, k.decoy.Kind, c, err)
	}
	k = NewKeys(mustEntries(t, "old:"+shaHash("x")))
	if k.decoy.Kind != HashSHA1 {
		t.Errorf("decoy of a {SHA}-only host is of kind %v; a wrong name would cost a bcrypt, a wrong key a SHA-1", k.decoy.Kind)
	}
	if err := k.Check("nobody", ""); !errors.Is(err, ErrWrongKey) {
		t.Errorf("unknown name with empty key: %v", err)
	}
	if err := k.Check("", ""); !errors.Is(err, ErrWrongKey) {
		t.Errorf("empty name and key: %v", err)
	}
}

func TestKeysCheckConcurrent(t *testing.T) {
	var lines []string
	for i := range 5 {
		lines = append(lines, fmt.Sprintf("u%d:%s", i, bcryptHash(t, fmt.Sprintf("key-%d", i), bcrypt.MinCost)))
	}
	lines = append(lines, "s:"+shaHash("key-s"))
	k := NewKeys(mustEntries(t, lines...))
	var wg sync.WaitGroup
	errs := make(chan string, 1000)
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 4 {
				n := (g + i) % 5
				name, good := fmt.Sprintf("u%d", n), fmt.Sprintf("key-%d", n)
				if g%10 == 0 {
					name, good = "s", "key-s"
				}
				if err := k.Check(name, good); err != nil {
					errs <- fmt.Sprintf("Check(%s, good) = %v", name, err)
				}
				if err := k.Check(name, good+"x"); !errors.Is(err, ErrWrongKey) {
					errs <- fmt.Sprintf("Check(%s, bad) = %v", name, err)
				}
				if err := k.Check("nobody", good); !errors.Is(err, ErrWrongKey) {
					errs <- fmt.Sprintf("Check(nobody) = %v", err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// BenchmarkKeysCheck measures a good key that was already checked: the
// cached path, one HMAC instead of a bcrypt at the default cost.
func BenchmarkKeysCheck(b *testing.B) {
	k := NewKeys(mustEntries(b, "ci:"+bcryptHash(b, "ci-key", bcrypt.DefaultCost)))
	if err := k.Check("ci", "ci-key"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := k.Check("ci", "ci-key"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeysCheckUncached is the price of a key that is not
// remembered (every wrong key): one bcrypt at the default cost.
func BenchmarkKeysCheckUncached(b *testing.B) {
	k := NewKeys(mustEntries(b, "ci:"+bcryptHash(b, "ci-key", bcrypt.DefaultCost)))
	for b.Loop() {
		if err := k.Check("ci", "wrong"); err == nil {
			b.Fatal("wrong key passed")
		}
	}
}

// CheckLimited spends from its caller's limit before every comparison
// that is not of a remembered good key, and compares nothing once the
// limit refuses.
func TestKeysCheckLimited(t *testing.T) {
	k := NewKeys(mustEntries(t, "ci:"+bcryptHash(t, "ci-key", bcrypt.MinCost), "old:"+shaHash("old-key")))
	spent := 0
	spend := func() bool { spent++; return true }
	refuse := func() bool { spent++; return false }
	for _, st := range []struct {
		name, key string
		spend     func() bool
		want      error
		spent     int
	}{
		{"ci", "wrong", spend, ErrWrongKey, 1},
		{"nobody", "x", spend, ErrWrongKey, 1},
		{"ci", "ci-key", refuse, ErrTooMany, 1}, // refused: not compared, so not remembered
		{"ci", "ci-key", refuse, ErrTooMany, 1},
		{"ci", "ci-key", spend, nil, 1},
		{"ci", "ci-key", refuse, nil, 0}, // remembered: nothing to limit
		{"ci", "wrong", refuse, ErrTooMany, 1},
		{"nobody", "x", refuse, ErrTooMany, 1},
		{"old", "old-key", spend, nil, 1},
		{"old", "old-key", refuse, nil, 0},
		{"ci", "ci-key", nil, nil, 0},
		{"ci", "other", nil, ErrWrongKey, 0},
	} {
		spent = 0
		if err := k.CheckLimited(context.Background(), st.name, st.key, st.spend); err != st.want || spent != st.spent {
			t.Errorf("CheckLimited(%q, %q) = %v with %d spent; want %v with %d", st.name, st.key, err, spent, st.want, st.spent)
		}
	}
}

// Parallel first checks of the same key share one comparison, and spend
// once; different wrong keys each spend.
func TestKeysCheckLimitedParallel(t *testing.T) {
	k := NewKeys(mustEntries(t, "ci:"+bcryptHash(t, "ci-key", bcrypt.MinCost)))
	var mu sync.Mutex
	spent := 0
	spend := func() bool { mu.Lock(); spent++; mu.Unlock(); return true }
	// run checks 50 keys at once; each must give want or, when the
	// comparison queue is full, ErrBusy.
	run := func(key func(i int) string, want error) (busy int) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				err := k.CheckLimited(context.Background(), "ci", key(i), spend)
				if err == ErrBusy {
					mu.Lock()
					busy++
					mu.Unlock()
				} else if err != want {
					t.Errorf("CheckLimited(ci, %q) = %v, want %v", key(i), err, want)
				}
			}()
		}
		close(start)
		wg.Wait()
		return busy
	}
	if busy := run(func(int) string { return "ci-key" }, nil); busy != 0 {
		t.Errorf("one good key checked 50 times at once found the queue full %d times", busy)
	}
	if spent != 1 {
		t.Errorf("50 parallel first checks of one good key spent %d, want 1", spent)
	}
	spent = 0
	if busy := run(func(i int) string { return fmt.Sprint("guess", i) }, ErrWrongKey); busy > 50-k.maxWaiting {
		t.Errorf("50 different wrong keys at once: %d found the queue full, but %d may wait", busy, k.maxWaiting)
	}
	if spent != 50 {
		t.Errorf("50 parallel different wrong keys spent %d, want 50", spent)
	}
	spent = 0
	// One comparison answers them all: the queue is never full.
	if busy := run(func(int) string { return "same-guess" }, ErrWrongKey); busy != 0 {
		t.Errorf("one wrong key checked 50 times at once found the queue full %d times", busy)
	}
	if spent != 50 {
		t.Errorf("50 parallel identical wrong keys spent %d, want 50", spent)
	}
	k.mu.Lock()
	if len(k.flights) != 0 {
		t.Errorf("%d flights left", len(k.flights))
	}
	k.mu.Unlock()
}

// Two entries on one line must not leave the second silently unused:
// bcrypt.Cost reads only the hash's prefix.
func TestParseKeyEntryTrailingText(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("k"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"ci:" + string(h) + " ci2:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "ci:" + string(h) + "x", "ci:" + string(h)[:59]} {
		if _, err := ParseKeyEntry(line); err == nil || !strings.Contains(err.Error(), "not 60") {
			t.Errorf("ParseKeyEntry(%.70q…) = %v, want a length error", line, err)
		}
	}
	if e, err := ParseKeyEntry("ci:" + string(h)); err != nil || e.Cost() != bcrypt.MinCost {
		t.Errorf("a good entry: %+v %v", e, err)
	}
}
