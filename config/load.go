package config

import (
	"cmp"
	"fmt"
	"os"
	"slices"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Options change how a file is read; the zero value reads the process
// environment.
type Options struct {
	// LookupEnv backs the env() function; os.LookupEnv when nil.
	LookupEnv func(string) (string, bool)
}

// lookupEnv is LookupEnv, or os.LookupEnv when that is nil.
func (o Options) lookupEnv(name string) (string, bool) {
	if o.LookupEnv == nil {
		return os.LookupEnv(name)
	}
	return o.LookupEnv(name)
}

// Load reads, decodes and validates the configuration file at path. The
// returned diagnostics may hold warnings even when the Config is usable;
// the Config is nil when they hold an error.
func Load(path string, opts Options) (*Config, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read configuration file",
			Detail:   fmt.Sprintf("%v. Pass the path of an ioproxy HCL file with -config, such as examples/io.hcl.", err),
		}}
	}
	return Parse(src, path, opts)
}

// Parse decodes and validates configuration source; filename is used in
// diagnostics only.
func Parse(src []byte, filename string, opts Options) (*Config, hcl.Diagnostics) {
	parser := hclparse.NewParser()
	file, diags := parser.ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, diags
	}
	var raw fileSchema
	decodeDiags := gohcl.DecodeBody(file.Body, evalContext(opts), &raw)
	// gohcl walks maps: without a sort, the same file's mistakes would be
	// listed in a different order from one run to the next.
	sortByPosition(decodeDiags)
	suggestNames(decodeDiags)
	diags = append(diags, decodeDiags...)
	if diags.HasErrors() {
		return nil, diags
	}
	cfg, buildDiags := build(&raw, opts)
	diags = append(diags, buildDiags...)
	if diags.HasErrors() {
		return nil, diags
	}
	cfg.Filename = filename
	return cfg, diags
}

// sortByPosition orders diagnostics by where they point (file, line,
// column), keeping the order of those at the same place.
func sortByPosition(diags hcl.Diagnostics) {
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		switch {
		case a.Subject == nil && b.Subject == nil:
			return 0
		case a.Subject == nil:
			return 1
		case b.Subject == nil:
			return -1
		}
		return cmp.Or(
			cmp.Compare(a.Subject.Filename, b.Subject.Filename),
			cmp.Compare(a.Subject.Start.Byte, b.Subject.Start.Byte),
		)
	})
}

// evalContext offers env("NAME") and env("NAME", "default") so that secrets
// come from the environment rather than the file.
func evalContext(opts Options) *hcl.EvalContext {
	envFunc := function.New(&function.Spec{
		Description: "Returns the value of an environment variable, or the default (empty when not given) when it is unset.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		VarParam:    &function.Parameter{Name: "default", Type: cty.String},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if len(args) > 2 {
				return cty.NilVal, fmt.Errorf("env takes a name and at most one default, as in env(\"NOMAD_TOKEN\") or env(\"PORT\", \"8080\")")
			}
			if v, ok := opts.lookupEnv(args[0].AsString()); ok {
				return cty.StringVal(v), nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return cty.StringVal(""), nil
		},
	})
	return &hcl.EvalContext{Functions: map[string]function.Function{"env": envFunc}}
}
