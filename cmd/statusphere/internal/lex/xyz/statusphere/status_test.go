package statusphere_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/lex/xyz/statusphere"
)

func TestDecodeStatus(t *testing.T) {
	tests := []struct {
		name, json, want string // want: "" when valid, else part of the error
	}{
		{"valid", `{"$type":"xyz.statusphere.status","status":"👍","createdAt":"2025-01-02T03:04:05.678Z"}`, ""},
		{"zwj emoji", `{"$type":"xyz.statusphere.status","status":"🧑‍💻","createdAt":"2025-01-02T03:04:05Z"}`, ""},
		{"extra fields are allowed", `{"$type":"xyz.statusphere.status","status":"🦋","createdAt":"2025-01-02T03:04:05Z","mood":"fine"}`, ""},
		{"two graphemes", `{"$type":"xyz.statusphere.status","status":"👍👍","createdAt":"2025-01-02T03:04:05Z"}`, "graphemes"},
		{"too long", `{"$type":"xyz.statusphere.status","status":"👨🏻‍👩🏻‍👧🏻‍👦🏻","createdAt":"2025-01-02T03:04:05Z"}`, "at most 32"},
		{"empty status", `{"$type":"xyz.statusphere.status","status":"","createdAt":"2025-01-02T03:04:05Z"}`, "at least 1"},
		{"missing status", `{"$type":"xyz.statusphere.status","createdAt":"2025-01-02T03:04:05Z"}`, `"status" is missing`},
		{"status not a string", `{"$type":"xyz.statusphere.status","status":1,"createdAt":"2025-01-02T03:04:05Z"}`, "cannot unmarshal"},
		{"bad createdAt", `{"$type":"xyz.statusphere.status","status":"👍","createdAt":"now"}`, "not a valid datetime"},
		{"wrong type", `{"$type":"app.bsky.feed.post","status":"👍","createdAt":"2025-01-02T03:04:05Z"}`, "$type"},
		{"no type", `{"status":"👍","createdAt":"2025-01-02T03:04:05Z"}`, "$type is missing"},
		{"one-digit hour", `{"$type":"xyz.statusphere.status","status":"👍","createdAt":"2025-01-02T3:04:05Z"}`, "not a valid datetime"},
		{"-00:00 offset", `{"$type":"xyz.statusphere.status","status":"👍","createdAt":"2025-01-02T03:04:05-00:00"}`, "not a valid datetime"},
		{"only a case twin of status", `{"$type":"xyz.statusphere.status","Status":"👍","createdAt":"2025-01-02T03:04:05Z"}`, `"status" is missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := statusphere.DecodeStatus([]byte(tt.json))
			if tt.want == "" {
				if err != nil || rec == nil {
					t.Fatalf("DecodeStatus = %v, %v", rec, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestDecodeStatusReadsExactKeys: encoding/json matches keys regardless
// of case, the last one winning; other apps read the exact key.
func TestDecodeStatusReadsExactKeys(t *testing.T) {
	rec, err := statusphere.DecodeStatus([]byte(`{"$type":"xyz.statusphere.status","status":"x","Status":"y","STATUS":"z","createdAt":"2025-01-02T03:04:05Z","CreatedAt":"now"}`))
	if err != nil || rec.Status != "x" || rec.CreatedAt != "2025-01-02T03:04:05Z" {
		t.Errorf("DecodeStatus = %+v, %v; want status x as other apps read it", rec, err)
	}
}

func TestStatusMarshalsType(t *testing.T) {
	b, err := json.Marshal(statusphere.Status{Status: "👍", CreatedAt: "2025-01-02T03:04:05Z"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"$type":"xyz.statusphere.status","status":"👍","createdAt":"2025-01-02T03:04:05Z"}`
	if string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	if _, err := statusphere.DecodeStatus(b); err != nil {
		t.Errorf("round trip: %v", err)
	}
}

func TestValidateStatusKey(t *testing.T) {
	if err := statusphere.ValidateStatusKey("3n33jai3lbc2t"); err != nil {
		t.Error(err)
	}
	if err := statusphere.ValidateStatusKey("self"); err == nil {
		t.Error(`"self" accepted as a TID`)
	}
}
