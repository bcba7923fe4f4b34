package e2e

import (
	"encoding/json"
	"net/url"
	"testing"
)

// pdsRecord is a record as the PDS lists it.
type pdsRecord struct {
	URI   string          `json:"uri"`
	Value json.RawMessage `json:"value"`
}

// listStatuses reads an account's Statusphere statuses from the PDS
// itself, not through ioproxy.
func listStatuses(t *testing.T, pdsURL, did string) []pdsRecord {
	t.Helper()
	var out struct {
		Records []pdsRecord `json:"records"`
	}
	q := url.Values{"repo": {did}, "collection": {statusNSID}}
	if code := getJSON(t, pdsURL+"/xrpc/com.atproto.repo.listRecords?"+q.Encode(), &out); code != 200 {
		t.Fatalf("listRecords on the PDS: status %d", code)
	}
	return out.Records
}
