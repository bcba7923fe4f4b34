// Package lex is the root of the Go code generated from the Lexicon JSON in
// cmd/statusphere/internal/lexicons: one package per Lexicon group, e.g. lex/com/atproto/repo and
// lex/xyz/statusphere. Edit the JSON, then run go generate here.
package lex

//go:generate go run ../lexgen -lexicons ../lexicons -out .
