package contract

import (
	"net/http"
	"testing"
)

func TestIsIdentity(t *testing.T) {
	for name, want := range map[string]bool{
		"User-Did": true, "user-did": true, "USER-DID": true, "User_Did": true, "user_did": true,
		"User-Handle": true, "user_handle": true, "Proxy-Session": true, "PROXY_SESSION": true,
		"Apikey-User": true, "apikey_user": true,
		"Proxy-Provider": true, "proxy_provider": true, "User-Email": true, "USER_EMAIL": true, "User-Subject": true, "user_subject": true,
		"Proxy-Providers": false, "User-Emails": false,
		"User-Didx": false, "X-User-Did": false, "User": false, "Proxy-Sessions": false, "": false,
		"User--Did": false, "UserDid": false,
	} {
		if got := IsIdentity(name); got != want {
			t.Errorf("IsIdentity(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestStripIdentity(t *testing.T) {
	h := http.Header{"User-Did": {"a"}, "User_did": {"b"}, "Proxy-Session": {"c"}, "Apikey_user": {"d"}, "Accept": {"*/*"}}
	StripIdentity(h)
	if len(h) != 1 || h.Get("Accept") != "*/*" {
		t.Errorf("after StripIdentity: %v", h)
	}
}

// TestStripProxySession: every spelling of Proxy-Session goes, and the
// rest of the contract (which a service of the app's own may read) stays.
func TestStripProxySession(t *testing.T) {
	h := http.Header{"Proxy-Session": {"a"}, "Proxy_session": {"b"}, "PROXY_SESSION": {"c"},
		"User-Did": {"d"}, "Proxy-Provider": {"e"}, "Proxy-Sessions": {"f"}}
	StripProxySession(h)
	if len(h) != 3 || h["User-Did"] == nil || h["Proxy-Provider"] == nil || h["Proxy-Sessions"] == nil {
		t.Errorf("after StripProxySession: %v", h)
	}
}
