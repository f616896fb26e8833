// Package plugin is how channels and filters declare themselves: a name, the settings the
// plug-in reads (each an environment variable with its default, a check and a line of
// documentation) and its constructor, registered together into a Registry value, as a benthos
// plug-in is a spec and a constructor. The worker builds what is registered; the mains read every
// registered setting from the environment in one place (FromEnv) and print the usage text from
// the same declarations (Usage). Nothing keeps a list of plug-in names by hand.
package plugin

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Field is one setting of a plug-in, read from an environment variable.
type Field struct {
	// Env is the variable's name (OMEGA_SMS_URL).
	Env string
	// Default is the value when the variable is unset or empty.
	Default string
	// Doc is one line for the usage text.
	Doc string
	// Secret settings may be given as a file instead: <Env>_FILE.
	Secret bool
	// Check refuses a value the plug-in cannot use (nil: any); FromEnv runs it at start, so a
	// bad setting stops the process before it serves.
	Check func(v string) error
}

// Spec declares a plug-in of a family whose plug-ins are T, built with the shared clients D.
type Spec[T, D any] struct {
	Name string
	// Doc is one line for the usage text.
	Doc    string
	Fields []Field
	// New builds the plug-in from its settings (every registered field's, defaults applied) and
	// the process's shared clients. A family may let it return the zero T for "not enabled by
	// these settings" (a filter without its window).
	New func(s Values, deps D) (T, error)
}

// Registry holds a family's specs by name, in registration order. A registry is a value: the
// worker builds from the one it is given, tests from their own.
type Registry[T, D any] struct {
	specs []Spec[T, D]
}

// Register adds a spec and refuses a second one with the same name or one without a constructor.
// Plug-ins may read each other's fields (push and SMS fall back to the webhook's URL).
func (r *Registry[T, D]) Register(s Spec[T, D]) error {
	if s.Name == "" || s.New == nil {
		return fmt.Errorf("plug-in %q: a name and a constructor are required", s.Name)
	}
	for _, o := range r.specs {
		if o.Name == s.Name {
			return fmt.Errorf("plug-in %q registered twice", s.Name)
		}
	}
	r.specs = append(r.specs, s)
	return nil
}

// MustRegister is Register for declarations in init functions: a duplicate is a programming error.
func (r *Registry[T, D]) MustRegister(s Spec[T, D]) {
	if err := r.Register(s); err != nil {
		panic(err)
	}
}

// Specs returns the specs in registration order.
func (r *Registry[T, D]) Specs() []Spec[T, D] { return slices.Clone(r.specs) }

// Names returns the registered names in registration order.
func (r *Registry[T, D]) Names() []string {
	out := make([]string, len(r.specs))
	for i, s := range r.specs {
		out[i] = s.Name
	}
	return out
}

// Fields returns every spec's fields, each variable once, in registration order.
func (r *Registry[T, D]) Fields() []Field {
	var out []Field
	seen := map[string]bool{}
	for _, s := range r.specs {
		for _, f := range s.Fields {
			if !seen[f.Env] {
				seen[f.Env] = true
				out = append(out, f)
			}
		}
	}
	return out
}

// Clone returns a registry with the same specs, to register more into without touching r.
func (r *Registry[T, D]) Clone() *Registry[T, D] {
	return &Registry[T, D]{specs: slices.Clone(r.specs)}
}

// Values are settings by variable name.
type Values map[string]string

// Defaults returns the fields' defaults.
func Defaults(fields []Field) Values {
	v := Values{}
	for _, f := range fields {
		v[f.Env] = f.Default
	}
	return v
}

// With returns v overlaid by over (an empty value in over keeps v's).
func (v Values) With(over Values) Values {
	out := make(Values, len(v)+len(over))
	for k, x := range v {
		out[k] = x
	}
	for k, x := range over {
		if x != "" {
			out[k] = x
		}
	}
	return out
}

// Get returns a setting ("" when unknown).
func (v Values) Get(env string) string { return v[env] }

// FromEnv reads fields through lookup (the main's: the environment, and <Env>_FILE for secrets),
// applies defaults and checks every value; an error names the variable.
func FromEnv(fields []Field, lookup func(f Field) (string, error)) (Values, error) {
	out := Values{}
	for _, f := range fields {
		x, err := lookup(f)
		if err != nil {
			return nil, err
		}
		if x == "" {
			x = f.Default
		}
		if f.Check != nil && x != "" {
			if err := f.Check(x); err != nil {
				return nil, fmt.Errorf("%s: %w", f.Env, err)
			}
		}
		out[f.Env] = x
	}
	return out, nil
}

// Usage writes one line per field: variable, default in brackets, documentation.
func Usage(w io.Writer, fields []Field) {
	for _, f := range fields {
		name := f.Env
		if f.Secret {
			name += " (or " + f.Env + "_FILE)"
		}
		def := ""
		if f.Default != "" {
			def = " [" + f.Default + "]"
		}
		line := "  " + name + def
		if f.Doc != "" {
			line += ": " + f.Doc
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}
