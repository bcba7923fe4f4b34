package httpx

// IsHopByHop reports whether a canonical header name is one of the
// headers that belong to one connection (RFC 9110 7.6.1, and RFC 2616's
// older list that httputil.ReverseProxy also removes): a proxy drops
// them, and a configured header may not be one of them. A switch, not a
// map or a slice: nothing can change it, and the ingress hot path pays
// no lookup.
func IsHopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}
