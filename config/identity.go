package config

import "strings"

// DefaultPLCURL is the PLC directory of an identity block that names none.
const DefaultPLCURL = "https://plc.directory"

// identity builds the identity block: where handles and DIDs are resolved.
func (b *builder) identity(raw *identitySchema) Identity {
	id := Identity{PLCURL: DefaultPLCURL}
	if raw == nil {
		return id
	}
	id.AllowInsecure = raw.AllowInsecure
	if raw.PLCURL != nil {
		id.PLCURL = strings.TrimSuffix(*raw.PLCURL, "/")
		b.checkServiceURL(raw.PLCURLRange, "plc_url", id.PLCURL, id.AllowInsecure, `plc_url = "https://plc.directory"`)
	}
	if raw.HandleResolver != nil && *raw.HandleResolver != "" {
		id.HandleResolver = strings.TrimSuffix(*raw.HandleResolver, "/")
		b.checkServiceURL(raw.HandleResolverRange, "handle_resolver", id.HandleResolver, id.AllowInsecure, `handle_resolver = "https://bsky.social"`)
	}
	return id
}
