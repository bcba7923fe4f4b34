package ingress

import (
	"github.com/ioproxy/ioproxy/internal/httpguard"

	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"strings"
)

//go:embed templates/*.html
var templateFS embed.FS

// pages are ioproxy's own HTML pages: errors, sign-in and sign-out. Their
// text is for people: it says what happened and what to do, never tokens.
var pages = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// errorPage is the data of templates/error.html.
type errorPage struct {
	Status  int
	Title   string
	Message string
	// Retry is a link to try again, such as the sign-in form.
	Retry string
}

// writeError answers with an HTML error page, or JSON for clients that
// ask for it (an app's fetch calls).
func writeError(w http.ResponseWriter, r *http.Request, p errorPage) {
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	httpguard.CloseIfBody(w, r)
	if wantsJSON(r) {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(p.Status)
		_ = json.NewEncoder(w).Encode(struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}{errorCode(p.Status), p.Message})
		return
	}
	render(w, p.Status, "error.html", p)
}

func render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, "ioproxy: cannot render page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func wantsJSON(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

func errorCode(status int) string {
	switch status {
	case http.StatusNotFound:
		return "NotFound"
	case http.StatusBadGateway:
		return "BadGateway"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case http.StatusGatewayTimeout:
		return "GatewayTimeout"
	case http.StatusUnauthorized:
		return "AuthRequired"
	case http.StatusForbidden:
		return "Forbidden"
	case http.StatusBadRequest:
		return "InvalidRequest"
	default:
		return strings.ReplaceAll(http.StatusText(status), " ", "")
	}
}
