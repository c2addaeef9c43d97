package kubernetes

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomization.yaml this test reads.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Resources []string `json:"resources"`
}

// objects are the decoded manifests, by kind/name.
type objects struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	secrets     map[string]*corev1.Secret
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
}

// load decodes every resource the kustomization lists, strictly.
func load(t *testing.T) objects {
	t.Helper()
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.Kind != "Kustomization" || len(k.Resources) == 0 {
		t.Fatalf("kustomization.yaml: kind %q with %d resources", k.Kind, len(k.Resources))
	}
	// Every manifest in the directory is in the kustomization.
	yamls, _ := filepath.Glob("*.yaml")
	for _, y := range yamls {
		if y != "kustomization.yaml" && !contains(k.Resources, y) {
			t.Errorf("%s is not listed in kustomization.yaml", y)
		}
	}
	o := objects{map[string]*appsv1.Deployment{}, map[string]*corev1.Service{}, map[string]*corev1.Secret{},
		map[string]*policyv1.PodDisruptionBudget{}, map[string]*autoscalingv2.HorizontalPodAutoscaler{}}
	for _, file := range k.Resources {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", file, err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s document %d: %v", file, i, err)
			}
			where := fmt.Sprintf("%s document %d (%s %s)", file, i, meta.APIVersion, meta.Kind)
			var name string
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 Deployment":
				var d appsv1.Deployment
				strict(t, where, doc, &d)
				name, o.deployments[d.Name] = d.Name, &d
			case "v1 Service":
				var s corev1.Service
				strict(t, where, doc, &s)
				name, o.services[s.Name] = s.Name, &s
			case "v1 Secret":
				var s corev1.Secret
				strict(t, where, doc, &s)
				name, o.secrets[s.Name] = s.Name, &s
			case "policy/v1 PodDisruptionBudget":
				var p policyv1.PodDisruptionBudget
				strict(t, where, doc, &p)
				name, o.pdbs[p.Name] = p.Name, &p
			case "autoscaling/v2 HorizontalPodAutoscaler":
				var h autoscalingv2.HorizontalPodAutoscaler
				strict(t, where, doc, &h)
				name, o.hpas[h.Name] = h.Name, &h
			default:
				t.Fatalf("%s: a kind this test does not validate; add it", where)
			}
			if name == "" {
				t.Errorf("%s: no metadata.name", where)
			}
		}
	}
	return o
}

func strict(t *testing.T, where, doc string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestStrictDecodingRejectsATypo shows the validator is real: a misspelled
// field fails.
func TestStrictDecodingRejectsATypo(t *testing.T) {
	b, err := os.ReadFile("deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(b), "readinessProbe:", "readinesProbe:", 1)
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(bad), &d); err == nil || !strings.Contains(err.Error(), "readinesProbe") {
		t.Fatalf("a misspelled field decoded without error: %v", err)
	}
}

func TestManifestsAreConsistent(t *testing.T) {
	o := load(t)
	d := o.deployments["herd"]
	if d == nil {
		t.Fatal("no Deployment herd")
	}
	sel := d.Spec.Selector.MatchLabels
	for k, v := range sel {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("Deployment selector %s=%s does not match its pod template", k, v)
		}
	}
	svc := o.services["herd"]
	if svc == nil || !mapEq(svc.Spec.Selector, sel) {
		t.Errorf("Service herd does not select the Deployment's pods")
	}
	if p := o.pdbs["herd"]; p == nil || !mapEq(p.Spec.Selector.MatchLabels, sel) {
		t.Errorf("PodDisruptionBudget herd does not select the Deployment's pods")
	}
	if h := o.hpas["herd"]; h == nil || h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != "herd" {
		t.Errorf("HorizontalPodAutoscaler herd does not scale the Deployment")
	}
	c := herdContainer(t, d)
	if svc != nil && svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("Service targets port %s, want the container's http port", svc.Spec.Ports[0].TargetPort.String())
	}
	// Security: non-root, read-only root, no escalation, no capabilities.
	ps := d.Spec.Template.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 {
		t.Errorf("pod securityContext must run as a non-root numeric user")
	}
	cs := c.SecurityContext
	if cs == nil || cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem ||
		cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation ||
		cs.Capabilities == nil || !contains(capStrings(cs.Capabilities.Drop), "ALL") {
		t.Errorf("container securityContext must set readOnlyRootFilesystem, no privilege escalation, drop ALL")
	}
	if c.Resources.Limits.Cpu().IsZero() {
		t.Errorf("no CPU limit: herd's worker count follows it")
	}
	// REDIS_URL comes from a Secret the kustomization holds, by a key it has.
	for _, e := range c.Env {
		if e.Name == "REDIS_URL" {
			ref := e.ValueFrom
			if ref == nil || ref.SecretKeyRef == nil {
				t.Fatalf("REDIS_URL is not from a Secret")
			}
			s := o.secrets[ref.SecretKeyRef.Name]
			if s == nil {
				t.Fatalf("REDIS_URL refers to Secret %q, not in the kustomization", ref.SecretKeyRef.Name)
			}
			if _, ok := s.StringData[ref.SecretKeyRef.Key]; !ok {
				if _, ok := s.Data[ref.SecretKeyRef.Key]; !ok {
					t.Fatalf("Secret %s has no key %q", s.Name, ref.SecretKeyRef.Key)
				}
			}
		}
	}
	if r := o.services["redis"]; r == nil || o.deployments["redis"] == nil {
		t.Errorf("no Redis Deployment and Service")
	}
}

func capStrings(cs []corev1.Capability) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}

func mapEq(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func herdContainer(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "herd" {
			return c
		}
	}
	t.Fatal("no container herd in the Deployment")
	return corev1.Container{}
}

func env(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// buildHerd builds the herd binary from this repository.
func buildHerd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "herd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/herd")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/herd: %v\n%s", err, out)
	}
	return bin
}

// TestManifestsMatchTheHerdBinary checks the Deployment against the real
// binary: every env var it sets is a setting herd serve reads (from
// "herd serve --help"), the values are ones herd accepts, the grace period
// covers the drain delay plus the shutdown timeout, and the probes' paths
// answer 200 on the container port from a running herd configured by the
// manifest's own environment.
func TestManifestsMatchTheHerdBinary(t *testing.T) {
	o := load(t)
	d := o.deployments["herd"]
	c := herdContainer(t, d)
	bin := buildHerd(t)

	help, err := exec.Command(bin, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("herd serve --help: %v\n%s", err, help)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(env ([A-Z_]+)\)`).FindAllStringSubmatch(string(help), -1) {
		known[m[1]] = true
	}
	if len(known) < 10 {
		t.Fatalf("found only %d settings in herd serve --help:\n%s", len(known), help)
	}
	for _, e := range c.Env {
		if !known[e.Name] {
			t.Errorf("the Deployment sets %s, which herd serve does not read", e.Name)
		}
	}

	drain, err := time.ParseDuration(env(c, "DRAIN_DELAY"))
	if err != nil || drain <= 0 {
		t.Fatalf("DRAIN_DELAY %q: want a positive duration behind a Service", env(c, "DRAIN_DELAY"))
	}
	shutdown, err := time.ParseDuration(env(c, "SHUTDOWN_TIMEOUT"))
	if err != nil {
		t.Fatalf("SHUTDOWN_TIMEOUT %q: %v", env(c, "SHUTDOWN_TIMEOUT"), err)
	}
	// herd kills workers 2 s after the shutdown timeout as a backstop.
	need := drain + shutdown + 2*time.Second
	grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil || time.Duration(*grace)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds %v must exceed drain delay + shutdown timeout + 2s = %s", grace, need)
	}

	// The probes name the container port, which is herd's PORT.
	var httpPort int32
	for _, p := range c.Ports {
		if p.Name == "http" {
			httpPort = p.ContainerPort
		}
	}
	if strconv.Itoa(int(httpPort)) != env(c, "PORT") {
		t.Fatalf("container port http %d is not herd's PORT %q", httpPort, env(c, "PORT"))
	}
	probes := map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe}
	for name, p := range probes {
		if p == nil || p.HTTPGet == nil {
			t.Fatalf("%s: want an httpGet probe", name)
		}
		if pp := p.HTTPGet.Port.String(); pp != "http" && pp != env(c, "PORT") {
			t.Errorf("%s probes port %s, not herd's", name, pp)
		}
	}
	if c.LivenessProbe.TimeoutSeconds <= 5 {
		t.Errorf("livenessProbe timeout %ds: /cluster/workers waits up to 5 s for the primary", c.LivenessProbe.TimeoutSeconds)
	}

	// Run herd with the manifest's settings (on a free loopback port, no
	// Redis: the probes do not need the store) and ask every probe's path.
	port := freePort(t)
	cmd := exec.Command(bin, c.Args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for _, e := range c.Env {
		switch e.Name {
		case "REDIS_URL":
		case "PORT":
			cmd.Env = append(cmd.Env, "PORT="+strconv.Itoa(port))
		default:
			cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
		}
	}
	cmd.Env = append(cmd.Env, "HOST=127.0.0.1", "CLUSTER_WORKERS=2", "CONTROL_SOCKET="+filepath.Join(t.TempDir(), "c.sock"))
	cmd.Dir = t.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // herd and its workers: their own group
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("herd output:\n%s", out.String())
		}
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	for name, p := range probes {
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := http.Get(base + p.HTTPGet.Path)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: GET %s never answered 200 (last: %v)", name, p.HTTPGet.Path, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// /readyz turns 503 on SIGTERM during the drain delay: what makes the
	// readiness probe take the pod out of the Service before it drains.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(drain)
	for {
		resp, err := http.Get(base + c.ReadinessProbe.HTTPGet.Path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 503 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness path did not answer 503 during the %s drain delay (last: %v)", drain, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
