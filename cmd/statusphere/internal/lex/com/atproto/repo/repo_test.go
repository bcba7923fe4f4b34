package repo_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/lex/com/atproto/repo"
	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/lex/xyz/statusphere"
	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/xrpc"
)

func TestCalls(t *testing.T) {
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		body, _ = io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/xrpc/" + repo.ListRecordsNSID:
			io.WriteString(w, `{"cursor":"c2","records":[{"uri":"at://did:plc:a/xyz.statusphere.status/3k","cid":"bafy","value":{"$type":"xyz.statusphere.status","status":"👍","createdAt":"2025-01-02T03:04:05Z"}}]}`)
		case "/xrpc/" + repo.CreateRecordNSID:
			io.WriteString(w, `{"uri":"at://did:plc:a/xyz.statusphere.status/3k","cid":"bafy","commit":{"cid":"bafc","rev":"3kabc"}}`)
		case "/xrpc/" + repo.GetRecordNSID:
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"RecordNotFound","message":"Could not locate record"}`)
		case "/xrpc/" + repo.DeleteRecordNSID:
			io.WriteString(w, `{}`)
		}
	}))
	defer srv.Close()
	c, err := xrpc.NewHTTPClient(xrpc.HTTPConfig{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	limit, reverse := int64(10), true
	list, err := repo.ListRecords(ctx, c, repo.ListRecordsParams{Repo: "did:plc:a", Collection: statusphere.StatusNSID, Limit: &limit, Reverse: &reverse})
	if err != nil {
		t.Fatal(err)
	}
	if q := got.URL.Query(); q.Get("repo") != "did:plc:a" || q.Get("collection") != statusphere.StatusNSID || q.Get("limit") != "10" || q.Get("reverse") != "true" || q.Has("cursor") {
		t.Errorf("listRecords query = %v", q)
	}
	if len(list.Records) != 1 || list.Cursor != "c2" {
		t.Fatalf("listRecords = %+v", list)
	}
	rec, err := statusphere.DecodeStatus(list.Records[0].Value)
	if err != nil || rec.Status != "👍" {
		t.Errorf("record value = %+v, %v", rec, err)
	}

	value, _ := json.Marshal(statusphere.Status{Status: "🦋", CreatedAt: "2025-01-02T03:04:05Z"})
	validate := false
	out, err := repo.CreateRecord(ctx, c, repo.CreateRecordInput{Repo: "did:plc:a", Collection: statusphere.StatusNSID, Record: value, Validate: &validate})
	if err != nil {
		t.Fatal(err)
	}
	if out.URI != "at://did:plc:a/xyz.statusphere.status/3k" || out.Commit == nil || out.Commit.Rev != "3kabc" {
		t.Errorf("createRecord = %+v", out)
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(body, &in); err != nil {
		t.Fatal(err)
	}
	if string(in["validate"]) != "false" || string(in["repo"]) != `"did:plc:a"` || in["rkey"] != nil || in["swapCommit"] != nil {
		t.Errorf("createRecord body = %s", body)
	}
	if _, err := statusphere.DecodeStatus(in["record"]); err != nil {
		t.Errorf("record sent: %v", err)
	}

	_, err = repo.GetRecord(ctx, c, repo.GetRecordParams{Repo: "did:plc:a", Collection: statusphere.StatusNSID, Rkey: "3k"})
	if !xrpc.IsError(err, repo.GetRecordErrRecordNotFound) {
		t.Errorf("getRecord err = %v", err)
	}

	if _, err := repo.DeleteRecord(ctx, c, repo.DeleteRecordInput{Repo: "did:plc:a", Collection: statusphere.StatusNSID, Rkey: "3k"}); err != nil {
		t.Errorf("deleteRecord: %v", err)
	}
}
