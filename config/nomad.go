package config

import (
	"strings"
	"time"
)

// Defaults of the nomad block.
const (
	DefaultNomadAddress = "http://127.0.0.1:4646"
	DefaultNomadRefresh = 10 * time.Second
)

// nomad builds the nomad block: the API behind "nomad:<service>" backends.
// NOMAD_ADDR and NOMAD_TOKEN fill in what the block leaves out, as they do
// for Nomad's own CLI.
func (b *builder) nomad(raw *nomadSchema) Nomad {
	n := Nomad{Address: DefaultNomadAddress, Refresh: DefaultNomadRefresh, Token: b.env("NOMAD_TOKEN")}
	if addr := b.env("NOMAD_ADDR"); addr != "" {
		n.Address = addr
	}
	if raw == nil {
		return n
	}
	if raw.Address != nil {
		n.Address = strings.TrimSuffix(*raw.Address, "/")
		b.checkServiceURL(raw.AddressRange, "address", n.Address, true, `address = "http://127.0.0.1:4646"`)
	}
	if raw.Token != "" {
		n.Token = raw.Token
	}
	n.Namespace, n.Region = raw.Namespace, raw.Region
	if raw.Refresh != nil {
		n.Refresh = b.duration(raw.RefreshRange, "refresh", *raw.Refresh, time.Second, "30s")
	}
	return n
}
