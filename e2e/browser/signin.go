package browser

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// probeJS inspects the PDS's OAuth pages; see the comment at its top.
//
//go:embed probe.js
var probeJS string

// pageState is what probe.js reports.
type pageState struct {
	URL              string   `json:"url"`
	Origin           string   `json:"origin"`
	Path             string   `json:"path"`
	AuthorizePage    bool     `json:"authorizePage"`
	ErrorData        string   `json:"errorData"`
	View             string   `json:"view"`
	UsernameEditable bool     `json:"usernameEditable"`
	Username         string   `json:"username"`
	PasswordLength   int      `json:"passwordLength"`
	Busy             bool     `json:"busy"`
	Error            string   `json:"error"`
	Accounts         []string `json:"accounts"`
	Text             string   `json:"text"`
}

func (s pageState) describe() string {
	return fmt.Sprintf("page %s (view %q) shows: %q", s.URL, s.View, s.Text)
}

// describe adds the views seen so far to the page description.
func (s *signIn) describe(st pageState) string {
	return fmt.Sprintf("views seen: %s; %s", strings.Join(s.trail, " → "), st.describe())
}

// Selectors of the PDS's OAuth UI, from @atproto/oauth-provider-ui (see
// probe.js). Buttons are found by their text, as a user finds them; the
// "Sign in" button must be clicked because the React form ignores a native
// form.submit().
const (
	selPassword      = `input[name="password"]`
	selUsername      = `input[name="username"]`
	selSignInSubmit  = `//form//button[@type="submit" and normalize-space(.)="Sign in"]`
	selWelcomeSignIn = `//button[@type="button" and normalize-space(.)="Sign in"]`
	selAuthorize     = `//form//button[@type="submit" and normalize-space(.)="Authorize"]`
	selOtherAccount  = `//*[@role="button" and @aria-label="Login to account that is not listed"]`
	selFirstAccount  = `(//*[@role="button" and starts-with(@aria-label, "Sign in as")])[1]`
)

// pollInterval is how often the page is looked at while waiting.
const pollInterval = 100 * time.Millisecond

// retryAfter is how long a click may show no effect before it is repeated:
// a click that lands while React re-renders can be lost.
const retryAfter = 3 * time.Second

// SignInAtPDS signs in on the PDS's OAuth pages in the tab ctx, which must
// be on (or being redirected to) the PDS's /oauth/authorize page, with the
// account that the client named in login_hint: it fills the password,
// clicks "Sign in", then "Authorize" on the consent page when the PDS shows
// one. It returns once the browser has left the PDS (the PDS redirects to
// the client's redirect_uri), without waiting for that page to load.
func (b *Browser) SignInAtPDS(ctx context.Context, password string) error {
	return b.SignInAtPDSAs(ctx, "", password)
}

// SignInAtPDSAs is SignInAtPDS for a flow without login_hint: when the page
// asks for the identifier, it types handle (or picks that account when the
// PDS offers the accounts remembered on this browser).
func (b *Browser) SignInAtPDSAs(ctx context.Context, handle, password string) error {
	if password == "" {
		return errors.New("browser: SignInAtPDS: empty password")
	}
	s := &signIn{b: b, handle: handle, password: password}
	return s.run(ctx)
}

// signIn is one run of the sign-in state machine. It looks at the page,
// does the one thing that page needs, and looks again, so that it follows
// whichever views the PDS chooses (welcome, picker, sign-in, consent) in
// any order, and never acts twice on a page that is still busy.
type signIn struct {
	b        *Browser
	handle   string
	password string

	pdsOrigin string
	// startIndex is the tab's history index when the sign-in began, and
	// prevAuthorize the origin of the entry before it if that entry is an
	// authorize page (see wentStraightBack).
	startIndex    int64
	prevAuthorize string
	last          pageState
	trail         []string  // views seen, for messages
	progress      time.Time // when the view last changed
	lastClick     time.Time
	clicks        map[string]int
}

func (s *signIn) run(ctx context.Context) error {
	begin := time.Now()
	s.progress = begin
	s.clicks = map[string]int{}
	s.startIndex = -1
	if h, err := s.history(ctx); err == nil {
		s.startIndex = h.CurrentIndex
		if i := h.CurrentIndex - 1; i >= 0 && i < int64(len(h.Entries)) {
			s.prevAuthorize = authorizeOrigin(h.Entries[i].URL)
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("browser: sign in at the PDS: %w; %s", err, s.describe(s.last))
		}
		st, err := s.probe(ctx)
		if err != nil {
			// The page is navigating, so there is no document to ask.
			if time.Since(s.progress) > s.b.stepTimeout {
				return fmt.Errorf("browser: sign in at the PDS: read the page: %w; last %s", err, s.describe(s.last))
			}
			_ = sleep(ctx, pollInterval)
			continue
		}
		if st.View != s.last.View || st.URL != s.last.URL || st.Busy != s.last.Busy {
			s.progress = time.Now()
		}
		if st.View != s.last.View {
			s.trail = append(s.trail, st.View)
		}
		s.last = st

		if s.pdsOrigin == "" {
			switch {
			case st.AuthorizePage || st.View == "error":
				s.pdsOrigin = st.Origin
			case s.wentStraightBack(ctx, st, time.Since(begin)):
				s.b.logf("SignInAtPDS: the PDS sent the browser straight back to %s", st.URL)
				return nil
			case time.Since(s.progress) > s.b.stepTimeout:
				return fmt.Errorf("browser: sign in at the PDS: no PDS sign-in page (/oauth/authorize) within %s; %s", s.b.stepTimeout, s.describe(st))
			default:
				_ = sleep(ctx, pollInterval)
				continue
			}
		}
		if st.Origin != s.pdsOrigin {
			// Redirected to the client.
			s.b.logf("SignInAtPDS: views %s; left the PDS for %s", strings.Join(s.trail, " → "), st.URL)
			return nil
		}

		if err := s.step(ctx, st); err != nil {
			return err
		}
		if time.Since(s.progress) > s.b.stepTimeout {
			return fmt.Errorf("browser: sign in at the PDS: stuck for %s; %s", s.b.stepTimeout, s.describe(st))
		}
		_ = sleep(ctx, pollInterval)
	}
}

// straightBackGrace is how long a tab that already left the PDS is watched
// for a new navigation to it before SignInAtPDS concludes that the PDS sent
// the browser straight back.
const straightBackGrace = 2 * time.Second

// wentStraightBack reports whether the PDS's authorize page came and went
// before this code saw it: a PDS that remembers the account and needs no
// consent redirects from its page at once. That shows in the tab's history
// as an /oauth/authorize entry on another origin, either one added since the
// call, or the one just before the page at the time of the call (after a
// grace period, in case a navigation to the PDS is about to start).
func (s *signIn) wentStraightBack(ctx context.Context, st pageState, elapsed time.Duration) bool {
	h, err := s.history(ctx)
	if err != nil || s.startIndex < 0 {
		return false
	}
	for i, e := range h.Entries {
		if int64(i) > s.startIndex && int64(i) < h.CurrentIndex {
			if o := authorizeOrigin(e.URL); o != "" && o != st.Origin {
				return true
			}
		}
	}
	return h.CurrentIndex == s.startIndex && s.prevAuthorize != "" &&
		s.prevAuthorize != st.Origin && elapsed > straightBackGrace
}

func (s *signIn) history(ctx context.Context) (page.GetNavigationHistoryResult, error) {
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(hctx, chromedp.NavigationEntries())
}

// authorizeOrigin returns the origin of an /oauth/authorize URL, or "".
func authorizeOrigin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Path != "/oauth/authorize" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// step acts on one observed page state.
func (s *signIn) step(ctx context.Context, st pageState) error {
	switch st.View {
	case "error":
		return fmt.Errorf("browser: sign in at the PDS: error page %s: %s; text: %q", st.URL, st.ErrorData, st.Text)

	case "welcome":
		return s.click(ctx, "welcome", selWelcomeSignIn)

	case "picker":
		sel := selFirstAccount
		if s.handle != "" {
			sel = selOtherAccount
			for _, a := range st.Accounts {
				if strings.Contains(a, s.handle) {
					sel = fmt.Sprintf(`//*[@role="button" and starts-with(@aria-label, "Sign in as")][contains(normalize-space(.), %q)]`, s.handle)
				}
			}
		}
		return s.click(ctx, "picker", sel)

	case "signin":
		if st.Error != "" && s.clicks["signin"] > 0 && !st.Busy {
			return fmt.Errorf("browser: sign in at the PDS: the PDS refused the sign-in: %q; %s", st.Error, s.describe(st))
		}
		if st.Busy {
			return nil
		}
		if st.UsernameEditable && s.handle == "" && st.Username == "" {
			return fmt.Errorf("browser: sign in at the PDS: the page asks for a handle (the client sent no login_hint); use SignInAtPDSAs; %s", s.describe(st))
		}
		if st.UsernameEditable && s.handle != "" && st.Username != s.handle {
			return s.typeInto(ctx, selUsername, s.handle)
		}
		if st.PasswordLength != len([]rune(s.password)) {
			return s.typeInto(ctx, selPassword, s.password)
		}
		return s.click(ctx, "signin", selSignInSubmit)

	case "consent":
		return s.click(ctx, "consent", selAuthorize)

	case "redirecting":
		return nil
	}
	// Still rendering, or a page this code does not know; wait, and report
	// it if nothing changes.
	return nil
}

// click clicks sel for the view, unless it was clicked within retryAfter
// and the page has not moved on yet.
func (s *signIn) click(ctx context.Context, view, sel string) error {
	if s.clicks[view] > 0 && time.Since(s.lastClick) < retryAfter {
		return nil
	}
	if s.clicks[view] >= 3 {
		return fmt.Errorf("browser: sign in at the PDS: clicked %s three times without effect; %s", sel, s.describe(s.last))
	}
	cctx, cancel := context.WithTimeout(ctx, s.b.stepTimeout)
	defer cancel()
	if err := chromedp.Do(cctx, chromedp.Click(chromedp.Search(sel))); err != nil {
		return fmt.Errorf("browser: sign in at the PDS: click %s: %w; %s", sel, err, s.describe(s.last))
	}
	s.clicks[view]++
	s.lastClick = time.Now()
	return nil
}

// typeInto replaces the value of a React-controlled input by typing, so
// that React sees the input events (setting .value would not reach its
// state).
func (s *signIn) typeInto(ctx context.Context, sel, text string) error {
	cctx, cancel := context.WithTimeout(ctx, s.b.stepTimeout)
	defer cancel()
	selectAll := fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (el) el.select() })()`, sel)
	err := chromedp.Do(cctx,
		chromedp.Evaluate[chromedp.Void](selectAll),
		chromedp.SendKeys(chromedp.CSS(sel), text),
	)
	if err != nil {
		return fmt.Errorf("browser: sign in at the PDS: type into %s: %w; %s", sel, err, s.describe(s.last))
	}
	return nil
}

func (s *signIn) probe(ctx context.Context) (pageState, error) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(pctx, chromedp.Evaluate[pageState](probeJS))
}

// Describe returns the URL and the visible text of the tab ctx, for error
// messages of tests.
func Describe(ctx context.Context) string {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := chromedp.Run(dctx, chromedp.Evaluate[pageState](probeJS))
	if err != nil {
		return fmt.Sprintf("(cannot read the page: %v)", err)
	}
	return fmt.Sprintf("page %s shows: %q", st.URL, st.Text)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
