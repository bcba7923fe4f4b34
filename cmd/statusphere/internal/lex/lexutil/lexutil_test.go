package lexutil

import (
	"strings"
	"testing"
)

func TestCheckString(t *testing.T) {
	status := StringRules{MinLength: 1, MaxLength: 32, MaxGraphemes: 1}
	tests := []struct {
		name  string
		v     string
		rules StringRules
		want  string // "" for valid, else a substring of the error
	}{
		{"one emoji", "👍", status, ""},
		{"zwj sequence is one grapheme", "👩‍💻", status, ""},
		{"flag is one grapheme", "🇫🇷", status, ""},
		{"skin tone is one grapheme", "👍🏽", status, ""},
		{"two emoji", "👍👎", status, "2 graphemes, want at most 1"},
		{"empty", "", status, "0 bytes, want at least 1"},
		{"one grapheme over 32 bytes", "👨🏻‍👩🏻‍👧🏻‍👦🏻", status, "bytes, want at most 32"},
		{"invalid utf-8", "\xff", status, "not valid UTF-8"},
		{"min graphemes", "a", StringRules{MinGraphemes: 2}, "1 graphemes, want at least 2"},
		{"datetime", "2024-11-06T12:00:00.000Z", StringRules{Format: "datetime"}, ""},
		{"datetime with offset", "2024-11-06T12:00:00+01:00", StringRules{Format: "datetime"}, ""},
		{"datetime without zone", "2024-11-06T12:00:00", StringRules{Format: "datetime"}, "not a valid datetime"},
		{"not a datetime", "yesterday", StringRules{Format: "datetime"}, "not a valid datetime"},
		{"unknown format", "x", StringRules{Format: "uri"}, "unknown string format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckString("status", tt.v, tt.rules)
			if tt.want == "" {
				if err != nil {
					t.Errorf("CheckString(%q) = %v", tt.v, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CheckString(%q) = %v, want %q", tt.v, err, tt.want)
			}
		})
	}
}

func TestRecordKeys(t *testing.T) {
	tests := []struct {
		keyType, rkey string
		ok            bool
	}{
		{"tid", "3n33jai3lbc2t", true},
		{"tid", "3n33jai3lbc2", false},
		{"tid", "self", false},
		{"tid", "3N33JAI3LBC2T", false},
		{"literal:self", "self", true},
		{"literal:self", "other", false},
		{"any", "anything-goes:~._", true},
		{"any", "..", false},
		{"any", "a/b", false},
		{"any", "", false},
		{"bogus", "x", false},
	}
	for _, tt := range tests {
		if err := CheckRecordKey("a.b.c", tt.keyType, tt.rkey); (err == nil) != tt.ok {
			t.Errorf("CheckRecordKey(%q, %q) = %v, want ok=%v", tt.keyType, tt.rkey, err, tt.ok)
		}
	}
}

func TestValidDID(t *testing.T) {
	for s, ok := range map[string]bool{
		"did:plc:ewvi7nxzyoun6zhxrhs64oiz": true, "did:web:example.com": true,
		"did:plc:": false, "plc:abc": false, "did:PLC:abc": false, "": false,
	} {
		if ValidDID(s) != ok {
			t.Errorf("ValidDID(%q) = %v", s, !ok)
		}
	}
}

func TestCheckRecordJSON(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"ok", `{"$type":"a.b.c","x":1}`, ""},
		{"not an object", `[1]`, "not a JSON object"},
		{"null", `null`, "record is null"},
		{"no type", `{"x":1}`, "$type is missing"},
		{"wrong type", `{"$type":"a.b.d","x":1}`, `$type is "a.b.d"`},
		{"missing field", `{"$type":"a.b.c"}`, `required field "x" is missing`},
		{"null field", `{"$type":"a.b.c","x":null}`, `required field "x" is missing`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckRecordJSON([]byte(tt.json), "a.b.c", "x")
			if tt.want == "" {
				if err != nil {
					t.Error(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
