package config

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

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

// Load reads, decodes and validates the configuration file at path; see
// LoadAll.
func Load(path string, opts Options) (*Config, hcl.Diagnostics) {
	return LoadAll([]string{path}, opts)
}

// LoadAll reads the configuration from several files, as one: each path
// is a file, or a directory whose *.hcl files are read in name order.
// Blocks from all files merge; a host, call or serve block defined in two
// files is an error at the second, naming the first, as within one file. The
// returned diagnostics may hold warnings even when the Config is usable;
// the Config is nil when they hold an error.
func LoadAll(paths []string, opts Options) (*Config, hcl.Diagnostics) {
	files, diags := expandPaths(paths)
	if diags.HasErrors() {
		return nil, diags
	}
	parser := hclparse.NewParser()
	var parsed []*hcl.File
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			return nil, append(diags, cannotRead(err))
		}
		f, pdiags := parser.ParseHCL(src, name)
		diags = append(diags, pdiags...)
		parsed = append(parsed, f)
	}
	if diags.HasErrors() {
		return nil, diags
	}
	cfg, ddiags := decode(hcl.MergeFiles(parsed), opts)
	diags = append(diags, ddiags...)
	if cfg != nil {
		cfg.Filename, cfg.Files = strings.Join(paths, ", "), files
	}
	return cfg, diags
}

// expandPaths lists the files that paths name: a directory stands for its
// *.hcl files, in name order (not those of its subdirectories).
func expandPaths(paths []string) ([]string, hcl.Diagnostics) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, hcl.Diagnostics{cannotRead(err)}
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		found, err := filepath.Glob(filepath.Join(p, "*.hcl"))
		if err != nil || len(found) == 0 {
			return nil, hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "No configuration files in the directory",
				Detail:   fmt.Sprintf("%s holds no *.hcl file. Put ioproxy's HCL files there, or pass a file with -config.", p),
			}}
		}
		slices.Sort(found)
		for _, f := range found {
			// Editors' lock and backup files (".#io.hcl") and directories
			// named *.hcl are not configuration.
			if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() && !strings.HasPrefix(filepath.Base(f), ".") {
				files = append(files, f)
			}
		}
	}
	return files, nil
}

func cannotRead(err error) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Cannot read configuration file",
		Detail:   fmt.Sprintf("%v. Pass the path of an ioproxy HCL file (or a directory of them) with -config, such as examples/io.hcl.", err),
	}
}

// Parse decodes and validates configuration source; filename is used in
// diagnostics only.
func Parse(src []byte, filename string, opts Options) (*Config, hcl.Diagnostics) {
	parser := hclparse.NewParser()
	file, diags := parser.ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, diags
	}
	cfg, ddiags := decode(file.Body, opts)
	diags = append(diags, ddiags...)
	if cfg != nil {
		cfg.Filename, cfg.Files = filename, []string{filename}
	}
	return cfg, diags
}

// decode decodes and validates a body: one file's, or several merged.
func decode(body hcl.Body, opts Options) (*Config, hcl.Diagnostics) {
	var raw fileSchema
	diags := gohcl.DecodeBody(body, evalContext(opts), &raw)
	// gohcl walks maps: without a sort, the same file's mistakes would be
	// listed in a different order from one run to the next.
	sortByPosition(diags)
	suggestNames(diags)
	if diags.HasErrors() {
		return nil, diags
	}
	cfg, buildDiags := build(&raw, opts)
	diags = append(diags, buildDiags...)
	if diags.HasErrors() {
		return nil, diags
	}
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
