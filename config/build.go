package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// DefaultDataDir is the data_dir of a file that leaves it out.
const DefaultDataDir = "./data"

// builder accumulates diagnostics while turning the schema into a Config.
// Each block has its own method, in the file named after the block.
type builder struct {
	diags hcl.Diagnostics
	opts  Options
	// trustedProxies counts ingress { trusted_proxies }, for host checks.
	trustedProxies int
	// hosts and calls are what Config.Hosts and Config.Calls are made of,
	// each beside the block it came from. Duplicates are left out of both,
	// so an index into Config never names the same block in fileSchema:
	// checks across blocks must take their ranges from here.
	hosts []built[Host, hostSchema]
	calls []built[Call, callSchema]
	// serves are what Config.Serves is made of, built before the hosts
	// that route to them.
	serves []built[Serve, serveSchema]
}

// built is a block turned into what Config holds, beside the block it
// came from.
type built[T, R any] struct {
	value T
	raw   *R
}

// build turns the decoded schema into a Config: the blocks that stand on
// their own first, then serve blocks, hosts (which use tls, and may route
// to a serve block) and calls (which may name a host), then the checks
// across blocks.
func build(raw *fileSchema, opts Options) (*Config, hcl.Diagnostics) {
	b := &builder{opts: opts}
	cfg := &Config{DataDir: b.dataDir(raw)}
	cfg.Ingress = b.ingress(raw.Ingress)
	b.trustedProxies = len(cfg.Ingress.TrustedProxies)
	cfg.Identity = b.identity(raw.Identity)
	cfg.Nomad = b.nomad(raw.Nomad)
	cfg.Admin = b.admin(raw.Admin)
	cfg.Sessions = b.sessions(raw.Sessions)
	cfg.Log = b.log(raw.Log)
	cfg.TLS = b.tls(raw.TLS)
	b.uniqueServes(raw.Serves)
	cfg.Hosts = b.uniqueHosts(raw.Hosts, cfg.TLS)
	b.linkServes()
	cfg.Serves = values(b.serves)
	cfg.Calls = b.uniqueCalls(raw.Calls, cfg)
	b.checkPorts(raw, cfg)
	b.checkLocalClients(cfg)
	b.checkACMEEmail(raw, cfg)
	if b.diags.HasErrors() {
		return nil, b.diags
	}
	return cfg, b.diags
}

// dataDir reads data_dir, the one setting outside any block.
func (b *builder) dataDir(raw *fileSchema) string {
	if raw.DataDir == nil {
		return DefaultDataDir
	}
	if *raw.DataDir == "" {
		b.errorf(raw.DataDirRange, "Empty data_dir", `data_dir holds sessions and keys; write a directory such as data_dir = "./data", or leave it out for that default.`)
	}
	return *raw.DataDir
}

func (b *builder) errorf(rng hcl.Range, summary, detailFormat string, args ...any) {
	b.diagnose(hcl.DiagError, rng, summary, detailFormat, args...)
}

func (b *builder) warnf(rng hcl.Range, summary, detailFormat string, args ...any) {
	b.diagnose(hcl.DiagWarning, rng, summary, detailFormat, args...)
}

func (b *builder) diagnose(severity hcl.DiagnosticSeverity, rng hcl.Range, summary, detailFormat string, args ...any) {
	r := rng
	b.diags = append(b.diags, &hcl.Diagnostic{
		Severity: severity,
		Summary:  summary,
		Detail:   fmt.Sprintf(detailFormat, args...),
		Subject:  &r,
	})
}

// duplicate is the error for a second block of a name: detail formats
// the name and where the first block of that name is.
type duplicate struct{ summary, detail string }

// uniqueBlocks builds each block and keeps the first of each name. build
// returns what a block becomes, its name and where the name is written; a
// later block of a name already defined gets dup's error instead.
func uniqueBlocks[R, T any](b *builder, raws []R, dup duplicate, build func(*R) (T, string, hcl.Range)) []built[T, R] {
	var out []built[T, R]
	first := map[string]hcl.Range{}
	for i := range raws {
		v, name, rng := build(&raws[i])
		if prev, defined := first[name]; defined {
			b.errorf(rng, dup.summary, dup.detail, name, at(prev))
			continue
		}
		first[name] = rng
		out = append(out, built[T, R]{value: v, raw: &raws[i]})
	}
	return out
}

// values are what the blocks were built into, in order.
func values[T, R any](blocks []built[T, R]) []T {
	var out []T
	for _, bl := range blocks {
		out = append(out, bl.value)
	}
	return out
}

// at renders a range as file:line for use inside a message.
func at(r hcl.Range) string { return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line) }

// quoteList renders names for a message: "a", "b", "c".
func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// env reads an environment variable through Options.LookupEnv, as env()
// in the file does.
func (b *builder) env(name string) string {
	v, _ := b.opts.lookupEnv(name)
	return v
}
