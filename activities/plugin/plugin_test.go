package plugin_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/activities/plugin"
)

type greeter struct{ greeting string }

// A plug-in family is a registry value; each plug-in declares its name, settings and constructor.
func Example() {
	var reg plugin.Registry[greeter, struct{}]
	reg.MustRegister(plugin.Spec[greeter, struct{}]{
		Name:   "hello",
		Fields: []plugin.Field{{Env: "OMEGA_GREETING", Default: "hello", Doc: "what to say"}},
		New: func(s plugin.Values, _ struct{}) (greeter, error) {
			return greeter{greeting: s.Get("OMEGA_GREETING")}, nil
		},
	})
	settings, _ := plugin.FromEnv(reg.Fields(), func(f plugin.Field) (string, error) { return os.Getenv(f.Env), nil })
	for _, spec := range reg.Specs() {
		g, _ := spec.New(settings, struct{}{})
		fmt.Println(spec.Name, "says", g.greeting)
	}
	plugin.Usage(os.Stdout, reg.Fields())
	// Output:
	// hello says hello
	//   OMEGA_GREETING [hello]: what to say
}

func TestRegistry(t *testing.T) {
	var reg plugin.Registry[int, struct{}]
	one := func(plugin.Values, struct{}) (int, error) { return 1, nil }
	require.NoError(t, reg.Register(plugin.Spec[int, struct{}]{Name: "a", New: one,
		Fields: []plugin.Field{{Env: "X"}, {Env: "Y"}}}))
	require.ErrorContains(t, reg.Register(plugin.Spec[int, struct{}]{Name: "a", New: one}), `"a" registered twice`)
	require.ErrorContains(t, reg.Register(plugin.Spec[int, struct{}]{Name: "b"}), "a name and a constructor are required")
	clone := reg.Clone()
	require.NoError(t, clone.Register(plugin.Spec[int, struct{}]{Name: "b", New: one, Fields: []plugin.Field{{Env: "Y"}, {Env: "Z"}}}))
	require.Equal(t, []string{"a"}, reg.Names(), "a clone's registrations stay in the clone")
	require.Equal(t, []string{"a", "b"}, clone.Names())
	var envs []string
	for _, f := range clone.Fields() {
		envs = append(envs, f.Env)
	}
	require.Equal(t, []string{"X", "Y", "Z"}, envs, "a field two plug-ins read is listed once")
}

func TestFromEnv(t *testing.T) {
	fields := []plugin.Field{
		{Env: "CAP", Default: "3", Check: plugin.Count},
		{Env: "CAPS", Check: plugin.Counts},
		{Env: "TOKEN", Secret: true},
	}
	env := map[string]string{"CAPS": "sms=1", "TOKEN_FILE": "/secret"}
	lookup := func(f plugin.Field) (string, error) {
		if f.Secret && env[f.Env+"_FILE"] != "" {
			return "from-file", nil
		}
		return env[f.Env], nil
	}
	v, err := plugin.FromEnv(fields, lookup)
	require.NoError(t, err)
	require.Equal(t, plugin.Values{"CAP": "3", "CAPS": "sms=1", "TOKEN": "from-file"}, v)

	env["CAP"] = "-1"
	_, err = plugin.FromEnv(fields, lookup)
	require.EqualError(t, err, "CAP: not a number")
	env["CAP"], env["CAPS"] = "", "sms"
	_, err = plugin.FromEnv(fields, lookup)
	require.EqualError(t, err, "CAPS: want channel=N,... (sms=1,push=3)")

	_, err = plugin.FromEnv(fields, func(plugin.Field) (string, error) { return "", errors.New("TOKEN_FILE: unreadable") })
	require.EqualError(t, err, "TOKEN_FILE: unreadable")

	require.Equal(t, plugin.Values{"CAP": "5", "CAPS": ""}, plugin.Defaults(fields[:2]).With(plugin.Values{"CAP": "5", "CAPS": ""}))
}

func TestUsage(t *testing.T) {
	var b strings.Builder
	plugin.Usage(&b, []plugin.Field{{Env: "OMEGA_SMS_TOKEN", Secret: true, Doc: "bearer token"}, {Env: "OMEGA_X"}})
	require.Equal(t, "  OMEGA_SMS_TOKEN (or OMEGA_SMS_TOKEN_FILE): bearer token\n  OMEGA_X\n", b.String())
}
