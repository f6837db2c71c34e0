package deploytest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The Kubernetes objects kinlog ships, as far as the checks need them.

type meta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type typeMeta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
}

type labelSelector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []any             `yaml:"matchExpressions"`
}

// intOrString is a port given by number or by name.
type intOrString struct {
	Int int
	Str string
}

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: port must be a number or a name", n.Line)
	}
	if n.Tag == "!!int" {
		i, err := strconv.Atoi(n.Value)
		v.Int = i
		return err
	}
	v.Str = n.Value
	return nil
}

type probe struct {
	HTTPGet *struct {
		Path string      `yaml:"path"`
		Port intOrString `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		RunAsUser                *int  `yaml:"runAsUser"`
		Privileged               *bool `yaml:"privileged"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type deployment struct {
	typeMeta `yaml:",inline"`
	Spec     struct {
		Replicas *int          `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Template struct {
			Metadata meta `yaml:"metadata"`
			Spec     struct {
				ServiceAccountName            string `yaml:"serviceAccountName"`
				TerminationGracePeriodSeconds *int   `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot *bool `yaml:"runAsNonRoot"`
					RunAsUser    *int  `yaml:"runAsUser"`
					RunAsGroup   *int  `yaml:"runAsGroup"`
				} `yaml:"securityContext"`
				Containers []container `yaml:"containers"`
				Volumes    []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
					EmptyDir *struct{} `yaml:"emptyDir"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type service struct {
	typeMeta `yaml:",inline"`
	Spec     struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string      `yaml:"name"`
			Port       int         `yaml:"port"`
			TargetPort intOrString `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type pdb struct {
	typeMeta `yaml:",inline"`
	Spec     struct {
		MaxUnavailable *intOrString  `yaml:"maxUnavailable"`
		MinAvailable   *intOrString  `yaml:"minAvailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type serviceMonitor struct {
	typeMeta `yaml:",inline"`
	Spec     struct {
		NamespaceSelector struct {
			MatchNames []string `yaml:"matchNames"`
		} `yaml:"namespaceSelector"`
		Selector  labelSelector `yaml:"selector"`
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

type configMap struct {
	typeMeta `yaml:",inline"`
	Data     map[string]string `yaml:"data"`
}

// manifests is infra/k8s, decoded.
type manifests struct {
	objects        []typeMeta // every document, in file order
	files          []string   // the manifest files (not kustomization.yaml)
	kustomizeFiles []string   // resources listed in kustomization.yaml
	deployment     deployment
	service        service
	pdb            pdb
	serviceMonitor serviceMonitor
	configMap      configMap
	serviceAccount typeMeta
}

// decodeAll decodes every YAML document of r, failing on syntax errors and on duplicate keys.
func decodeAll(r io.Reader) ([]yaml.Node, error) {
	dec := yaml.NewDecoder(r)
	var docs []yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if err := noDuplicateKeys(&n); err != nil {
			return nil, err
		}
		docs = append(docs, n)
	}
}

// noDuplicateKeys rejects a mapping that repeats a key: decoding would silently keep the last.
func noDuplicateKeys(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if seen[k.Value] {
				return fmt.Errorf("line %d: duplicate key %q", k.Line, k.Value)
			}
			seen[k.Value] = true
		}
	}
	for _, c := range n.Content {
		if err := noDuplicateKeys(c); err != nil {
			return err
		}
	}
	return nil
}

func loadManifests(t testing.TB) *manifests {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "infra", "k8s")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ms := &manifests{}
	seen := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := decodeAll(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("decoding %s: %v", f, err)
		}
		base := filepath.Base(f)
		if base == "kustomization.yaml" {
			var k struct {
				Resources []string `yaml:"resources"`
			}
			if err := docs[0].Decode(&k); err != nil {
				t.Fatalf("decoding %s: %v", f, err)
			}
			ms.kustomizeFiles = k.Resources
			continue
		}
		ms.files = append(ms.files, base)
		for _, d := range docs {
			var tm typeMeta
			if err := d.Decode(&tm); err != nil {
				t.Fatalf("decoding %s: %v", f, err)
			}
			key := tm.Kind + "/" + tm.Metadata.Name
			if seen[key] {
				t.Fatalf("%s: %s defined twice", f, key)
			}
			seen[key] = true
			ms.objects = append(ms.objects, tm)
			var target any
			switch tm.Kind {
			case "Deployment":
				target = &ms.deployment
			case "Service":
				target = &ms.service
			case "PodDisruptionBudget":
				target = &ms.pdb
			case "ServiceMonitor":
				target = &ms.serviceMonitor
			case "ConfigMap":
				target = &ms.configMap
			case "ServiceAccount":
				target = &ms.serviceAccount
			default:
				continue
			}
			if err := d.Decode(target); err != nil {
				t.Fatalf("decoding %s %s: %v", f, key, err)
			}
		}
	}
	return ms
}

// wantKinds are the objects infra/k8s must contain, with their API versions.
var wantKinds = map[string]string{
	"Namespace":           "v1",
	"ServiceAccount":      "v1",
	"ConfigMap":           "v1",
	"Deployment":          "apps/v1",
	"Service":             "v1",
	"PodDisruptionBudget": "policy/v1",
	"ServiceMonitor":      "monitoring.coreos.com/v1",
}

// kinlogConfig is the part of kinlog.yaml (in the ConfigMap) the deployment depends on.
type kinlogConfig struct {
	HTTP struct {
		Listen string `yaml:"listen"`
	} `yaml:"http"`
	Shutdown struct {
		Timeout string `yaml:"timeout"`
	} `yaml:"shutdown"`
	Stream string `yaml:"stream"`
	Sink   struct {
		S3 struct {
			Bucket string `yaml:"bucket"`
			Prefix string `yaml:"prefix"`
		} `yaml:"s3"`
	} `yaml:"sink"`
}

const configFile = "/etc/kinlog/kinlog.yaml"

func (ms *manifests) kinlogConfig() (kinlogConfig, error) {
	var c kinlogConfig
	raw, ok := ms.configMap.Data[path.Base(configFile)]
	if !ok {
		return c, fmt.Errorf("ConfigMap %s has no key %s", ms.configMap.Metadata.Name, path.Base(configFile))
	}
	dec := yaml.NewDecoder(strings.NewReader(raw))
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("ConfigMap %s: %s does not parse: %w", ms.configMap.Metadata.Name, path.Base(configFile), err)
	}
	return c, nil
}

// selects reports whether sel selects pods labelled labels. matchExpressions are not used by
// kinlog's manifests and count as not selecting.
func selects(sel labelSelector, labels map[string]string) bool {
	if len(sel.MatchExpressions) > 0 || len(sel.MatchLabels) == 0 {
		return false
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// containerPort resolves a probe or Service port (by number or name) to a container port.
func containerPort(c container, p intOrString) (int, bool) {
	for _, cp := range c.Ports {
		if (p.Str != "" && cp.Name == p.Str) || (p.Str == "" && cp.ContainerPort == p.Int) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// quantity parses the Kubernetes quantities kinlog uses: plain numbers, milli (m) and binary
// suffixes (Ki, Mi, Gi). It returns thousandths of the unit so CPU and memory compare alike.
func quantity(s string) (int64, error) {
	mult := int64(1000)
	num := s
	for _, suf := range []struct {
		s string
		m int64
	}{{"Ki", 1 << 10 * 1000}, {"Mi", 1 << 20 * 1000}, {"Gi", 1 << 30 * 1000}, {"m", 1}} {
		if strings.HasSuffix(s, suf.s) {
			mult, num = suf.m, strings.TrimSuffix(s, suf.s)
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("quantity %q: want a positive integer with an optional m, Ki, Mi or Gi suffix", s)
	}
	return n * mult, nil
}

// checkManifests returns everything wrong with the decoded manifests.
func checkManifests(ms *manifests) problems {
	var ps problems

	// Kinds, API versions, namespaces.
	kinds := map[string]bool{}
	for _, o := range ms.objects {
		kinds[o.Kind] = true
		want, ok := wantKinds[o.Kind]
		switch {
		case !ok:
			ps.addf("%s %s: unexpected kind", o.Kind, o.Metadata.Name)
		case o.APIVersion != want:
			ps.addf("%s %s: apiVersion %q, want %q", o.Kind, o.Metadata.Name, o.APIVersion, want)
		}
		if o.Metadata.Name == "" {
			ps.addf("%s without metadata.name", o.Kind)
		}
		if o.Kind != "Namespace" && o.Metadata.Namespace != "kinlog" {
			ps.addf("%s %s: namespace %q, want kinlog", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
	}
	for k := range wantKinds {
		if !kinds[k] {
			ps.addf("no %s manifest", k)
		}
	}
	if a, b := slices.Sorted(slices.Values(ms.kustomizeFiles)), slices.Sorted(slices.Values(ms.files)); !slices.Equal(a, b) {
		ps.addf("kustomization.yaml lists %v, the directory has %v", a, b)
	}

	d := ms.deployment
	pod := d.Spec.Template.Spec
	podLabels := d.Spec.Template.Metadata.Labels

	// Deployment shape.
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		ps.addf("Deployment: replicas must be 2")
	}
	if !selects(d.Spec.Selector, podLabels) {
		ps.addf("Deployment: selector %v does not select its pod template labels %v", d.Spec.Selector.MatchLabels, podLabels)
	}
	if pod.ServiceAccountName != ms.serviceAccount.Metadata.Name {
		ps.addf("Deployment: serviceAccountName %q, want the ServiceAccount %q", pod.ServiceAccountName, ms.serviceAccount.Metadata.Name)
	}
	if arn := ms.serviceAccount.Metadata.Annotations["eks.amazonaws.com/role-arn"]; !regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$`).MatchString(arn) {
		ps.addf("ServiceAccount: eks.amazonaws.com/role-arn annotation %q is not an IAM role ARN", arn)
	}
	if len(pod.Containers) != 1 {
		ps.addf("Deployment: %d containers, want 1", len(pod.Containers))
		return ps
	}
	c := pod.Containers[0]
	if want := []string{"consume", "--config", configFile}; !slices.Equal(c.Args, want) || len(c.Command) != 0 {
		ps.addf("Deployment: container runs command %q args %q, want the image's entrypoint with args %q", c.Command, c.Args, want)
	}

	// The config file is the ConfigMap, mounted read-only.
	mounted := false
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != path.Dir(configFile) {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == ms.configMap.Metadata.Name && vm.ReadOnly {
				mounted = true
			}
		}
	}
	if !mounted {
		ps.addf("Deployment: ConfigMap %s is not mounted read-only at %s", ms.configMap.Metadata.Name, path.Dir(configFile))
	}
	cfg, err := ms.kinlogConfig()
	if err != nil {
		ps = append(ps, err)
	}

	// Ports: the container port is the one kinlog listens on.
	httpPort := 0
	if len(c.Ports) == 1 {
		httpPort = c.Ports[0].ContainerPort
	} else {
		ps.addf("Deployment: %d container ports, want 1 (http)", len(c.Ports))
	}
	if _, port, err := net.SplitHostPort(cfg.HTTP.Listen); err != nil || port != strconv.Itoa(httpPort) {
		ps.addf("kinlog.yaml http.listen %q does not listen on the container port %d", cfg.HTTP.Listen, httpPort)
	}

	// Probes.
	for _, p := range []struct {
		name string
		pr   *probe
		path string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.pr == nil || p.pr.HTTPGet == nil {
			ps.addf("Deployment: no HTTP %s probe", p.name)
			continue
		}
		if p.pr.HTTPGet.Path != p.path {
			ps.addf("Deployment: %s probe path %q, want %q", p.name, p.pr.HTTPGet.Path, p.path)
		}
		if port, ok := containerPort(c, p.pr.HTTPGet.Port); !ok || port != httpPort {
			ps.addf("Deployment: %s probe port %+v is not the http container port %d", p.name, p.pr.HTTPGet.Port, httpPort)
		}
	}

	// Resources: requests and limits for CPU and memory, requests within limits.
	for _, r := range []string{"cpu", "memory"} {
		req, errReq := quantity(c.Resources.Requests[r])
		lim, errLim := quantity(c.Resources.Limits[r])
		switch {
		case errReq != nil:
			ps.addf("Deployment: %s request: %v", r, errReq)
		case errLim != nil:
			ps.addf("Deployment: %s limit: %v", r, errLim)
		case req > lim:
			ps.addf("Deployment: %s request %s exceeds the limit %s", r, c.Resources.Requests[r], c.Resources.Limits[r])
		}
	}

	// Non-root, read-only root filesystem, no privilege escalation, no capabilities.
	psc := pod.SecurityContext
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		ps.addf("Deployment: pod securityContext.runAsNonRoot must be true")
	}
	if psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		ps.addf("Deployment: pod securityContext.runAsUser must be set and not 0 (root)")
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		ps.addf("Deployment: container has no securityContext")
	default:
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			ps.addf("Deployment: container readOnlyRootFilesystem must be true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			ps.addf("Deployment: container allowPrivilegeEscalation must be false")
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			ps.addf("Deployment: container runs as root (runAsUser 0)")
		}
		if sc.Privileged != nil && *sc.Privileged {
			ps.addf("Deployment: container is privileged")
		}
		if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			ps.addf("Deployment: container capabilities must drop ALL and add none")
		}
	}

	// Graceful shutdown: the kubelet waits longer than kinlog's own deadline.
	deadline, err := time.ParseDuration(cfg.Shutdown.Timeout)
	switch {
	case err != nil || deadline <= 0:
		ps.addf("kinlog.yaml shutdown.timeout %q is not a positive duration", cfg.Shutdown.Timeout)
	case pod.TerminationGracePeriodSeconds == nil:
		ps.addf("Deployment: terminationGracePeriodSeconds not set (default 30s)")
	case time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= deadline:
		ps.addf("Deployment: terminationGracePeriodSeconds %ds is not longer than the shutdown deadline %s", *pod.TerminationGracePeriodSeconds, deadline)
	}

	// PodDisruptionBudget.
	if mu := ms.pdb.Spec.MaxUnavailable; mu == nil || mu.Str != "" || mu.Int != 1 || ms.pdb.Spec.MinAvailable != nil {
		ps.addf("PodDisruptionBudget: want maxUnavailable 1 (and no minAvailable)")
	}
	if !selects(ms.pdb.Spec.Selector, podLabels) || !maps.Equal(ms.pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
		ps.addf("PodDisruptionBudget: selector %v does not match the Deployment's selector %v", ms.pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels)
	}

	// Service and scrape annotations.
	svc := ms.service
	if !selects(labelSelector{MatchLabels: svc.Spec.Selector}, podLabels) {
		ps.addf("Service: selector %v does not select the Deployment's pods %v", svc.Spec.Selector, podLabels)
	}
	if len(svc.Spec.Ports) != 1 {
		ps.addf("Service: %d ports, want 1", len(svc.Spec.Ports))
	} else if port, ok := containerPort(c, svc.Spec.Ports[0].TargetPort); !ok || port != httpPort {
		ps.addf("Service: targetPort %+v is not the http container port %d", svc.Spec.Ports[0].TargetPort, httpPort)
	}
	ann := svc.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" || ann["prometheus.io/port"] != strconv.Itoa(httpPort) {
		ps.addf("Service: prometheus.io annotations %v, want scrape=true path=/metrics port=%d", ann, httpPort)
	}

	// ServiceMonitor.
	sm := ms.serviceMonitor
	if !selects(sm.Spec.Selector, svc.Metadata.Labels) {
		ps.addf("ServiceMonitor: selector %v does not select the Service labels %v", sm.Spec.Selector.MatchLabels, svc.Metadata.Labels)
	}
	if !slices.Contains(sm.Spec.NamespaceSelector.MatchNames, svc.Metadata.Namespace) {
		ps.addf("ServiceMonitor: namespaceSelector %v misses %q", sm.Spec.NamespaceSelector.MatchNames, svc.Metadata.Namespace)
	}
	if len(sm.Spec.Endpoints) != 1 || len(svc.Spec.Ports) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].Path != "/metrics" {
		ps.addf("ServiceMonitor: want one endpoint scraping /metrics on the Service's port by name")
	}
	return ps
}

func TestManifests(t *testing.T) {
	ms := loadManifests(t)
	requireNone(t, "infra/k8s", checkManifests(ms))

	// The Glue table (infra/terraform) projects the sink's default layout; the example
	// config must use it.
	cfg, err := ms.kinlogConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Sink.S3.Prefix != archivePrefix {
		t.Errorf("ConfigMap sink.s3.prefix %q differs from the layout the Glue table projects, %q", cfg.Sink.S3.Prefix, archivePrefix)
	}
}

// TestManifestChecksCatch breaks one thing at a time in a fresh copy of the manifests and
// requires the check to report it.
func TestManifestChecksCatch(t *testing.T) {
	ptr := func(i int) *int { return &i }
	bptr := func(b bool) *bool { return &b }
	for _, tc := range []struct {
		name   string
		mutate func(ms *manifests)
		want   string
	}{
		{"replicas", func(ms *manifests) { ms.deployment.Spec.Replicas = ptr(1) }, "replicas must be 2"},
		{"pdb selector", func(ms *manifests) { ms.pdb.Spec.Selector.MatchLabels = map[string]string{"app": "other"} }, "PodDisruptionBudget: selector"},
		{"pdb budget", func(ms *manifests) { ms.pdb.Spec.MaxUnavailable = &intOrString{Str: "50%"} }, "maxUnavailable 1"},
		{"root pod", func(ms *manifests) { ms.deployment.Spec.Template.Spec.SecurityContext.RunAsUser = ptr(0) }, "runAsUser must be set and not 0"},
		{"runAsNonRoot off", func(ms *manifests) { ms.deployment.Spec.Template.Spec.SecurityContext.RunAsNonRoot = bptr(false) }, "runAsNonRoot must be true"},
		{"writable root fs", func(ms *manifests) {
			ms.deployment.Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = bptr(false)
		}, "readOnlyRootFilesystem"},
		{"no readiness probe", func(ms *manifests) { ms.deployment.Spec.Template.Spec.Containers[0].ReadinessProbe = nil }, "no HTTP readiness probe"},
		{"liveness path", func(ms *manifests) {
			ms.deployment.Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Path = "/readyz"
		}, "liveness probe path"},
		{"probe port", func(ms *manifests) {
			ms.deployment.Spec.Template.Spec.Containers[0].LivenessProbe.HTTPGet.Port = intOrString{Str: "metrics"}
		}, "liveness probe port"},
		{"grace period", func(ms *manifests) { ms.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr(30) }, "not longer than the shutdown deadline"},
		{"no memory limit", func(ms *manifests) { delete(ms.deployment.Spec.Template.Spec.Containers[0].Resources.Limits, "memory") }, "memory limit"},
		{"request above limit", func(ms *manifests) { ms.deployment.Spec.Template.Spec.Containers[0].Resources.Requests["cpu"] = "2" }, "cpu request 2 exceeds"},
		{"listen port", func(ms *manifests) {
			ms.configMap.Data["kinlog.yaml"] = strings.Replace(ms.configMap.Data["kinlog.yaml"], `listen: ":8080"`, `listen: ":9090"`, 1)
		}, "does not listen on the container port"},
		{"service selector", func(ms *manifests) { ms.service.Spec.Selector = map[string]string{"app": "x"} }, "Service: selector"},
		{"scrape port", func(ms *manifests) { ms.service.Metadata.Annotations["prometheus.io/port"] = "9090" }, "prometheus.io annotations"},
		{"servicemonitor port", func(ms *manifests) { ms.serviceMonitor.Spec.Endpoints[0].Port = "metrics" }, "ServiceMonitor: want one endpoint"},
		{"role annotation", func(ms *manifests) { delete(ms.serviceAccount.Metadata.Annotations, "eks.amazonaws.com/role-arn") }, "role-arn annotation"},
		{"kustomization", func(ms *manifests) { ms.kustomizeFiles = ms.kustomizeFiles[1:] }, "kustomization.yaml lists"},
		{"kind", func(ms *manifests) {
			ms.objects = append(ms.objects, typeMeta{APIVersion: "v1", Kind: "Pod", Metadata: meta{Name: "x", Namespace: "kinlog"}})
		}, "unexpected kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := loadManifests(t)
			tc.mutate(ms)
			requireProblem(t, checkManifests(ms), tc.want)
		})
	}
}

func TestQuantity(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"250m", 250, false},
		{"1", 1000, false},
		{"256Mi", 256 << 20 * 1000, false},
		{"1Gi", 1 << 30 * 1000, false},
		{"", 0, true},
		{"1.5", 0, true},
		{"-1", 0, true},
	} {
		got, err := quantity(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("quantity(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestDecodeAllRejectsBrokenYAML(t *testing.T) {
	for _, in := range []string{
		"a: 1\na: 2\n",             // duplicate key
		"a: [1, 2\n",               // unterminated flow sequence
		"kind: x\n  bad: indent\n", // bad indentation
	} {
		if _, err := decodeAll(strings.NewReader(in)); err == nil {
			t.Errorf("decodeAll(%q) accepted invalid YAML", in)
		}
	}
}
