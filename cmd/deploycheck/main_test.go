package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestManifestsAreValid(t *testing.T) {
	require.NoError(t, check("../../deploy"))
}

// copyDeploy copies deploy/ to a temporary directory the test may break.
func copyDeploy(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	require.NoError(t, os.CopyFS(dst, os.DirFS("../../deploy")))
	return dst
}

func TestBrokenManifestsAreRefused(t *testing.T) {
	for name, tt := range map[string]struct {
		file, old, new, want string
	}{
		"misspelt field":     {"k8s/api.yaml", "  replicas: 2", "  replicaz: 2", "unknown field \"replicaz\""},
		"no readiness probe": {"k8s/worker.yaml", "          readinessProbe:\n            httpGet: {path: /readyz, port: metrics}\n            periodSeconds: 5\n", "", "readiness probe"},
		"probe on no port":   {"k8s/cep.yaml", "livenessProbe:\n            httpGet: {path: /healthz, port: metrics}", "livenessProbe:\n            httpGet: {path: /healthz, port: admin}", `port "admin" is not declared`},
		"no memory limit":    {"k8s/cep.yaml", "limits: {memory: 1Gi}", "limits: {}", "memory limit"},
		"unknown configmap":  {"k8s/worker.yaml", "configMapRef: {name: omega-config}", "configMapRef: {name: omega-cfg}", `ConfigMap "omega-cfg"`},
		"hpa on nothing":     {"k8s/api.yaml", "kind: Deployment, name: omega-api}", "kind: Deployment, name: omega-apy}", `"omega-apy"`},
		"missing resource":   {"k8s/kustomization.yaml", "  - cep.yaml", "  - cep.yaml\n  - gone.yaml", "gone.yaml"},
		"compose no health":  {"compose/compose.yaml", "  healthcheck:\n    test: [\"CMD\", \"/omega\", \"probe\"", "  hc:\n    test: [\"CMD\", \"/omega\", \"probe\"", "no health check"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := copyDeploy(t)
			path := filepath.Join(dir, tt.file)
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Contains(t, string(b), tt.old)
			require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(b), tt.old, tt.new, 1)), 0o644))
			err = check(dir)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}
