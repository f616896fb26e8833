// Command deploycheck validates the deployment manifests without a cluster (`make deploy-check`):
// every Kubernetes document decodes strictly into its API type (an unknown or misspelt field is an
// error), and the set holds together: each Deployment has an image, resource requests and a memory
// limit, liveness and readiness probes on a declared port, runs as non-root, and selects its own
// pods; Services, HorizontalPodAutoscalers and PodDisruptionBudgets point at a Deployment that
// exists; envFrom names a ConfigMap or Secret that is defined; the kustomization lists files that
// exist. The compose file must parse, and each omega service must have a command and a health check.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	dir := "deploy"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := check(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("deploy-check: ok")
}

type objects struct {
	deployments map[string]*appsv1.Deployment
	jobs        []*batchv1.Job
	services    []*corev1.Service
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	pdbs        []*policyv1.PodDisruptionBudget
	configMaps  map[string]bool
	secrets     map[string]bool
}

func check(dir string) error {
	o := &objects{deployments: map[string]*appsv1.Deployment{}, configMaps: map[string]bool{}, secrets: map[string]bool{}}
	files, err := filepath.Glob(filepath.Join(dir, "k8s", "*.yaml"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no manifests in %s/k8s", dir)
	}
	var errs []error
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		if err := o.load(f); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, o.consistent()...)
	errs = append(errs, kustomization(filepath.Join(dir, "k8s")), compose(filepath.Join(dir, "compose", "compose.yaml")))
	return errors.Join(errs...)
}

func (o *objects) load(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var errs []error
	for i, doc := range bytes.Split(b, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			errs = append(errs, fmt.Errorf("%s doc %d: %w", path, i, err))
			continue
		}
		at := fmt.Sprintf("%s: %s %s", path, meta.APIVersion, meta.Kind)
		var into any
		switch meta.APIVersion + " " + meta.Kind {
		case "apps/v1 Deployment":
			d := &appsv1.Deployment{}
			into = d
			defer func() { o.deployments[d.Name] = d }()
		case "batch/v1 Job":
			j := &batchv1.Job{}
			into, o.jobs = j, append(o.jobs, j)
		case "v1 Service":
			s := &corev1.Service{}
			into, o.services = s, append(o.services, s)
		case "v1 ConfigMap":
			c := &corev1.ConfigMap{}
			into = c
			defer func() { o.configMaps[c.Name] = true }()
		case "v1 Secret":
			s := &corev1.Secret{}
			into = s
			defer func() { o.secrets[s.Name] = true }()
		case "autoscaling/v2 HorizontalPodAutoscaler":
			h := &autoscalingv2.HorizontalPodAutoscaler{}
			into, o.hpas = h, append(o.hpas, h)
		case "policy/v1 PodDisruptionBudget":
			p := &policyv1.PodDisruptionBudget{}
			into, o.pdbs = p, append(o.pdbs, p)
		default:
			errs = append(errs, fmt.Errorf("%s: not a kind this check knows", at))
			continue
		}
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
		}
	}
	return errors.Join(errs...)
}

func (o *objects) consistent() []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	podSpecs := map[string]corev1.PodSpec{}
	for name, d := range o.deployments {
		podSpecs["Deployment "+name] = d.Spec.Template.Spec
		if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			fail("Deployment %s: its selector does not select its own pods", name)
		}
	}
	for _, j := range o.jobs {
		podSpecs["Job "+j.Name] = j.Spec.Template.Spec
	}
	for what, ps := range podSpecs {
		if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
			fail("%s: must run as non-root (securityContext.runAsNonRoot)", what)
		}
		for _, c := range ps.Containers {
			at := what + " container " + c.Name
			if c.Image == "" {
				fail("%s: no image", at)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				fail("%s: needs cpu and memory requests and a memory limit", at)
			}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil && !o.configMaps[ef.ConfigMapRef.Name] {
					fail("%s: envFrom names ConfigMap %q, which is not defined", at, ef.ConfigMapRef.Name)
				}
				if ef.SecretRef != nil && !o.secrets[ef.SecretRef.Name] {
					fail("%s: envFrom names Secret %q, which is not defined (not even as an example)", at, ef.SecretRef.Name)
				}
			}
			if strings.HasPrefix(what, "Job") {
				continue
			}
			ports := map[string]bool{}
			for _, p := range c.Ports {
				ports[p.Name] = true
			}
			for kind, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				switch {
				case pr == nil || pr.HTTPGet == nil:
					fail("%s: needs an HTTP %s probe", at, kind)
				case pr.HTTPGet.Port.StrVal != "" && !ports[pr.HTTPGet.Port.StrVal]:
					fail("%s: %s probe port %q is not declared", at, kind, pr.HTTPGet.Port.StrVal)
				}
			}
		}
	}
	deploymentFor := func(labels map[string]string) bool {
		for _, d := range o.deployments {
			if selects(labels, d.Spec.Template.Labels) {
				return true
			}
		}
		return false
	}
	for _, s := range o.services {
		if !deploymentFor(s.Spec.Selector) {
			fail("Service %s: selects no Deployment's pods", s.Name)
		}
	}
	for _, p := range o.pdbs {
		if p.Spec.Selector == nil || !deploymentFor(p.Spec.Selector.MatchLabels) {
			fail("PodDisruptionBudget %s: selects no Deployment's pods", p.Name)
		}
	}
	for _, h := range o.hpas {
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || o.deployments[h.Spec.ScaleTargetRef.Name] == nil {
			fail("HorizontalPodAutoscaler %s: scales %s %q, which is not defined", h.Name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			fail("HorizontalPodAutoscaler %s: minReplicas must be set and at most maxReplicas", h.Name)
		}
	}
	for _, want := range []string{"omega-api", "omega-cep", "omega-worker"} {
		if o.deployments[want] == nil {
			fail("no Deployment %s", want)
		}
	}
	return errs
}

// selects reports whether every label of sel is on the pod.
func selects(sel, pod map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if pod[k] != v {
			return false
		}
	}
	return true
}

func kustomization(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return err
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		return fmt.Errorf("kustomization.yaml: %w", err)
	}
	var errs []error
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			errs = append(errs, fmt.Errorf("kustomization.yaml: resource %s: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

func compose(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var c struct {
		Services map[string]map[string]any `json:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	for _, name := range []string{"kafka", "redis", "postgres", "temporal", "migrate", "api", "cep", "worker"} {
		if c.Services[name] == nil {
			errs = append(errs, fmt.Errorf("%s: no service %s", path, name))
		}
	}
	for _, name := range []string{"api", "cep", "worker"} {
		s := c.Services[name]
		if s == nil {
			continue
		}
		cmd, _ := s["command"].([]any)
		if len(cmd) == 0 || !slices.Contains([]string{"api", "cep", "worker"}, fmt.Sprint(cmd[0])) {
			errs = append(errs, fmt.Errorf("%s: service %s runs no omega command", path, name))
		}
		if s["healthcheck"] == nil {
			errs = append(errs, fmt.Errorf("%s: service %s has no health check", path, name))
		}
	}
	return errors.Join(errs...)
}
