package config

import (
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics prints diagnostics one per line in the compiler style
// that editors and CI logs understand:
//
//	examples/io.hcl:3:13: error: Invalid backend: "localhost" is not a backend; write …
func WriteDiagnostics(w io.Writer, diags hcl.Diagnostics) error {
	for _, d := range diags {
		if _, err := fmt.Fprintln(w, FormatDiagnostic(d)); err != nil {
			return fmt.Errorf("write diagnostics: %w", err)
		}
	}
	return nil
}

// FormatDiagnostic renders one diagnostic as "file:line:col: severity: summary: detail".
func FormatDiagnostic(d *hcl.Diagnostic) string {
	var b strings.Builder
	if d.Subject != nil && d.Subject.Filename != "" {
		fmt.Fprintf(&b, "%s:%d:%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
	}
	if d.Severity == hcl.DiagWarning {
		b.WriteString("warning: ")
	} else {
		b.WriteString("error: ")
	}
	b.WriteString(d.Summary)
	if d.Detail != "" {
		b.WriteString(": ")
		b.WriteString(strings.Join(strings.Fields(d.Detail), " "))
	}
	return b.String()
}
