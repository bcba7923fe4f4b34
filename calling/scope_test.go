package calling

import (
	"bytes"
	"compress/gzip"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/ioproxy/ioproxy/internal/textutil"
)

// TestScopeMissingPassedOnAndLogged: the PDS's ScopeMissingError reaches
// the app unchanged, and the log names the call, the account and the
// scope, for the operator to add.
func TestScopeMissingPassedOnAndLogged(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	const refusal = `{"error":"ScopeMissingError","message":"Missing required scope \"blob:application/octet-stream\""}`
	padding := strings.Repeat(" ", maxErrorPeek) // a body longer than what is peeked passes whole
	e.srv.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/xrpc/com.atproto.repo.uploadBlob" {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(refusal + padding))
		return true
	})
	var logs bytes.Buffer
	h, err := New(Config{Call: pdsCall(), Sessions: e.tokens, Identity: e.resolver, PDSClient: e.pdsClient, Nonces: e.nonces,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rec := call(h, "POST", "/xrpc/com.atproto.repo.uploadBlob", `{}`, who(sess))
	if rec.Code != http.StatusForbidden || rec.Body.String() != refusal+padding {
		t.Errorf("the app got %d %.200q; want the PDS's 403 unchanged", rec.Code, rec.Body.String())
	}
	for _, want := range []string{"session lacks a scope", sess.DID, "/xrpc/com.atproto.repo.uploadBlob", textutil.Clip(`Missing required scope \"blob:application/octet-stream\"`, 200)} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %s:\n%s", want, logs.String())
		}
	}
}

// TestScopeMissingGzipLogged: a refusal the PDS compressed (the app asked
// for gzip) passes unchanged and is logged too.
func TestScopeMissingGzipLogged(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	_, _ = zw.Write([]byte(`{"error":"ScopeMissingError","message":"Missing required scope \"blob:image/png\""}`))
	_ = zw.Close()
	e.srv.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/xrpc/com.atproto.repo.uploadBlob" {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write(zipped.Bytes())
		return true
	})
	var logs bytes.Buffer
	h, err := New(Config{Call: pdsCall(), Sessions: e.tokens, Identity: e.resolver, PDSClient: e.pdsClient, Nonces: e.nonces,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rec := call(h, "POST", "/xrpc/com.atproto.repo.uploadBlob", `{}`, who(sess), "Accept-Encoding", "gzip")
	if rec.Code != http.StatusForbidden || !bytes.Equal(rec.Body.Bytes(), zipped.Bytes()) {
		t.Errorf("the app got %d and %d bytes; want the PDS's 403 as it came", rec.Code, rec.Body.Len())
	}
	if !strings.Contains(logs.String(), "blob:image/png") {
		t.Errorf("the compressed refusal was not logged:\n%s", logs.String())
	}
}
