package spec

import (
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// FieldError is a document refused at one field: its path ("steps[1].within") and why.
type FieldError struct {
	Path   string
	Reason string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Reason }

// Unmarshal reads YAML or JSON into v, refusing unknown fields so a typo is not silently ignored.
// A refusal the decoder cannot place (a bad duration, an unknown field) is returned as a
// *FieldError naming the field's path when it can be found in the document.
func Unmarshal(b []byte, v any) error {
	err := yaml.UnmarshalStrict(b, v)
	if err == nil {
		return nil
	}
	var doc any
	if yaml.Unmarshal(b, &doc) != nil {
		return err // not a document at all: the decoder's own words
	}
	if fe := locate(doc, reflect.TypeOf(v), ""); fe != nil {
		return fe
	}
	return err
}

// locate walks doc beside the Go type t and returns the first field doc cannot be decoded into:
// a key t has no field for, or a value its field refuses.
func locate(doc any, t reflect.Type, path string) *FieldError {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if doc == nil {
		return nil
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) || t.Kind() != reflect.Struct && t.Kind() != reflect.Slice && t.Kind() != reflect.Map {
		raw, err := json.Marshal(doc)
		if err != nil {
			return nil
		}
		if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
			return &FieldError{Path: orDocument(path), Reason: reason(err)}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := doc.(map[string]any)
		if !ok {
			return &FieldError{Path: orDocument(path), Reason: "must be an object"}
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[strings.ToLower(k)] // as encoding/json matches names
			if !ok {
				return &FieldError{Path: join(path, k), Reason: "unknown field"}
			}
			if fe := locate(m[k], ft, join(path, k)); fe != nil {
				return fe
			}
		}
	case reflect.Slice:
		s, ok := doc.([]any)
		if !ok {
			if t.Elem().Kind() == reflect.Uint8 {
				return nil
			}
			return &FieldError{Path: orDocument(path), Reason: "must be a list"}
		}
		for i, e := range s {
			if fe := locate(e, t.Elem(), path+"["+strconv.Itoa(i)+"]"); fe != nil {
				return fe
			}
		}
	case reflect.Map:
		m, ok := doc.(map[string]any)
		if !ok {
			return &FieldError{Path: orDocument(path), Reason: "must be an object"}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if fe := locate(m[k], t.Elem(), join(path, k)); fe != nil {
				return fe
			}
		}
	}
	return nil
}

// jsonFields maps a struct's JSON names, lower-cased, to their types, embedded structs' fields
// included.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			for et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for k, v := range jsonFields(et) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[strings.ToLower(name)] = f.Type
	}
	return out
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func orDocument(path string) string {
	if path == "" {
		return "(document)"
	}
	return path
}

// reason is a decoding error without the decoder's own prefix.
func reason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "must be " + te.Type.String() + ", not " + te.Value
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// Refusal splits an Unmarshal error into the field it names ("(document)" when none) and why.
func Refusal(err error) (field, reason string) {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Path, fe.Reason
	}
	return "(document)", err.Error()
}

// Name reads the string at key of a document that may not decode otherwise ("" when it has none):
// the ID a refusal names.
func Name(b []byte, key string) string {
	var doc map[string]any
	if yaml.Unmarshal(b, &doc) != nil {
		return ""
	}
	s, _ := doc[key].(string)
	return s
}
