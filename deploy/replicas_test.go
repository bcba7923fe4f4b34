package deploy

import (
	"bufio"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/ioproxy/ioproxy/config"
)

// What the replicas' configuration is given in these tests: a valid key
// (32 bytes in base64), the URL the job's template renders for a Redis
// instance at 10.0.0.7:6379, and the range of the load balancer.
const (
	testSessionKey     = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	testNewSessionKey  = "Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA="
	testRedisURL       = "redis://10.0.0.7:6379/0"
	testTrustedProxies = "10.0.0.0/16"
)

const (
	replicasJob    = "deploy/nomad/ioproxy-replicas.nomad.hcl"
	redisJob       = "deploy/nomad/redis.nomad.hcl"
	replicasConfig = "deploy/ioproxy-replicas.hcl"
)

// nodeEnv is what Nomad gives the job's env block on the node 10.0.0.5,
// and what nomad job run -var sets.
var nodeEnv = map[string]string{
	"NOMAD_IP_calling":               "10.0.0.5",
	"NOMAD_ADDR_admin":               "10.0.0.5:9901",
	"attr.unique.network.ip-address": "10.0.0.5",
	"var.trusted_proxies":            testTrustedProxies,
}

// TestReplicasJob checks the Nomad job of several replicas: three of them,
// on three nodes, replaced one at a time once ready, and each given by
// its templates what its configuration needs to share a Redis store.
func TestReplicasJob(t *testing.T) {
	base := root(t)
	jf := parseJob(t, filepath.Join(base, replicasJob))
	const group = "ioproxy"

	if got := jf.counts[group]; got != 3 {
		t.Errorf("group %q: count = %d, want 3", group, got)
	}
	if !slices.ContainsFunc(jf.constraints[group], func(c map[string]string) bool {
		v, ok := c["value"]
		return c["operator"] == "distinct_hosts" && (!ok || v == "true")
	}) {
		t.Errorf("constraints %v; want distinct_hosts, so that one node down takes one replica with it (and the static ports do not clash)", jf.constraints[group])
	}
	checkUpdate(t, jf.updates[group])

	// Nomad's deployment waits for the readiness check on the admin port,
	// which ioproxy turns unready while Redis does not answer.
	if p := jf.servicePorts["ioproxy"]; p != "admin" {
		t.Errorf("service ioproxy is on port %q, want admin (where /readyz is)", p)
	}
	if !slices.ContainsFunc(jf.checks["ioproxy"], func(c map[string]string) bool {
		return c["type"] == "http" && c["path"] == "/readyz"
	}) {
		t.Errorf("checks of service ioproxy %v; want an http check of /readyz", jf.checks["ioproxy"])
	}

	// The same image as the single-instance job.
	single := parseJob(t, filepath.Join(base, "deploy/nomad/ioproxy.nomad.hcl"))
	if jf.variables["image"] == "" || jf.variables["image"] != single.variables["image"] || !slices.Equal(jf.images, []string{"var.image"}) {
		t.Errorf("image %q (default %q); want var.image, defaulting to %q as in ioproxy.nomad.hcl", jf.images, jf.variables["image"], single.variables["image"])
	}

	rendered := renderEnvTemplates(t, jf)
	if got := rendered["IOPROXY_REDIS_URL"]; got != testRedisURL {
		t.Errorf("IOPROXY_REDIS_URL renders as %q, want %q", got, testRedisURL)
	}
	if got := rendered["IOPROXY_SESSION_KEY"]; got != testSessionKey {
		t.Errorf("IOPROXY_SESSION_KEY renders as %q, want the Nomad variable's session_key", got)
	}

	// The configuration, with the environment the task gets.
	cfgFile := checkConfigTemplate(t, base, replicasJob, jf)
	if cfgFile != replicasConfig {
		t.Fatalf("variable config_file = %q, want %s", cfgFile, replicasConfig)
	}
	src, err := os.ReadFile(filepath.Join(base, cfgFile))
	if err != nil {
		t.Fatal(err)
	}
	env := taskEnv(t, jf, rendered)
	checkEnvNames(t, src, env)

	cfg, diags := config.Parse(src, cfgFile, config.Options{LookupEnv: envOf(env)})
	if diags.HasErrors() {
		t.Fatalf("%s under the job's environment: %s", cfgFile, diags.Error())
	}
	checkReplicasConfig(t, cfg, jf)

	// Without the url or the key the configuration does not load, so a
	// replica whose template rendered nothing never starts on a store of
	// its own, or unsealed.
	for _, name := range []string{"IOPROXY_REDIS_URL", "IOPROXY_SESSION_KEY"} {
		for _, value := range []string{"", "unset"} {
			e := maps.Clone(env)
			if value == "unset" {
				delete(e, name)
			} else {
				e[name] = value
			}
			if _, diags := config.Parse(src, cfgFile, config.Options{LookupEnv: envOf(e)}); !diags.HasErrors() {
				t.Errorf("%s loads with %s %s; want an error", cfgFile, name, value)
			}
		}
	}
}

// checkUpdate requires a rolling update: one replica at a time, healthy
// by its checks, rolled back when it never gets there.
func checkUpdate(t *testing.T, u map[string]cty.Value) {
	t.Helper()
	want := map[string]cty.Value{
		"max_parallel": cty.NumberIntVal(1),
		"health_check": cty.StringVal("checks"),
		"auto_revert":  cty.True,
	}
	for name, w := range want {
		got, ok := u[name]
		if !ok || got.Type() != w.Type() || !got.Equals(w).True() {
			t.Errorf("update %s = %#v, want %#v", name, got, w)
		}
	}
}

// renderEnvTemplates renders the task's env = true templates as Nomad
// would, with a Redis instance at 10.0.0.7:6379 and the Nomad variable
// holding testSessionKey, and returns the variables they set. It also
// checks that the templates ask for what exists: the service the Redis
// job registers, and the variable path a job may read without a policy.
func renderEnvTemplates(t *testing.T, jf *jobFile) map[string]string {
	t.Helper()
	redis := parseJob(t, filepath.Join(root(t), redisJob))
	type instance struct {
		Address string
		Port    int
	}
	funcs := template.FuncMap{
		"nomadService": func(name string) []instance {
			if !slices.Contains(redis.services, name) {
				t.Errorf("a template looks up the service %q; %s registers %q", name, redisJob, redis.services)
			}
			return []instance{{Address: "10.0.0.7", Port: 6379}}
		},
		"nomadVar": func(path string) map[string]string {
			if want := "nomad/jobs/" + jf.jobs[0]; path != want {
				t.Errorf("a template reads the variable %q; the job's workload identity reads %s (and below) without a policy", path, want)
			}
			return map[string]string{"session_key": testSessionKey}
		},
	}
	out := map[string]string{}
	n := 0
	for _, tpl := range jf.templates {
		if !tpl.env {
			continue
		}
		n++
		if tpl.changeMode != "noop" {
			t.Errorf("template %s: change_mode = %q, want \"noop\": a change (Redis restarting, a variable written) would restart every replica at once, not one at a time", tpl.dest, tpl.changeMode)
		}
		tmpl, err := template.New(tpl.dest).Funcs(funcs).Option("missingkey=error").Parse(tpl.data)
		if err != nil {
			t.Errorf("template %s: %v", tpl.dest, err)
			continue
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, nil); err != nil {
			t.Errorf("template %s: %v", tpl.dest, err)
			continue
		}
		vars := parseEnvFile(t, tpl.dest, b.String())
		if _, ok := vars["IOPROXY_SESSION_KEY"]; ok && !strings.HasPrefix(tpl.dest, "secrets/") {
			t.Errorf("template %s renders the session key; put it under secrets/, which other tasks cannot read", tpl.dest)
		}
		for k, v := range vars {
			out[k] = v
		}
	}
	if n == 0 {
		t.Error("no template with env = true")
	}
	return out
}

// parseEnvFile reads the KEY=VALUE lines of a rendered env template.
func parseEnvFile(t *testing.T, name, s string) map[string]string {
	t.Helper()
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			t.Errorf("%s renders %q, not KEY=VALUE", name, line)
			continue
		}
		out[k] = v
	}
	return out
}

// taskEnv is the environment of the task on the node of nodeEnv: its env
// block, its env templates, and NOMAD_TOKEN from its identity.
func taskEnv(t *testing.T, jf *jobFile, rendered map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{}
	ctx := runtimeContext(nodeEnv)
	for name, expr := range jf.envExprs {
		v, diags := expr.Value(ctx)
		if diags.HasErrors() {
			t.Errorf("env %s: %s", name, diags.Error())
			continue
		}
		env[name] = v.AsString()
	}
	for k, v := range rendered {
		if _, dup := env[k]; dup {
			t.Errorf("%s is set by the env block and by a template", k)
		}
		env[k] = v
	}
	if jf.identityEnv {
		env["NOMAD_TOKEN"] = "eyJ.workload.identity"
	}
	return env
}

// checkEnvNames requires every env("NAME") the configuration reads without
// a default to be set by the job, and every IOPROXY_ variable the job
// sets to be read: a name spelt differently in the two files is caught
// here rather than by a replica that will not start.
func checkEnvNames(t *testing.T, src []byte, env map[string]string) {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCL(src, replicasConfig)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	read := map[string]bool{} // name: has a default
	hclsyntax.VisitAll(f.Body.(*hclsyntax.Body), func(n hclsyntax.Node) hcl.Diagnostics {
		call, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok || call.Name != "env" || len(call.Args) == 0 {
			return nil
		}
		v, diags := call.Args[0].Value(nil)
		if diags.HasErrors() || v.Type() != cty.String {
			t.Errorf("%s: env() of something other than a name", call.Range())
			return nil
		}
		read[v.AsString()] = read[v.AsString()] || len(call.Args) > 1
		return nil
	})
	for name, hasDefault := range read {
		if _, ok := env[name]; !ok && !hasDefault {
			t.Errorf("%s reads env(%q), which has no default, and the job does not set it", replicasConfig, name)
		}
	}
	for name := range env {
		if _, ok := read[name]; !ok && strings.HasPrefix(name, "IOPROXY_") {
			t.Errorf("the job sets %s, which %s never reads", name, replicasConfig)
		}
	}
}

// checkReplicasConfig checks what several replicas need of their
// configuration, and that it agrees with the job.
func checkReplicasConfig(t *testing.T, cfg *config.Config, jf *jobFile) {
	t.Helper()
	s := cfg.Sessions
	if s.Store != config.StoreRedis || s.URL != testRedisURL || s.KeyPrefix == "" {
		t.Errorf("sessions = store %q, url %q, key_prefix %q; want the Redis store at %s", s.Store, s.URL, s.KeyPrefix, testRedisURL)
	}
	if s.EncryptionKey == nil || s.EncryptionKey.Len() != 1 {
		t.Errorf("encryption_key = %v, want the one key from IOPROXY_SESSION_KEY", s.EncryptionKey)
	}

	// This job ends TLS at the load balancer (ACME shared in Redis is the
	// other way, deploy/README): no host may ask for ACME here.
	off := false
	for _, h := range cfg.Hosts {
		switch h.TLS.Mode {
		case config.TLSACME:
			t.Errorf("host %s uses ACME; with replicas, end TLS at the load balancer (mode = \"off\") or give every replica the same certificate files", h.Hostname)
		case config.TLSOff:
			off = true
		}
	}
	lb := netip.MustParsePrefix(testTrustedProxies)
	if off && !slices.Contains(cfg.Ingress.TrustedProxies, lb) {
		t.Errorf("trusted_proxies = %v; want the load balancer's %s, whose X-Forwarded-Proto makes cookies Secure", cfg.Ingress.TrustedProxies, lb)
	}
	if _, https := jf.ports["https"]; cfg.ServesHTTPS() != https {
		t.Errorf("ioproxy serves HTTPS: %v; the job reserves port 443: %v", cfg.ServesHTTPS(), https)
	}
	if _, port, _ := net.SplitHostPort(cfg.Ingress.HTTPAddr); port != strconv.Itoa(jf.ports["http"]) {
		t.Errorf("ingress http listens on %s; the job reserves port %d", cfg.Ingress.HTTPAddr, jf.ports["http"])
	}
	if want := net.JoinHostPort(nodeEnv["NOMAD_IP_calling"], strconv.Itoa(jf.ports["admin"])); cfg.Admin.Listen != want {
		t.Errorf("admin listens on %s, want %s (the job's admin port, where its check goes)", cfg.Admin.Listen, want)
	}
	call := callNamed(t, cfg, "atproto")
	if want := net.JoinHostPort(nodeEnv["NOMAD_IP_calling"], strconv.Itoa(jf.ports["calling"])); call.Addr() != want {
		t.Errorf("calling port listens on %s, want %s", call.Addr(), want)
	}
	if cfg.Nomad.Token == "" || !strings.HasPrefix(cfg.Nomad.Address, "http://10.0.0.5:") {
		t.Errorf("nomad = %+v; want NOMAD_ADDR on the node and the workload identity's NOMAD_TOKEN", cfg.Nomad)
	}
}

// rotationLine is how deploy/README.md tells to list a new key before the
// old one.
const rotationLine = `encryption_key = [env("IOPROXY_SESSION_KEY_NEW"), env("IOPROXY_SESSION_KEY")]`

// TestReplicasKeyRotation loads the replicas' configuration as the README
// says to edit it for a new session key: both keys, the new one first.
func TestReplicasKeyRotation(t *testing.T) {
	base := root(t)
	readme, err := os.ReadFile(filepath.Join(base, "deploy", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), rotationLine) {
		t.Errorf("deploy/README.md does not show %s", rotationLine)
	}
	src, err := os.ReadFile(filepath.Join(base, replicasConfig))
	if err != nil {
		t.Fatal(err)
	}
	const current = `encryption_key = env("IOPROXY_SESSION_KEY")`
	if !strings.Contains(string(src), current) {
		t.Fatalf("%s has no %s line; update the README's rotation and this test", replicasConfig, current)
	}
	rotated := strings.Replace(string(src), current, rotationLine, 1)
	env := maps.Clone(configEnv[replicasConfig])
	env["IOPROXY_SESSION_KEY_NEW"] = testNewSessionKey
	cfg, diags := config.Parse([]byte(rotated), replicasConfig, config.Options{LookupEnv: envOf(env)})
	if diags.HasErrors() {
		t.Fatalf("rotated %s: %s", replicasConfig, diags.Error())
	}
	if n := cfg.Sessions.EncryptionKey.Len(); n != 2 {
		t.Errorf("%d keys, want the new and the old", n)
	}
}

// TestRedisJob checks the example Redis: one server that keeps every write
// in its append-only file on the host volume and never evicts a session.
func TestRedisJob(t *testing.T) {
	jf := parseJob(t, filepath.Join(root(t), redisJob))
	if got := jf.counts["redis"]; got != 1 {
		t.Errorf("count = %d, want 1: the append-only file has one writer", got)
	}
	if !strings.HasPrefix(jf.variables["image"], "redis:7") || !slices.Equal(jf.images, []string{"var.image"}) {
		t.Errorf("image %q (default %q), want var.image defaulting to redis:7", jf.images, jf.variables["image"])
	}
	for _, pair := range [][2]string{{"--appendonly", "yes"}, {"--maxmemory-policy", "noeviction"}} {
		i := slices.Index(jf.dockerArgs, pair[0])
		if i < 0 || i+1 >= len(jf.dockerArgs) || jf.dockerArgs[i+1] != pair[1] {
			t.Errorf("args %q; want %s %s", jf.dockerArgs, pair[0], pair[1])
		}
	}
	if len(jf.checks["redis"]) == 0 {
		t.Error("service redis has no check")
	}
}

// runtimeContext evaluates env values with the given variables, named by
// their dotted paths ("attr.unique.network.ip-address"). A variable not in
// values is an error, so the test knows every value the job uses.
func runtimeContext(values map[string]string) *hcl.EvalContext {
	tree := map[string]any{}
	for name, v := range values {
		node := tree
		parts := strings.Split(name, ".")
		for _, p := range parts[:len(parts)-1] {
			child, ok := node[p].(map[string]any)
			if !ok {
				child = map[string]any{}
				node[p] = child
			}
			node = child
		}
		node[parts[len(parts)-1]] = v
	}
	vars := map[string]cty.Value{}
	for k, v := range tree {
		vars[k] = toCty(v)
	}
	return &hcl.EvalContext{Variables: vars}
}
