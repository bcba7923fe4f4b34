package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// hclBlock matches the ```hcl blocks of a Markdown file, with the line each
// starts at.
var hclBlock = regexp.MustCompile("(?s)```hcl\n(.*?)```")

// The README's HCL examples are what people copy: each must load, as a
// configuration of its own, without errors.
func TestReadmeExamplesLoad(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := hclBlock.FindAllSubmatchIndex(src, -1)
	if len(blocks) < 3 {
		t.Fatalf("found %d hcl blocks in README.md", len(blocks))
	}
	env := func(name string) (string, bool) {
		switch {
		case strings.HasSuffix(name, "_API_KEYS"):
			return "ci:$2a$10$MoTUEl2sLaxZyhYsvZQsuO0b1ggcIT9SjiLinuDCGokd0B3rxy4xu", true
		case strings.HasSuffix(name, "REDIS_URL"):
			return "redis://127.0.0.1:6379/0", true
		case strings.HasSuffix(name, "SESSION_KEY"), strings.HasSuffix(name, "_KEY") && strings.Contains(name, "SESSION"):
			return "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", true
		}
		return "from-" + strings.ToLower(name), true
	}
	for _, m := range blocks {
		line := 1 + strings.Count(string(src[:m[2]]), "\n")
		body := src[m[2]:m[3]]
		cfg, diags := Parse(body, "README.md", Options{LookupEnv: env})
		if cfg == nil || diags.HasErrors() {
			t.Errorf("README.md's hcl block at line %d does not load:\n%v", line, diags.Errs())
		}
	}
}
