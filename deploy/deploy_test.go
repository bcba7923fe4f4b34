package deploy

import (
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/ioproxy/ioproxy/config"
)

// root is the repository root, where go.mod is.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// hclFiles lists every .hcl file under deploy/ and examples/, relative to
// the repository root, split into Nomad jobs and ioproxy configurations.
func hclFiles(t *testing.T) (jobs, configs []string) {
	t.Helper()
	base := root(t)
	for _, dir := range []string{"deploy", "examples"} {
		err := filepath.WalkDir(filepath.Join(base, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".hcl") {
				return err
			}
			rel, err := filepath.Rel(base, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			if strings.HasSuffix(rel, ".nomad.hcl") {
				jobs = append(jobs, rel)
			} else {
				configs = append(configs, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("list %s: %v", dir, err)
		}
	}
	sort.Strings(jobs)
	sort.Strings(configs)
	return jobs, configs
}

// noEnv makes config.Load ignore the environment of whoever runs the test.
func noEnv(string) (string, bool) { return "", false }

// configEnv is the environment of the configurations that do not load
// without one: those whose secrets have no default, on purpose.
var configEnv = map[string]map[string]string{
	"deploy/ioproxy-replicas.hcl": {
		"IOPROXY_REDIS_URL":       testRedisURL,
		"IOPROXY_SESSION_KEY":     testSessionKey,
		"IOPROXY_TRUSTED_PROXIES": testTrustedProxies,
	},
}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestIoproxyConfigsLoad(t *testing.T) {
	_, configs := hclFiles(t)
	for _, want := range []string{"deploy/ioproxy.hcl", "deploy/ioproxy-replicas.hcl", "examples/io.hcl", "examples/local.hcl"} {
		if !slices.Contains(configs, want) {
			t.Errorf("%s is missing", want)
		}
	}
	base := root(t)
	for _, name := range configs {
		t.Run(name, func(t *testing.T) {
			lookup := noEnv
			if env, ok := configEnv[name]; ok {
				lookup = envOf(env)
			}
			cfg, diags := config.Load(filepath.Join(base, name), config.Options{LookupEnv: lookup})
			for _, d := range diags {
				if d.Severity == hcl.DiagError {
					t.Errorf("%s", diagString(d))
				} else {
					t.Logf("warning: %s", diagString(d))
				}
			}
			if cfg == nil && !diags.HasErrors() {
				t.Error("no configuration and no error")
			}
		})
	}
}

func diagString(d *hcl.Diagnostic) string {
	if d.Subject != nil {
		return fmt.Sprintf("%s:%d: %s: %s", d.Subject.Filename, d.Subject.Start.Line, d.Summary, d.Detail)
	}
	return d.Summary + ": " + d.Detail
}

// TestDeployConfigUnderNomad loads deploy/ioproxy.hcl with the environment
// that ioproxy.nomad.hcl gives the task, and checks it binds where the job
// and the statusphere job expect.
func TestDeployConfigUnderNomad(t *testing.T) {
	env := map[string]string{
		"IOPROXY_CALL_BIND":    "10.0.0.5",
		"IOPROXY_ADMIN_LISTEN": "10.0.0.5:9901",
		"ACME_EMAIL":           "ops@statusphere.example.com",
		"NOMAD_ADDR":           "http://10.0.0.5:4646",
		"NOMAD_TOKEN":          "eyJ.workload.identity",
	}
	cfg, diags := config.Load(filepath.Join(root(t), "deploy", "ioproxy.hcl"), config.Options{LookupEnv: envOf(env)})
	if diags.HasErrors() {
		t.Fatalf("deploy/ioproxy.hcl: %s", diags.Error())
	}
	call := callNamed(t, cfg, "atproto")
	if got := call.Addr(); got != "10.0.0.5:7000" {
		t.Errorf("calling port listens on %s, want 10.0.0.5:7000", got)
	}
	if cfg.Admin.Listen != "10.0.0.5:9901" {
		t.Errorf("admin listens on %s", cfg.Admin.Listen)
	}
	if cfg.DataDir != "/data" {
		t.Errorf("data_dir = %q, want /data (the image's volume)", cfg.DataDir)
	}
	if cfg.Nomad.Address != "http://10.0.0.5:4646" || cfg.Nomad.Token != "eyJ.workload.identity" {
		t.Errorf("nomad = %+v; want NOMAD_ADDR and NOMAD_TOKEN from the environment", cfg.Nomad)
	}
	if len(cfg.Hosts) != 1 || cfg.Hosts[0].Backend.Kind != config.BackendNomad || cfg.Hosts[0].Backend.Service != "statusphere" {
		t.Errorf("hosts = %+v; want one host with backend nomad:statusphere", cfg.Hosts)
	}
}

func callNamed(t *testing.T, cfg *config.Config, label string) config.Call {
	t.Helper()
	for _, c := range cfg.Calls {
		if c.Label == label {
			return c
		}
	}
	t.Fatalf("no call %q in %s", label, cfg.Filename)
	return config.Call{}
}

// job is what a Nomad job file must declare.
type job struct {
	name     string
	group    string
	task     string
	services []string
	// ports maps a port label to its static port, or to its "to" port
	// when static is 0 in the file.
	ports map[string]int
	env   []string
	// stateless jobs mount no volume; the others mount theirs at /data.
	stateless bool
}

func TestNomadJobs(t *testing.T) {
	want := map[string]job{
		"deploy/nomad/statusphere.nomad.hcl": {
			name: "statusphere", group: "statusphere", task: "statusphere",
			services: []string{"statusphere"},
			ports:    map[string]int{"http": 3000},
			env:      []string{"PORT", "ATPROTO_PROXY", "STATUSPHERE_DB", "JETSTREAM_URL"},
		},
		"deploy/nomad/ioproxy.nomad.hcl": {
			name: "ioproxy", group: "ioproxy", task: "ioproxy",
			services: []string{"ioproxy", "ioproxy-calling"},
			ports:    map[string]int{"http": 80, "https": 443, "calling": 7000, "admin": 9901},
			env:      []string{"IOPROXY_CALL_BIND", "IOPROXY_ADMIN_LISTEN", "NOMAD_ADDR"},
		},
		// The same job as ioproxy.nomad.hcl (the Nomad variable
		// nomad/jobs/ioproxy belongs to the job named ioproxy), in
		// replicas that keep nothing on their nodes: TLS ends at the load
		// balancer, so no 443 either. TestReplicasJob checks the rest.
		"deploy/nomad/ioproxy-replicas.nomad.hcl": {
			name: "ioproxy", group: "ioproxy", task: "ioproxy",
			services:  []string{"ioproxy", "ioproxy-calling"},
			ports:     map[string]int{"http": 80, "calling": 7000, "admin": 9901},
			env:       []string{"IOPROXY_CALL_BIND", "IOPROXY_ADMIN_LISTEN", "NOMAD_ADDR", "IOPROXY_TRUSTED_PROXIES"},
			stateless: true,
		},
		"deploy/nomad/redis.nomad.hcl": {
			name: "redis", group: "redis", task: "redis",
			services: []string{"redis"},
			ports:    map[string]int{"redis": 6379},
		},
	}
	jobs, _ := hclFiles(t)
	for _, name := range jobs {
		if _, ok := want[name]; !ok {
			t.Errorf("%s has no expectations; add it to the table in TestNomadJobs", name)
		}
	}
	base := root(t)
	parsed := map[string]*jobFile{}
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			jf := parseJob(t, filepath.Join(base, name))
			parsed[name] = jf
			w.check(t, jf)
		})
	}
	if t.Failed() {
		return
	}

	// The two jobs and ioproxy's configuration agree on the calling port.
	cfg, diags := config.Load(filepath.Join(base, "deploy", "ioproxy.hcl"), config.Options{LookupEnv: noEnv})
	if diags.HasErrors() {
		t.Fatalf("deploy/ioproxy.hcl: %s", diags.Error())
	}
	callPort := callNamed(t, cfg, "atproto").Port
	proxy := parsed["deploy/nomad/statusphere.nomad.hcl"].env["ATPROTO_PROXY"]
	u, err := url.Parse(proxy)
	if err != nil || u.Scheme != "http" || u.Port() != strconv.Itoa(callPort) {
		t.Errorf("statusphere's ATPROTO_PROXY = %q (%v); want http://<node address>:%d, ioproxy's calling port", proxy, err, callPort)
	} else if h := u.Hostname(); h == "127.0.0.1" || h == "localhost" {
		t.Errorf("ATPROTO_PROXY = %q: inside the app's container, loopback is the container itself", proxy)
	}
	for _, name := range []string{"deploy/nomad/ioproxy.nomad.hcl", "deploy/nomad/ioproxy-replicas.nomad.hcl"} {
		io := parsed[name]
		if got := io.ports["calling"]; got != callPort {
			t.Errorf("%s reserves calling port %d; deploy/ioproxy.hcl listens on %d", name, got, callPort)
		}
		if _, port, _ := net.SplitHostPort(config.DefaultAdminListen); port != strconv.Itoa(io.ports["admin"]) {
			t.Errorf("%s reserves admin port %d; ioproxy's admin listener uses %s", name, io.ports["admin"], port)
		}
		checkConfigTemplate(t, base, name, io)
	}
}

// checkConfigTemplate requires an ioproxy job to render its configuration
// file, which exists, to the path the image reads it from, and returns
// that file relative to the repository root.
func checkConfigTemplate(t *testing.T, base, name string, io *jobFile) string {
	t.Helper()
	cfgFile := io.variables["config_file"]
	if _, err := os.Stat(filepath.Join(base, cfgFile)); err != nil {
		t.Errorf("%s: variable config_file = %q: %v", name, cfgFile, err)
	}
	tpl, ok := io.configTemplate()
	if !ok {
		t.Errorf("%s: no template with data = file(var.config_file)", name)
		return cfgFile
	}
	mounted := ""
	for _, v := range io.dockerVolumes {
		src, dst, _ := strings.Cut(strings.TrimSuffix(v, ":ro"), ":")
		if rest, ok := strings.CutPrefix(tpl.dest, src+"/"); ok {
			mounted = path.Join(dst, rest)
		}
	}
	if mounted != "/etc/ioproxy/io.hcl" {
		t.Errorf("%s: the template %s is mounted at %q; the image reads /etc/ioproxy/io.hcl", name, tpl.dest, mounted)
	}
	return cfgFile
}

// jobFile is what the tests read from a Nomad job file.
type jobFile struct {
	jobs, groups, tasks, services []string
	drivers                       []string
	ports                         map[string]int
	volumeMounts                  []string
	env                           map[string]string
	// envExprs are the env block's values as written, to evaluate with
	// the values Nomad would give them.
	envExprs      map[string]hcl.Expression
	variables     map[string]string
	templates     []jobTemplate
	dockerVolumes []string
	// dockerArgs are the args of the tasks' docker config, and images the
	// source text of their image attributes (such as var.image).
	dockerArgs []string
	images     []string
	// counts, updates, constraints and checks are by group label (updates
	// and constraints written in the job block count for each group).
	counts      map[string]int
	updates     map[string]map[string]cty.Value
	constraints map[string][]map[string]string
	// checks are the check blocks of each service, by service name.
	checks map[string][]map[string]string
	// servicePorts are the port labels of the services, by name.
	servicePorts map[string]string
	// identityEnv says whether a task's identity block sets env = true,
	// which gives it NOMAD_TOKEN.
	identityEnv bool
	src         []byte
}

// jobTemplate is one template block of a task.
type jobTemplate struct {
	// source is the data attribute as written; data is its value when it
	// is a string (a heredoc), "" when it calls a function (file()).
	source, data string
	dest         string
	env          bool
	changeMode   string
}

// configTemplate is the template that renders ioproxy's configuration.
func (jf *jobFile) configTemplate() (jobTemplate, bool) {
	for _, tpl := range jf.templates {
		if strings.Contains(tpl.source, "file(var.config_file)") {
			return tpl, true
		}
	}
	return jobTemplate{}, false
}

func parseJob(t *testing.T, filename string) *jobFile {
	t.Helper()
	p := hclparse.NewParser()
	f, diags := p.ParseHCLFile(filename)
	if diags.HasErrors() {
		t.Fatalf("%s", diags.Error())
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		t.Fatalf("%s is not native HCL syntax", filename)
	}
	jf := &jobFile{
		ports: map[string]int{}, env: map[string]string{}, envExprs: map[string]hcl.Expression{}, variables: map[string]string{},
		counts: map[string]int{}, updates: map[string]map[string]cty.Value{}, constraints: map[string][]map[string]string{},
		checks: map[string][]map[string]string{}, servicePorts: map[string]string{},
		src: f.Bytes,
	}
	for _, b := range body.Blocks {
		switch b.Type {
		case "job":
			jf.jobs = append(jf.jobs, label(b))
			jf.walk(t, b.Body, "job")
		case "variable":
			if def, ok := b.Body.Attributes["default"]; ok {
				jf.variables[label(b)] = evalString(t, def.Expr)
			}
		default:
			t.Errorf("%s: unexpected top-level block %q", filename, b.Type)
		}
	}
	return jf
}

func label(b *hclsyntax.Block) string {
	if len(b.Labels) == 0 {
		return ""
	}
	return b.Labels[0]
}

func (jf *jobFile) walk(t *testing.T, body *hclsyntax.Body, parent string) {
	for _, b := range body.Blocks {
		switch {
		case b.Type == "group" && parent == "job":
			jf.groups = append(jf.groups, label(b))
			jf.counts[label(b)] = 1 // Nomad's default
			if a, ok := b.Body.Attributes["count"]; ok {
				jf.counts[label(b)] = evalInt(t, a.Expr)
			}
			jf.groupBlocks(t, label(b), body) // the job's update and constraints
			jf.groupBlocks(t, label(b), b.Body)
		case b.Type == "task" && parent == "group":
			jf.tasks = append(jf.tasks, label(b))
			if a, ok := b.Body.Attributes["driver"]; ok {
				jf.drivers = append(jf.drivers, evalString(t, a.Expr))
			}
		case b.Type == "service":
			name := ""
			if a, ok := b.Body.Attributes["name"]; ok {
				name = evalString(t, a.Expr)
				jf.services = append(jf.services, name)
			}
			if a, ok := b.Body.Attributes["port"]; ok {
				jf.servicePorts[name] = evalString(t, a.Expr)
			}
			if a, ok := b.Body.Attributes["provider"]; !ok || evalString(t, a.Expr) != "nomad" {
				t.Errorf("service at %s: want provider = \"nomad\" (ioproxy resolves nomad:<service> through Nomad's own service API)", b.DefRange())
			}
			for _, c := range b.Body.Blocks {
				if c.Type == "check" {
					jf.checks[name] = append(jf.checks[name], stringAttrs(t, c.Body))
				}
			}
		case b.Type == "port" && parent == "network":
			port := 0
			for _, attr := range []string{"static", "to"} {
				if a, ok := b.Body.Attributes[attr]; ok && port == 0 {
					port = evalInt(t, a.Expr)
				}
			}
			jf.ports[label(b)] = port
		case b.Type == "volume_mount":
			if a, ok := b.Body.Attributes["destination"]; ok {
				jf.volumeMounts = append(jf.volumeMounts, evalString(t, a.Expr))
			}
		case b.Type == "env" && parent == "task":
			for name, a := range b.Body.Attributes {
				jf.env[name] = evalString(t, a.Expr)
				jf.envExprs[name] = a.Expr
			}
		case b.Type == "identity" && parent == "task":
			if a, ok := b.Body.Attributes["env"]; ok {
				v, diags := a.Expr.Value(nil)
				jf.identityEnv = !diags.HasErrors() && v.Type() == cty.Bool && v.True()
			}
		case b.Type == "template" && parent == "task":
			jf.templates = append(jf.templates, jf.template(t, b.Body))
		case b.Type == "config" && parent == "task":
			if a, ok := b.Body.Attributes["volumes"]; ok {
				jf.dockerVolumes = append(jf.dockerVolumes, evalStrings(t, a.Expr)...)
			}
			if a, ok := b.Body.Attributes["args"]; ok {
				jf.dockerArgs = append(jf.dockerArgs, evalStrings(t, a.Expr)...)
			}
			if a, ok := b.Body.Attributes["image"]; ok {
				jf.images = append(jf.images, strings.TrimSpace(string(a.Expr.Range().SliceBytes(jf.src))))
			}
		}
		jf.walk(t, b.Body, b.Type)
	}
}

// groupBlocks records the update and constraint blocks of body (a job's
// or a group's) for the group called group.
func (jf *jobFile) groupBlocks(t *testing.T, group string, body *hclsyntax.Body) {
	for _, b := range body.Blocks {
		switch b.Type {
		case "update":
			if jf.updates[group] == nil {
				jf.updates[group] = map[string]cty.Value{}
			}
			for name, a := range b.Body.Attributes {
				v, diags := a.Expr.Value(nil)
				if diags.HasErrors() {
					t.Errorf("%s", diags.Error())
					continue
				}
				jf.updates[group][name] = v
			}
		case "constraint":
			jf.constraints[group] = append(jf.constraints[group], stringAttrs(t, b.Body))
		}
	}
}

// template reads a template block.
func (jf *jobFile) template(t *testing.T, body *hclsyntax.Body) jobTemplate {
	var tpl jobTemplate
	if a, ok := body.Attributes["data"]; ok {
		tpl.source = string(a.Expr.Range().SliceBytes(jf.src))
		if v, diags := a.Expr.Value(stubContext(a.Expr)); !diags.HasErrors() && v.Type() == cty.String {
			tpl.data = v.AsString()
		}
	}
	if a, ok := body.Attributes["destination"]; ok {
		tpl.dest = evalString(t, a.Expr)
	}
	if a, ok := body.Attributes["change_mode"]; ok {
		tpl.changeMode = evalString(t, a.Expr)
	}
	if a, ok := body.Attributes["env"]; ok {
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() || v.Type() != cty.Bool {
			t.Errorf("%s: env is true or false", a.Expr.Range())
		} else {
			tpl.env = v.True()
		}
	}
	return tpl
}

// stringAttrs reads the attributes of a block whose values are strings
// (a check, a constraint), rendering numbers and booleans as Nomad reads
// them ("true", "10").
func stringAttrs(t *testing.T, body *hclsyntax.Body) map[string]string {
	out := map[string]string{}
	for name, a := range body.Attributes {
		v, diags := a.Expr.Value(stubContext(a.Expr))
		if diags.HasErrors() {
			t.Errorf("%s", diags.Error())
			continue
		}
		s, err := convert.Convert(v, cty.String)
		if err != nil || s.IsNull() {
			t.Errorf("%s: want a string, a number or a bool", a.Expr.Range())
			continue
		}
		out[name] = s.AsString()
	}
	return out
}

// evalStrings evaluates a list of strings.
func evalStrings(t *testing.T, expr hcl.Expression) []string {
	t.Helper()
	v, diags := expr.Value(stubContext(expr))
	if diags.HasErrors() {
		t.Errorf("%s", diags.Error())
		return nil
	}
	if !v.Type().IsListType() && !v.Type().IsTupleType() {
		t.Errorf("%s: want a list of strings", expr.Range())
		return nil
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.Type() != cty.String {
			t.Errorf("%s: want a list of strings", expr.Range())
			return nil
		}
		out = append(out, e.AsString())
	}
	return out
}

func (w job) check(t *testing.T, jf *jobFile) {
	t.Helper()
	if !slices.Equal(jf.jobs, []string{w.name}) {
		t.Errorf("jobs %q, want one job %q", jf.jobs, w.name)
	}
	if !slices.Contains(jf.groups, w.group) {
		t.Errorf("groups %q, want %q", jf.groups, w.group)
	}
	if !slices.Contains(jf.tasks, w.task) {
		t.Errorf("tasks %q, want %q", jf.tasks, w.task)
	}
	if !slices.Equal(jf.drivers, []string{"docker"}) {
		t.Errorf("drivers %q, want docker", jf.drivers)
	}
	for _, s := range w.services {
		if !slices.Contains(jf.services, s) {
			t.Errorf("services %q, want %q among them", jf.services, s)
		}
	}
	for label, port := range w.ports {
		if jf.ports[label] != port {
			t.Errorf("port %q = %d, want %d", label, jf.ports[label], port)
		}
	}
	switch {
	case w.stateless && len(jf.volumeMounts) > 0:
		t.Errorf("volume mounts %q; this job keeps no state on its nodes, and a host volume would tie it to the nodes that have one", jf.volumeMounts)
	case !w.stateless && !slices.Contains(jf.volumeMounts, "/data"):
		t.Errorf("volume mounts %q; want the data volume at /data", jf.volumeMounts)
	}
	for _, k := range w.env {
		if jf.env[k] == "" {
			t.Errorf("env %s is not set", k)
		}
	}
	for _, tpl := range jf.templates {
		if tpl.source == "" || tpl.dest == "" {
			t.Errorf("template %+v: want data and destination", tpl)
		}
	}
}

// stubContext gives every variable an expression refers to (var.image,
// attr.unique.network.ip-address, NOMAD_IP_calling) a placeholder value
// that is also a host name ("attr.unique.network.ip-address",
// "nomad-ip-calling"), so that templates evaluate into strings and URLs
// that can be checked.
func stubContext(expr hcl.Expression) *hcl.EvalContext {
	tree := map[string]any{}
	for _, tr := range expr.Variables() {
		node := tree
		var names []string
		for i, step := range tr {
			var name string
			switch s := step.(type) {
			case hcl.TraverseRoot:
				name = s.Name
			case hcl.TraverseAttr:
				name = s.Name
			default:
				continue
			}
			names = append(names, name)
			if i == len(tr)-1 {
				node[name] = strings.ToLower(strings.ReplaceAll(strings.Join(names, "."), "_", "-"))
				break
			}
			child, ok := node[name].(map[string]any)
			if !ok {
				child = map[string]any{}
				node[name] = child
			}
			node = child
		}
	}
	vars := map[string]cty.Value{}
	for k, v := range tree {
		vars[k] = toCty(v)
	}
	return &hcl.EvalContext{Variables: vars}
}

func toCty(v any) cty.Value {
	switch v := v.(type) {
	case string:
		return cty.StringVal(v)
	case map[string]any:
		m := map[string]cty.Value{}
		for k, e := range v {
			m[k] = toCty(e)
		}
		return cty.ObjectVal(m)
	}
	return cty.NilVal
}

func evalString(t *testing.T, expr hcl.Expression) string {
	t.Helper()
	v, diags := expr.Value(stubContext(expr))
	if diags.HasErrors() {
		t.Errorf("%s", diags.Error())
		return ""
	}
	if v.Type() != cty.String {
		t.Errorf("%s: want a string, got %s", expr.Range(), v.Type().FriendlyName())
		return ""
	}
	return v.AsString()
}

func evalInt(t *testing.T, expr hcl.Expression) int {
	t.Helper()
	v, diags := expr.Value(nil)
	if diags.HasErrors() || v.Type() != cty.Number {
		t.Errorf("%s: want a number", expr.Range())
		return 0
	}
	n, _ := v.AsBigFloat().Int64()
	return int(n)
}

// instruction is one Dockerfile instruction with its continuation lines
// joined.
type instruction struct {
	line int
	cmd  string // upper case, such as "RUN"
	args string
}

func parseDockerfile(t *testing.T, filename string) []instruction {
	t.Helper()
	src, err := os.ReadFile(filename)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(src), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if cont, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// dockerImage is what a Dockerfile must do for one binary.
type dockerImage struct {
	file, binary string
	cmd          []string          // the default command, if the image has one
	env          map[string]string // ENV values the Nomad job relies on
	expose       string
}

func TestDockerfiles(t *testing.T) {
	base := root(t)
	images := []dockerImage{
		{file: "ioproxy.Dockerfile", binary: "ioproxy", cmd: []string{"serve", "-config", "/etc/ioproxy/io.hcl"}, expose: "80"},
		{file: "statusphere.Dockerfile", binary: "statusphere", env: map[string]string{"PORT": "3000", "STATUSPHERE_DB": "/data/statusphere.sqlite"}, expose: "3000"},
	}
	found, err := filepath.Glob(filepath.Join(base, "deploy", "docker", "*.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != len(images) {
		t.Errorf("deploy/docker holds %d Dockerfiles, the test knows %d; add the new one to TestDockerfiles", len(found), len(images))
	}
	for _, img := range images {
		t.Run(img.file, func(t *testing.T) {
			ins := parseDockerfile(t, filepath.Join(base, "deploy", "docker", img.file))
			img.check(t, base, ins)
		})
	}
}

func (img dockerImage) check(t *testing.T, base string, ins []instruction) {
	var froms []string
	var built, copied, entrypoint string
	var cmd []string
	env := map[string]string{}
	volume, expose := false, false
	for _, in := range ins {
		at := fmt.Sprintf("%s:%d", img.file, in.line)
		switch in.cmd {
		case "FROM":
			froms = append(froms, in.args)
		case "COPY":
			fields := strings.Fields(in.args)
			if len(fields) > 0 && strings.HasPrefix(fields[0], "--from=") {
				if strings.HasSuffix(fields[1], "/"+img.binary) {
					copied = fields[len(fields)-1]
				}
				continue
			}
			for _, src := range fields[:len(fields)-1] {
				if strings.HasPrefix(src, "--") {
					continue
				}
				if _, err := os.Stat(filepath.Join(base, src)); err != nil {
					t.Errorf("%s: COPY source %s: %v", at, src, err)
				}
			}
		case "RUN":
			if !strings.Contains(in.args, "go build") {
				continue
			}
			if !strings.Contains(in.args, "CGO_ENABLED=0") {
				t.Errorf("%s: go build without CGO_ENABLED=0", at)
			}
			fields := strings.Fields(in.args)
			pkg := fields[len(fields)-1]
			if pkg != "./cmd/"+img.binary {
				t.Errorf("%s: builds %s, want ./cmd/%s", at, pkg, img.binary)
			}
			checkMainPackage(t, at, filepath.Join(base, filepath.FromSlash(pkg)))
			if i := slices.Index(fields, "-o"); i < 0 || i+1 >= len(fields) || path.Base(fields[i+1]) != img.binary {
				t.Errorf("%s: go build -o does not name the binary %s", at, img.binary)
			}
			built = pkg
		case "ENTRYPOINT":
			var argv []string
			if err := json.Unmarshal([]byte(in.args), &argv); err != nil || len(argv) == 0 {
				t.Errorf("%s: ENTRYPOINT %s is not in exec form (a JSON array)", at, in.args)
				continue
			}
			entrypoint = argv[0]
		case "CMD":
			if err := json.Unmarshal([]byte(in.args), &cmd); err != nil {
				t.Errorf("%s: CMD %s is not in exec form", at, in.args)
			}
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					env[k] = v
				}
			}
		case "VOLUME":
			volume = volume || strings.Contains(in.args, `"/data"`)
		case "EXPOSE":
			expose = expose || slices.Contains(strings.Fields(in.args), img.expose)
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:1.26 ") || !strings.HasSuffix(strings.ToLower(froms[0]), " as build") {
		t.Errorf("stages %q; want a golang:1.26 build stage named build, then a runtime stage", froms)
	} else if strings.HasPrefix(froms[len(froms)-1], "golang") {
		t.Errorf("the runtime stage is %s; want a small image with CA certificates", froms[len(froms)-1])
	}
	if built == "" {
		t.Error("no go build")
	}
	if copied == "" || copied != entrypoint {
		t.Errorf("the binary is copied to %q but the entrypoint is %q", copied, entrypoint)
	}
	if img.cmd != nil && !slices.Equal(cmd, img.cmd) {
		t.Errorf("CMD %q, want %q", cmd, img.cmd)
	}
	for k, v := range img.env {
		if env[k] != v {
			t.Errorf("ENV %s = %q, want %q", k, env[k], v)
		}
	}
	if !volume {
		t.Error(`no VOLUME ["/data"]`)
	}
	if !expose {
		t.Errorf("port %s is not exposed", img.expose)
	}
}

// errorReporter is the part of testing.TB that checkMainPackage uses.
type errorReporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// checkMainPackage requires dir to hold a Go command: at least one
// non-test file of package main.
func checkMainPackage(t errorReporter, at, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Errorf("%s: %v", at, err)
		return
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.PackageClauseOnly)
		if err != nil {
			t.Errorf("%s: %v", at, err)
			return
		}
		if f.Name.Name == "main" {
			return
		}
	}
	t.Errorf("%s: %s holds no package main; the image would not build", at, dir)
}

func TestCheckMainPackage(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("lib.go", "package lib\n")
	write("main_test.go", "package main\n")
	var r errorRecorder
	checkMainPackage(&r, "x", dir)
	if len(r) == 0 {
		t.Error("a directory without package main passed")
	}
	write("main.go", "package main\n\nfunc main() {}\n")
	r = nil
	checkMainPackage(&r, "x", dir)
	if len(r) != 0 {
		t.Errorf("a command was refused: %q", r)
	}
}

// errorRecorder keeps the errors a check reports.
type errorRecorder []string

func (r *errorRecorder) Helper() {}

func (r *errorRecorder) Errorf(format string, args ...any) {
	*r = append(*r, fmt.Sprintf(format, args...))
}
