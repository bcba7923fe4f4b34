package provider

import (
	"context"
	"errors"
	"testing"
)

// Review 3: what the refresh path takes for "cannot be checked now".

// jwx validates iat first (then exp, nbf, and only then iss and aud), so
// a token whose iat is ahead of our clock is errClock before its
// audience, issuer or subject is looked at: a validly signed token for
// another client, another issuer or another subject, with a future iat,
// is kept as merely "unchecked" instead of ending the session.
func TestReview3RefreshClockHidesOtherChecks(t *testing.T) {
	ctx := context.Background()
	future := func(c map[string]any) {
		c["iat"] = c["iat"].(int64) + 600
		c["exp"] = c["exp"].(int64) + 600
	}
	for name, edit := range map[string]func(map[string]any){
		"other audience, iat ahead": func(c map[string]any) { future(c); c["aud"] = "another-client" },
		"other issuer, iat ahead":   func(c map[string]any) { future(c); c["iss"] = "https://evil.example" },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
			f.set(func(f *fakeIssuer) { f.claims = edit })
			g, err := f.client(t).RefreshSubject(ctx, "rt-old", testSubject)
			if !errors.Is(err, ErrInvalidGrant) {
				t.Fatalf("RefreshSubject: %+v, %v; want ErrInvalidGrant (the token is not for us, whatever its times)", g, err)
			}
		})
	}
	t.Run("other subject, iat ahead", func(t *testing.T) {
		f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
		f.set(func(f *fakeIssuer) { f.claims = func(c map[string]any) { future(c); c["sub"] = "user-2" } })
		g, err := f.client(t).RefreshSubject(ctx, "rt-old", testSubject)
		if !errors.Is(err, ErrSubjectChanged) {
			t.Fatalf("RefreshSubject: %+v, %v; want ErrSubjectChanged (the signature was verified: its sub is known)", g, err)
		}
	})
	t.Run("same account, iat ahead", func(t *testing.T) {
		f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
		f.set(func(f *fakeIssuer) { f.claims = future })
		g, err := f.client(t).RefreshSubject(ctx, "rt-old", testSubject)
		if err != nil || g.Identity.Subject != testSubject || g.IdentityUnchecked {
			t.Fatalf("RefreshSubject: %+v, %v; want the answer with its identity", g, err)
		}
	})
}

// TestRefreshBadSignatureKnownKid: a refresh's ID token under a kid the
// set holds whose signature that key does not verify is a forgery or a
// broken token, not a rotation: the session ends. Found in review: it was
// kept unchecked.
func TestRefreshBadSignatureKnownKid(t *testing.T) {
	ctx := context.Background()
	f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
	// Another private key under the published kid.
	f.set(func(f *fakeIssuer) { f.signer = newTestKey(t, 1, "k1") })
	g, err := f.client(t).RefreshSubject(ctx, "rt-old", testSubject)
	if !errors.Is(err, ErrInvalidGrant) {
		t.Fatalf("RefreshSubject: %+v, %v; want ErrInvalidGrant for a bad signature under a key the set holds", g, err)
	}
}

// TestExchangeRefusesWhatARefreshMayKeep: sign-in refuses every token a
// refresh may keep or take (its times ahead, its key not yet had).
func TestExchangeRefusesWhatARefreshMayKeep(t *testing.T) {
	ctx := context.Background()
	for name, setup := range map[string]func(f *fakeIssuer){
		"iat ahead": func(f *fakeIssuer) {
			f.claims = func(c map[string]any) { c["iat"] = c["iat"].(int64) + 600; c["exp"] = c["exp"].(int64) + 600 }
		},
		"bad signature known kid": func(f *fakeIssuer) { f.signer = newTestKey(t, 1, "k1") },
		"kid-less unknown key":    func(f *fakeIssuer) { f.signer = newTestKey(t, 1, "") },
		"unknown kid":             func(f *fakeIssuer) { f.signer = newTestKey(t, 1, "k9") },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeIssuer(t, newTestKey(t, 0, "k1"))
			f.set(setup)
			g, err := f.client(t).Exchange(ctx, testCode, testVerifier, testNonce)
			if err == nil || g != nil {
				t.Fatalf("Exchange: %+v, %v; want refused", g, err)
			}
		})
	}
}
