package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
)

// Doc is one Lexicon file. Only the parts of the Lexicon language that ioproxy's Lexicons use
// are modelled; decoding is strict, so a file using anything else fails with the unknown field
// named rather than being silently half-generated.
type Doc struct {
	Lexicon     int              `json:"lexicon"`
	ID          string           `json:"id"`
	Revision    int              `json:"revision,omitempty"`
	Description string           `json:"description,omitempty"`
	Defs        Ordered[*Schema] `json:"defs"`
	path        string           // relative to the Lexicon root, for the generated header
}

// Schema is a Lexicon definition or field type.
type Schema struct {
	Type        string `json:"type"`
	Description string `json:"description,omitempty"`

	// record
	Key    string  `json:"key,omitempty"`
	Record *Schema `json:"record,omitempty"`

	// query, procedure
	Parameters *Schema    `json:"parameters,omitempty"`
	Input      *Body      `json:"input,omitempty"`
	Output     *Body      `json:"output,omitempty"`
	Errors     []ErrorDef `json:"errors,omitempty"`

	// object, params
	Required   []string         `json:"required,omitempty"`
	Nullable   []string         `json:"nullable,omitempty"`
	Properties Ordered[*Schema] `json:"properties,omitzero"`

	// string
	Format       string   `json:"format,omitempty"`
	MinLength    *int     `json:"minLength,omitempty"`
	MaxLength    *int     `json:"maxLength,omitempty"`
	MinGraphemes *int     `json:"minGraphemes,omitempty"`
	MaxGraphemes *int     `json:"maxGraphemes,omitempty"`
	KnownValues  []string `json:"knownValues,omitempty"`

	// integer
	Minimum *int64 `json:"minimum,omitempty"`
	Maximum *int64 `json:"maximum,omitempty"`

	// string, integer, boolean
	Default json.RawMessage `json:"default,omitempty"`

	// array
	Items *Schema `json:"items,omitempty"`

	// ref
	Ref string `json:"ref,omitempty"`
}

// property is one property of an object or params schema.
type property struct {
	name     string
	schema   *Schema
	required bool
}

// props lists the properties of an object or params schema in the Lexicon's order, which is
// the order of the generated fields and checks.
func (s *Schema) props() []property {
	props := make([]property, 0, len(s.Properties.Keys))
	for _, name := range s.Properties.Keys {
		props = append(props, property{name, s.Properties.Values[name], slices.Contains(s.Required, name)})
	}
	return props
}

// Body is the input or output of a query or procedure.
type Body struct {
	Encoding    string  `json:"encoding"`
	Description string  `json:"description,omitempty"`
	Schema      *Schema `json:"schema,omitempty"`
}

// ErrorDef is a named error a method may return.
type ErrorDef struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// Ordered is a JSON object that keeps its keys in file order, so generated structs list fields
// in the order the Lexicon does.
type Ordered[V any] struct {
	Keys   []string
	Values map[string]V
}

// Get returns the value for key.
func (o Ordered[V]) Get(key string) (V, bool) {
	v, ok := o.Values[key]
	return v, ok
}

// UnmarshalJSON implements json.Unmarshaler, strictly.
func (o *Ordered[V]) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("want a JSON object, got %v", tok)
	}
	o.Keys, o.Values = nil, map[string]V{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("want an object key, got %v", tok)
		}
		if _, dup := o.Values[key]; dup {
			return fmt.Errorf("duplicate key %q", key)
		}
		var v V
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		o.Keys = append(o.Keys, key)
		o.Values[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	return nil
}

// decodeDoc parses a Lexicon file strictly.
func decodeDoc(r io.Reader, path string) (*Doc, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var d Doc
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if d.Lexicon != 1 {
		return nil, fmt.Errorf("%s: lexicon version %d, want 1", path, d.Lexicon)
	}
	if d.ID == "" {
		return nil, fmt.Errorf("%s: no id", path)
	}
	d.path = path
	return &d, nil
}
