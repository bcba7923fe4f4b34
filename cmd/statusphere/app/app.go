// Package app is the Statusphere web app: the pages, the status form and, beside them, the
// Jetstream ingester. It runs behind ioproxy and has no sign-in code: it learns who is signed in
// from the User-Did and User-Handle headers and writes to the user's repository through
// ioproxy's calling port (ATPROTO_PROXY), copying the Proxy-Session and User-Did headers.
//
// A test (or main) starts it with Run, or with New, Handler and Ingest for finer control.
package app

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ioproxy/ioproxy/cmd/statusphere/handles"
	"github.com/ioproxy/ioproxy/cmd/statusphere/ingest"
	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/lex/com/atproto/repo"
	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/lex/xyz/statusphere"
	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/xrpc"
	"github.com/ioproxy/ioproxy/cmd/statusphere/jetstream"
	"github.com/ioproxy/ioproxy/cmd/statusphere/store"
	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/internal/textutil"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed public
var publicFS embed.FS

// UserAgent is sent to the calling port and to Jetstream.
const UserAgent = "statusphere-ioproxy/1"

// App is a configured Statusphere.
type App struct {
	cfg     Config
	log     *slog.Logger
	store   *store.Store
	calling *xrpc.HTTPClient
	handles *handles.Resolver
	pages   map[string]*template.Template
	handler http.Handler
}

// New opens the database and builds the app; Close releases it.
func New(ctx context.Context, cfg Config) (*App, error) {
	if err := checkProxyURL(cfg.ProxyURL); err != nil {
		return nil, fmt.Errorf("statusphere: %w", err)
	}
	if cfg.JetstreamURL != "" {
		if u, err := url.Parse(cfg.JetstreamURL); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return nil, fmt.Errorf("statusphere: Jetstream URL %q: want ws:// or wss:// with a host, e.g. %s", cfg.JetstreamURL, jetstream.DefaultURL)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StatusLimit <= 0 {
		cfg.StatusLimit = 10
	}
	if cfg.HandleWait <= 0 {
		cfg.HandleWait = 2 * time.Second
	}
	calling, err := xrpc.NewHTTPClient(xrpc.HTTPConfig{Host: cfg.ProxyURL, HTTPClient: cfg.HTTPClient, UserAgent: UserAgent})
	if err != nil {
		return nil, fmt.Errorf("statusphere: calling port: %w", err)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, fmt.Errorf("statusphere: %w", err)
	}
	st, err := store.Open(ctx, cfg.DBPath)
	if err != nil {
		return nil, fmt.Errorf("statusphere: %w", err)
	}
	a := &App{
		cfg:     cfg,
		log:     cfg.Logger,
		store:   st,
		calling: calling,
		handles: handles.New(handles.Config{Calling: calling, Logger: cfg.Logger, Now: cfg.Now}),
		pages:   pages,
	}
	a.handler = a.routes()
	return a, nil
}

// Close closes the database.
func (a *App) Close() error { return a.store.Close() }

// Store gives tests access to the database.
func (a *App) Store() *store.Store { return a.store }

// Handler serves the app's pages.
func (a *App) Handler() http.Handler { return a.handler }

// Ingest runs the Jetstream ingester until ctx ends. It returns at once when no JetstreamURL is
// configured.
func (a *App) Ingest(ctx context.Context) error {
	if a.cfg.JetstreamURL == "" {
		a.log.Info("no Jetstream URL: statuses come only from this app's writes")
		return nil
	}
	sub, err := jetstream.New(jetstream.Config{
		URL:          a.cfg.JetstreamURL,
		Collections:  []string{statusphere.StatusNSID},
		Handler:      ingest.New(ingest.Config{Store: a.store, Logger: a.log, Now: a.cfg.Now}),
		Cursors:      a.store,
		ResumeMargin: a.cfg.JetstreamResumeMargin,
		MinBackoff:   a.cfg.JetstreamMinBackoff,
		MaxBackoff:   a.cfg.JetstreamMaxBackoff,
		UserAgent:    UserAgent,
		Logger:       a.log,
	})
	if err != nil {
		return fmt.Errorf("statusphere: %w", err)
	}
	return sub.Run(ctx)
}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range []string{"home", "login", "notfound"} {
		t, err := template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.home)
	mux.HandleFunc("GET /login", a.login)
	mux.HandleFunc("POST /status", a.setStatus)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /healthz", a.health)
	files := http.FileServerFS(publicFS) // "/public/styles.css" is public/styles.css in the FS
	mux.Handle("GET /public/", cacheFor(time.Hour, files))
	mux.HandleFunc("GET /", a.notFound)

	// Forms only post same-origin: a cross-site form must not set someone's status.
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.render(w, r, http.StatusForbidden, "notfound", page{Title: "Forbidden",
			Error: "This form was sent from another site, so it was refused."})
	}))
	return a.logRequests(securityHeaders(csrf.Handler(mux)))
}

// cacheFor serves static files with a Cache-Control header, and no directory listings.
func cacheFor(d time.Duration, h http.Handler) http.Handler {
	v := fmt.Sprintf("public, max-age=%d", int(d.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", v)
		h.ServeHTTP(w, r)
	})
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (a *App) logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		a.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.code,
			"did", r.Header.Get(contract.UserDID), "duration", time.Since(start))
	})
}

// page is what every template gets.
type page struct {
	Title string
	Error string
	// home
	User     string
	Options  []option
	Statuses []statusLine
}

type option struct {
	Emoji    string
	Selected bool
}

type statusLine struct {
	Status     string
	Author     string // handle, or the DID when it cannot be resolved
	ProfileURL string
	Today      bool
	When       string // "yesterday" or "on Mon Jan 02 2006"
	Datetime   string // for <time datetime>
}

// render executes a page into a buffer first, so that a template failure becomes a clean 500.
func (a *App) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	var buf bytes.Buffer
	if err := a.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		a.log.Error("render page", "page", name, "err", err)
		http.Error(w, "Internal error: the page could not be rendered.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

func (a *App) home(w http.ResponseWriter, r *http.Request) {
	a.renderHome(w, r, http.StatusOK, "")
}

// renderHome shows the latest statuses, the signed-in user's greeting and current status, and
// the picker; errMsg, when set, shows in the error banner.
func (a *App) renderHome(w http.ResponseWriter, r *http.Request, code int, errMsg string) {
	ctx := r.Context()
	id := xrpc.IdentityFrom(r)
	statuses, err := a.store.LatestStatuses(ctx, a.cfg.StatusLimit)
	if err != nil {
		a.log.Error("load statuses", "err", err)
		code, errMsg = http.StatusInternalServerError, "The statuses could not be loaded. Try again in a moment."
	}
	p := page{Title: "Home", Error: errMsg}

	var mine string
	if id.SignedIn() {
		a.handles.Remember(id.DID, id.Handle)
		p.User = "friend"
		if id.Handle != "" {
			p.User = "@" + id.Handle
		}
		if st, ok, err := a.store.LatestStatusBy(ctx, id.DID); err != nil {
			a.log.Error("load the user's status", "did", id.DID, "err", err)
		} else if ok {
			mine = st.Status
		}
	}
	for _, e := range statusOptions {
		p.Options = append(p.Options, option{Emoji: e, Selected: e == mine})
	}

	var dids []string
	for _, st := range statuses {
		dids = append(dids, st.AuthorDID)
	}
	hctx, cancel := context.WithTimeout(ctx, a.cfg.HandleWait)
	names := a.handles.Handles(hctx, dids)
	cancel()

	now := a.cfg.Now()
	for _, st := range statuses {
		author := names[st.AuthorDID]
		if author == "" {
			author = st.AuthorDID
		}
		p.Statuses = append(p.Statuses, line(st, author, now))
	}
	a.render(w, r, code, "home", p)
}

// line describes a status relative to now: "today", "yesterday", or its date, taking the
// earlier of its createdAt and when it was indexed (a client's clock may run ahead).
func line(st store.Status, author string, now time.Time) statusLine {
	t := st.IndexedAt
	if c, err := time.Parse(time.RFC3339Nano, st.CreatedAt); err == nil && c.Before(t) {
		t = c
	}
	t = t.In(now.Location())
	l := statusLine{
		Status:     st.Status,
		Author:     author,
		ProfileURL: "https://bsky.app/profile/" + url.PathEscape(author),
		Datetime:   t.Format(time.RFC3339),
	}
	day := func(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location()) }
	// Rounded to whole days, as a day across a DST change lasts 23 or 25 hours.
	switch day(now).Sub(day(t)).Round(24*time.Hour) / (24 * time.Hour) {
	case 0:
		l.Today = true
	case 1:
		l.When = "yesterday"
	default:
		l.When = "on " + t.Format("Mon Jan 02 2006")
	}
	return l
}

func (a *App) login(w http.ResponseWriter, r *http.Request) {
	// No ?error= is shown here: text from the URL on the page would let
	// anyone put words in the app's mouth. ioproxy shows its own errors.
	a.render(w, r, http.StatusOK, "login", page{Title: "Log in"})
}

func (a *App) notFound(w http.ResponseWriter, r *http.Request) {
	a.render(w, r, http.StatusNotFound, "notfound", page{Title: "Not found"})
}

func (a *App) health(w http.ResponseWriter, r *http.Request) {
	if err := a.store.Ping(r.Context()); err != nil {
		http.Error(w, "database unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// setStatus writes an xyz.statusphere.status record to the user's repository through the
// calling port, stores it at once (as the original does, so the page shows it before Jetstream
// echoes it back) and goes back to the home page.
func (a *App) setStatus(w http.ResponseWriter, r *http.Request) {
	id := xrpc.IdentityFrom(r)
	if !id.SignedIn() || id.Session == "" {
		a.renderHome(w, r, http.StatusUnauthorized, "Log in to set your status.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		a.renderHome(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	now := a.cfg.Now()
	rec := statusphere.Status{
		Status:    r.PostForm.Get("status"),
		CreatedAt: now.UTC().Format("2006-01-02T15:04:05.000Z"),
	}
	if err := rec.Validate(); err != nil {
		a.renderHome(w, r, http.StatusBadRequest, "That is not a valid status: pick one emoji.")
		return
	}
	value, err := json.Marshal(rec)
	if err != nil {
		a.log.Error("encode status record", "err", err)
		a.renderHome(w, r, http.StatusInternalServerError, "Your status could not be saved.")
		return
	}
	// validate=false: the PDS does not know this Lexicon; the record was checked above.
	validate := false
	out, err := repo.CreateRecord(r.Context(), xrpc.ProxyClientFor(a.calling, r), repo.CreateRecordInput{
		Repo:       id.DID,
		Collection: statusphere.StatusNSID,
		Record:     value,
		Validate:   &validate,
	})
	if err != nil {
		a.log.Warn("write status record", "did", id.DID, "err", err)
		code, msg := writeFailure(err)
		a.renderHome(w, r, code, msg)
		return
	}

	// The URI is the key that makes the Jetstream echo of this record a no-op; store it only
	// when it is the canonical at://<did>/<collection>/<rkey>, or the echo would duplicate it.
	prefix := "at://" + id.DID + "/" + statusphere.StatusNSID + "/"
	if rkey, ok := strings.CutPrefix(out.URI, prefix); !ok || statusphere.ValidateStatusKey(rkey) != nil {
		a.log.Warn("createRecord returned an unexpected URI; waiting for Jetstream instead", "uri", out.URI, "did", id.DID)
	} else if err := a.store.PutStatus(r.Context(), store.Status{
		URI: out.URI, AuthorDID: id.DID, Status: rec.Status, CreatedAt: rec.CreatedAt, IndexedAt: now,
	}); err != nil {
		// Not fatal: the record is in the repository and Jetstream will bring it.
		a.log.Warn("store own status", "uri", out.URI, "err", err)
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// writeFailure turns a failed createRecord into a status code and a message for the page.
func writeFailure(err error) (int, string) {
	var xe *xrpc.Error
	if !errors.As(err, &xe) {
		return http.StatusBadGateway, "Your status could not be saved: the server could not be reached. Try again in a moment."
	}
	switch xe.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return http.StatusUnauthorized, "Your session has expired. Log in again to set your status."
	}
	msg := "Your status could not be saved: " + xe.Name
	if xe.Message != "" {
		msg += ": " + xe.Message
	}
	return http.StatusBadGateway, textutil.Clip(msg, 300)
}
