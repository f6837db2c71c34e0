package deploytest

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"
)

// The kinlog agent's DaemonSet (infra/k8s/agent), as far as the checks need it.

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
		ResourceFieldRef *struct {
			Resource string `yaml:"resource"`
		} `yaml:"resourceFieldRef"`
	} `yaml:"valueFrom"`
}

type agentContainer struct {
	container `yaml:",inline"`
	Env       []envVar `yaml:"env"`
}

type podVolume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	EmptyDir *struct {
		SizeLimit string `yaml:"sizeLimit"`
	} `yaml:"emptyDir"`
	HostPath *struct {
		Path string `yaml:"path"`
		Type string `yaml:"type"`
	} `yaml:"hostPath"`
}

type agentPodSpec struct {
	ServiceAccountName            string `yaml:"serviceAccountName"`
	AutomountServiceAccountToken  *bool  `yaml:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds *int   `yaml:"terminationGracePeriodSeconds"`
	HostNetwork                   bool   `yaml:"hostNetwork"`
	HostPID                       bool   `yaml:"hostPID"`
	HostIPC                       bool   `yaml:"hostIPC"`
	Tolerations                   []struct {
		Key      string `yaml:"key"`
		Operator string `yaml:"operator"`
		Effect   string `yaml:"effect"`
	} `yaml:"tolerations"`
	SecurityContext struct {
		RunAsNonRoot   *bool `yaml:"runAsNonRoot"`
		RunAsUser      *int  `yaml:"runAsUser"`
		RunAsGroup     *int  `yaml:"runAsGroup"`
		SeccompProfile *struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Containers []agentContainer `yaml:"containers"`
	Volumes    []podVolume      `yaml:"volumes"`
}

type daemonSet struct {
	typeMeta `yaml:",inline"`
	Spec     struct {
		Selector       labelSelector `yaml:"selector"`
		UpdateStrategy struct {
			Type          string `yaml:"type"`
			RollingUpdate *struct {
				MaxUnavailable *intOrString `yaml:"maxUnavailable"`
				MaxSurge       *intOrString `yaml:"maxSurge"`
			} `yaml:"rollingUpdate"`
		} `yaml:"updateStrategy"`
		Template struct {
			Metadata meta         `yaml:"metadata"`
			Spec     agentPodSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podMonitor struct {
	typeMeta `yaml:",inline"`
	Spec     struct {
		NamespaceSelector struct {
			MatchNames []string `yaml:"matchNames"`
		} `yaml:"namespaceSelector"`
		Selector            labelSelector `yaml:"selector"`
		PodMetricsEndpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"podMetricsEndpoints"`
	} `yaml:"spec"`
}

type agentServiceAccount struct {
	typeMeta                     `yaml:",inline"`
	AutomountServiceAccountToken *bool `yaml:"automountServiceAccountToken"`
}

// agentManifests is infra/k8s/agent, decoded.
type agentManifests struct {
	objects        []typeMeta
	files          []string // the manifest files (not kustomization.yaml)
	kustomizeFiles []string // resources listed in kustomization.yaml
	kustomizeNS    string   // kustomization.yaml's namespace
	namespace      typeMeta
	serviceAccount agentServiceAccount
	configMap      configMap
	daemonSet      daemonSet
	podMonitor     podMonitor
}

// agentWantKinds are the objects infra/k8s/agent must contain, with their API versions.
var agentWantKinds = map[string]string{
	"Namespace":      "v1",
	"ServiceAccount": "v1",
	"ConfigMap":      "v1",
	"DaemonSet":      "apps/v1",
	"PodMonitor":     "monitoring.coreos.com/v1",
}

func loadAgentManifests(t testing.TB) *agentManifests {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "infra", "k8s", "agent")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	am := &agentManifests{}
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
				Namespace string   `yaml:"namespace"`
				Resources []string `yaml:"resources"`
			}
			if err := docs[0].Decode(&k); err != nil {
				t.Fatalf("decoding %s: %v", f, err)
			}
			am.kustomizeFiles, am.kustomizeNS = k.Resources, k.Namespace
			continue
		}
		am.files = append(am.files, base)
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
			am.objects = append(am.objects, tm)
			var target any
			switch tm.Kind {
			case "Namespace":
				target = &am.namespace
			case "ServiceAccount":
				target = &am.serviceAccount
			case "ConfigMap":
				target = &am.configMap
			case "DaemonSet":
				target = &am.daemonSet
			case "PodMonitor":
				target = &am.podMonitor
			default:
				continue
			}
			if err := d.Decode(target); err != nil {
				t.Fatalf("decoding %s %s: %v", f, key, err)
			}
		}
	}
	return am
}

func (am *agentManifests) agentConfig() (agentConfig, error) {
	raw, ok := am.configMap.Data[path.Base(agentConfigFile)]
	if !ok {
		return agentConfig{}, fmt.Errorf("ConfigMap %s has no key %s", am.configMap.Metadata.Name, path.Base(agentConfigFile))
	}
	c, err := decodeAgentConfig(raw)
	if err != nil {
		return c, fmt.Errorf("ConfigMap %s: %s: %w", am.configMap.Metadata.Name, path.Base(agentConfigFile), err)
	}
	return c, nil
}

// The kubelet's log directories, mounted at the same paths: /var/log/containers holds
// symbolic links into /var/log/pods, and with Docker (cri-dockerd) those link into
// /var/lib/docker/containers, all absolute.
var agentLogDirs = []string{"/var/log/pods", "/var/log/containers", "/var/lib/docker/containers"}

// checkAgentManifests returns everything wrong with the agent's manifests. consumer is
// infra/k8s: the agent ships to the stream the consumer reads, runs the same image, and must
// not land in the consumer's restricted namespace.
func checkAgentManifests(am *agentManifests, consumer *manifests) problems {
	var ps problems

	// Kinds, API versions, namespaces, kustomization.
	ns := am.namespace.Metadata.Name
	kinds := map[string]bool{}
	for _, o := range am.objects {
		kinds[o.Kind] = true
		want, ok := agentWantKinds[o.Kind]
		switch {
		case !ok:
			ps.addf("%s %s: unexpected kind", o.Kind, o.Metadata.Name)
		case o.APIVersion != want:
			ps.addf("%s %s: apiVersion %q, want %q", o.Kind, o.Metadata.Name, o.APIVersion, want)
		}
		if o.Kind != "Namespace" && o.Metadata.Namespace != ns {
			ps.addf("%s %s: namespace %q, want the agent's namespace %q", o.Kind, o.Metadata.Name, o.Metadata.Namespace, ns)
		}
	}
	for k := range agentWantKinds {
		if !kinds[k] {
			ps.addf("no %s manifest", k)
		}
	}
	if a, b := slices.Sorted(slices.Values(am.kustomizeFiles)), slices.Sorted(slices.Values(am.files)); !slices.Equal(a, b) {
		ps.addf("kustomization.yaml lists %v, the directory has %v", a, b)
	}
	if am.kustomizeNS != ns {
		ps.addf("kustomization.yaml namespace %q, want the agent's namespace %q", am.kustomizeNS, ns)
	}

	// Pod Security admission: hostPath volumes are forbidden by "baseline" and "restricted",
	// so the namespace must enforce "privileged" — and cannot be the consumer's.
	if lvl := am.namespace.Metadata.Labels["pod-security.kubernetes.io/enforce"]; lvl != "privileged" {
		ps.addf("Namespace %s: pod-security.kubernetes.io/enforce %q rejects the DaemonSet's hostPath volumes; want privileged", ns, lvl)
	}
	for _, o := range consumer.objects {
		if o.Kind == "Namespace" && o.Metadata.Name == ns {
			ps.addf("Namespace %s is also infra/k8s's (enforce %q): the agent needs a namespace of its own", ns, o.Metadata.Labels["pod-security.kubernetes.io/enforce"])
		}
	}

	ds := am.daemonSet
	pod := ds.Spec.Template.Spec
	if !selects(ds.Spec.Selector, ds.Spec.Template.Metadata.Labels) {
		ps.addf("DaemonSet: selector %v does not select its pod template labels %v", ds.Spec.Selector.MatchLabels, ds.Spec.Template.Metadata.Labels)
	}
	if sel := consumer.deployment.Spec.Selector; selects(sel, ds.Spec.Template.Metadata.Labels) {
		ps.addf("DaemonSet: the consumer Deployment's selector %v selects the agent pods", sel.MatchLabels)
	}
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ds.Spec.UpdateStrategy.Type != "RollingUpdate" || ru == nil ||
		ru.MaxUnavailable == nil || ru.MaxUnavailable.Str != "" || ru.MaxUnavailable.Int != 1 {
		ps.addf("DaemonSet: want updateStrategy RollingUpdate with maxUnavailable 1")
	}
	tolerateAll := false
	for _, tol := range pod.Tolerations {
		tolerateAll = tolerateAll || (tol.Operator == "Exists" && tol.Key == "" && tol.Effect == "")
	}
	if !tolerateAll {
		ps.addf("DaemonSet: no toleration {operator: Exists}: tainted nodes would run no agent")
	}
	if pod.ServiceAccountName != am.serviceAccount.Metadata.Name {
		ps.addf("DaemonSet: serviceAccountName %q, want the ServiceAccount %q", pod.ServiceAccountName, am.serviceAccount.Metadata.Name)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		ps.addf("DaemonSet: automountServiceAccountToken must be false: the agent does not use the Kubernetes API")
	}
	if arn := am.serviceAccount.Metadata.Annotations["eks.amazonaws.com/role-arn"]; !strings.Contains(arn, ":role/") {
		ps.addf("ServiceAccount: eks.amazonaws.com/role-arn annotation %q is not an IAM role ARN", arn)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		ps.addf("DaemonSet: hostNetwork, hostPID and hostIPC must be off")
	}
	if len(pod.Containers) != 1 {
		ps.addf("DaemonSet: %d containers, want 1", len(pod.Containers))
		return ps
	}
	c := pod.Containers[0]
	if want := []string{"agent", "--config", agentConfigFile}; !slices.Equal(c.Args, want) || len(c.Command) != 0 {
		ps.addf("DaemonSet: container runs command %q args %q, want the image's entrypoint with args %q", c.Command, c.Args, want)
	}
	if len(consumer.deployment.Spec.Template.Spec.Containers) == 1 {
		if img := consumer.deployment.Spec.Template.Spec.Containers[0].Image; c.Image != img {
			ps.addf("DaemonSet: image %q, want the consumer's image %q (one binary, kustomize sets the tag)", c.Image, img)
		}
	}

	// Volumes and mounts.
	volumes := map[string]podVolume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	cfg, err := am.agentConfig()
	if err != nil {
		ps = append(ps, err)
	}
	ps = append(ps, checkAgentConfig(cfg)...)
	configMounted, stateMounted := false, false
	logMounts := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		v, ok := volumes[vm.Name]
		switch {
		case !ok:
			ps.addf("DaemonSet: mount %s of an undefined volume", vm.Name)
		case v.ConfigMap != nil:
			if vm.MountPath == path.Dir(agentConfigFile) && v.ConfigMap.Name == am.configMap.Metadata.Name && vm.ReadOnly {
				configMounted = true
			}
		case v.HostPath != nil && vm.MountPath == cfg.StateDir:
			// Positions must outlive the pod: a host directory, writable, created if missing.
			stateMounted = true
			if vm.ReadOnly {
				ps.addf("DaemonSet: the state directory %s is mounted read-only", vm.MountPath)
			}
			if v.HostPath.Type != "DirectoryOrCreate" {
				ps.addf("DaemonSet: state hostPath %s has type %q, want DirectoryOrCreate", v.HostPath.Path, v.HostPath.Type)
			}
		case v.HostPath != nil:
			if !vm.ReadOnly {
				ps.addf("DaemonSet: hostPath %s is mounted writable at %s; only the state directory may be", v.HostPath.Path, vm.MountPath)
			}
			if vm.MountPath != v.HostPath.Path {
				ps.addf("DaemonSet: hostPath %s is mounted at %s: symbolic links between the log directories need the node's paths", v.HostPath.Path, vm.MountPath)
			}
			logMounts[vm.MountPath] = true
		case v.EmptyDir != nil && vm.MountPath == cfg.StateDir:
			ps.addf("DaemonSet: the state directory %s is an emptyDir: positions would be lost with the pod", vm.MountPath)
		}
	}
	if !configMounted {
		ps.addf("DaemonSet: ConfigMap %s is not mounted read-only at %s", am.configMap.Metadata.Name, path.Dir(agentConfigFile))
	}
	if !stateMounted {
		ps.addf("DaemonSet: state_dir %s is not a hostPath mount: positions would be lost with the pod", cfg.StateDir)
	}
	for _, d := range agentLogDirs {
		if !logMounts[d] {
			ps.addf("DaemonSet: no read-only hostPath mount of %s", d)
		}
	}

	// What the config reads: the kubelet's CRI files, under a mounted directory, and not
	// the agent's own logs (whose pods are named <DaemonSet>-<suffix>).
	const sample = "/var/log/pods/shop_cart-5f7d9b-x2x9q_0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d/cart/0.log"
	own := "/var/log/pods/" + ns + "_" + ds.Metadata.Name + "-x2x9q_0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d/" + c.Name + "/0.log"
	readsPods, readsOwn := false, false
	for i, f := range cfg.Files {
		if f.reads(sample) {
			readsPods = true
			if f.Format != "cri" {
				ps.addf("agent.yaml: files[%d] reads the kubelet's files with format %q, want cri", i, f.Format)
			}
		}
		readsOwn = readsOwn || f.reads(own)
		for _, p := range f.Paths {
			if !slices.ContainsFunc(agentLogDirs, func(d string) bool { return strings.HasPrefix(p, d+"/") }) {
				ps.addf("agent.yaml: files[%d] path %s is outside the mounted log directories %v", i, p, agentLogDirs)
			}
		}
	}
	if !readsPods {
		ps.addf("agent.yaml: no files input reads %s", sample)
	}
	if readsOwn {
		ps.addf("agent.yaml: the agent reads its own log %s: each of its records would make more", own)
	}
	if cfg.Host != "" {
		ps.addf("agent.yaml: host %q would name every node the same; it comes from KINLOG_HOST", cfg.Host)
	}
	if consumerCfg, err := consumer.kinlogConfig(); err == nil && cfg.Stream != consumerCfg.Stream {
		ps.addf("agent.yaml: stream %q, but the consumer reads %q", cfg.Stream, consumerCfg.Stream)
	}

	// Environment.
	env := map[string]envVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if env["AWS_REGION"].Value == "" {
		ps.addf("DaemonSet: AWS_REGION is not set")
	}
	if e := env["KINLOG_HOST"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		ps.addf("DaemonSet: KINLOG_HOST must come from spec.nodeName (records name the node, not the agent pod)")
	}
	if e := env["GOMEMLIMIT"]; e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil || e.ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
		ps.addf("DaemonSet: GOMEMLIMIT must come from limits.memory")
	}

	// The HTTP port, probes and scraping.
	httpPort := 0
	if len(c.Ports) == 1 {
		httpPort = c.Ports[0].ContainerPort
	} else {
		ps.addf("DaemonSet: %d container ports, want 1 (http)", len(c.Ports))
	}
	if port, err := cfg.listenPort(); err != nil || port != strconv.Itoa(httpPort) {
		ps.addf("agent.yaml http.listen %q does not listen on the container port %d", cfg.HTTP.Listen, httpPort)
	}
	for _, p := range []struct {
		name string
		pr   *probe
		path string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.pr == nil || p.pr.HTTPGet == nil {
			ps.addf("DaemonSet: no HTTP %s probe", p.name)
			continue
		}
		if p.pr.HTTPGet.Path != p.path {
			ps.addf("DaemonSet: %s probe path %q, want %q", p.name, p.pr.HTTPGet.Path, p.path)
		}
		if port, ok := containerPort(c.container, p.pr.HTTPGet.Port); !ok || port != httpPort {
			ps.addf("DaemonSet: %s probe port %+v is not the http container port %d", p.name, p.pr.HTTPGet.Port, httpPort)
		}
	}
	if ann := ds.Spec.Template.Metadata.Annotations; ann["prometheus.io/scrape"] == "true" && ann["prometheus.io/port"] != strconv.Itoa(httpPort) {
		ps.addf("DaemonSet: prometheus.io/port %q is not the http port %d", ann["prometheus.io/port"], httpPort)
	}
	pm := am.podMonitor
	if !selects(pm.Spec.Selector, ds.Spec.Template.Metadata.Labels) || !slices.Contains(pm.Spec.NamespaceSelector.MatchNames, ns) {
		ps.addf("PodMonitor: does not select the agent pods (selector %v, namespaces %v)", pm.Spec.Selector.MatchLabels, pm.Spec.NamespaceSelector.MatchNames)
	}
	if e := pm.Spec.PodMetricsEndpoints; len(e) != 1 || len(c.Ports) != 1 || e[0].Port != c.Ports[0].Name || e[0].Path != "/metrics" {
		ps.addf("PodMonitor: want one endpoint scraping /metrics on the container's port by name")
	}

	// Resources.
	for _, r := range []string{"cpu", "memory"} {
		req, errReq := quantity(c.Resources.Requests[r])
		lim, errLim := quantity(c.Resources.Limits[r])
		switch {
		case errReq != nil:
			ps.addf("DaemonSet: %s request: %v", r, errReq)
		case errLim != nil:
			ps.addf("DaemonSet: %s limit: %v", r, errLim)
		case req > lim:
			ps.addf("DaemonSet: %s request %s exceeds the limit %s", r, c.Resources.Requests[r], c.Resources.Limits[r])
		}
	}

	// Security: root (the owner of the log files) without any capability, on a read-only
	// root file system (see the comment in daemonset.yaml).
	psc := pod.SecurityContext
	if psc.RunAsUser == nil || *psc.RunAsUser != 0 || (psc.RunAsNonRoot != nil && *psc.RunAsNonRoot) {
		ps.addf("DaemonSet: pod securityContext must set runAsUser 0: only root (their owner) can read the runtimes' 0640/0600 log files without capabilities")
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != "RuntimeDefault" {
		ps.addf("DaemonSet: pod seccompProfile must be RuntimeDefault")
	}
	switch sc := c.SecurityContext; {
	case sc == nil:
		ps.addf("DaemonSet: container has no securityContext")
	default:
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			ps.addf("DaemonSet: container readOnlyRootFilesystem must be true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			ps.addf("DaemonSet: container allowPrivilegeEscalation must be false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			ps.addf("DaemonSet: container is privileged")
		}
		if sc.RunAsUser != nil && *sc.RunAsUser != 0 {
			ps.addf("DaemonSet: container runAsUser %d cannot read the log files", *sc.RunAsUser)
		}
		if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			ps.addf("DaemonSet: container capabilities must drop ALL and add none (root needs none to read what it owns)")
		}
	}

	// Graceful shutdown: the kubelet waits longer than the agent's own deadline.
	deadline, err := time.ParseDuration(cfg.Shutdown.Timeout)
	switch {
	case err != nil || deadline <= 0:
		// Reported by checkAgentConfig.
	case pod.TerminationGracePeriodSeconds == nil:
		ps.addf("DaemonSet: terminationGracePeriodSeconds not set (default 30s)")
	case time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second <= deadline:
		ps.addf("DaemonSet: terminationGracePeriodSeconds %ds is not longer than the shutdown deadline %s", *pod.TerminationGracePeriodSeconds, deadline)
	}
	return ps
}

func TestAgentManifests(t *testing.T) {
	requireNone(t, "infra/k8s/agent", checkAgentManifests(loadAgentManifests(t), loadManifests(t)))
}

// TestAgentManifestChecksCatch breaks one thing at a time in a fresh copy of the agent's
// manifests and requires the check to report it.
func TestAgentManifestChecksCatch(t *testing.T) {
	ptr := func(i int) *int { return &i }
	bptr := func(b bool) *bool { return &b }
	pod := func(am *agentManifests) *agentPodSpec {
		return &am.daemonSet.Spec.Template.Spec
	}
	ctr := func(am *agentManifests) *agentContainer { return &pod(am).Containers[0] }
	mount := func(am *agentManifests, mountPath string) int {
		for i, vm := range ctr(am).VolumeMounts {
			if vm.MountPath == mountPath {
				return i
			}
		}
		t.Fatalf("no mount at %s; update the test", mountPath)
		return -1
	}
	volume := func(am *agentManifests, name string) *podVolume {
		for i, v := range pod(am).Volumes {
			if v.Name == name {
				return &pod(am).Volumes[i]
			}
		}
		t.Fatalf("no volume %s; update the test", name)
		return nil
	}
	editConfig := func(old, new string) func(am *agentManifests) {
		return func(am *agentManifests) {
			raw := am.configMap.Data["agent.yaml"]
			if !strings.Contains(raw, old) {
				t.Fatalf("agent.yaml no longer contains %q; update the test", old)
			}
			am.configMap.Data["agent.yaml"] = strings.Replace(raw, old, new, 1)
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(am *agentManifests)
		want   string
	}{
		{"kustomization", func(am *agentManifests) { am.kustomizeFiles = am.kustomizeFiles[1:] }, "kustomization.yaml lists"},
		{"kustomization namespace", func(am *agentManifests) { am.kustomizeNS = "kinlog" }, "kustomization.yaml namespace"},
		{"restricted namespace", func(am *agentManifests) {
			am.namespace.Metadata.Labels["pod-security.kubernetes.io/enforce"] = "baseline"
		}, "rejects the DaemonSet's hostPath"},
		{"consumer's namespace", func(am *agentManifests) { am.namespace.Metadata.Name = "kinlog" }, "is also infra/k8s's"},
		{"object namespace", func(am *agentManifests) { am.objects[len(am.objects)-1].Metadata.Namespace = "default" }, "want the agent's namespace"},
		{"kind", func(am *agentManifests) {
			am.objects = append(am.objects, typeMeta{APIVersion: "apps/v1", Kind: "Deployment", Metadata: meta{Name: "x", Namespace: am.namespace.Metadata.Name}})
		}, "unexpected kind"},
		{"args", func(am *agentManifests) { ctr(am).Args = []string{"consume"} }, "want the image's entrypoint with args"},
		{"image", func(am *agentManifests) { ctr(am).Image = "fluent-bit:latest" }, "want the consumer's image"},
		{"writable log mount", func(am *agentManifests) { ctr(am).VolumeMounts[mount(am, "/var/log/pods")].ReadOnly = false }, "only the state directory may be"},
		{"moved log mount", func(am *agentManifests) {
			ctr(am).VolumeMounts[mount(am, "/var/log/containers")].MountPath = "/host/containers"
		}, "symbolic links"},
		{"no docker mount", func(am *agentManifests) {
			i := mount(am, "/var/lib/docker/containers")
			ctr(am).VolumeMounts = slices.Delete(ctr(am).VolumeMounts, i, i+1)
		}, "no read-only hostPath mount of /var/lib/docker/containers"},
		{"read-only state", func(am *agentManifests) { ctr(am).VolumeMounts[mount(am, "/var/lib/kinlog-agent")].ReadOnly = true }, "mounted read-only"},
		{"state in emptyDir", func(am *agentManifests) {
			v := volume(am, "state")
			v.HostPath, v.EmptyDir = nil, &struct {
				SizeLimit string `yaml:"sizeLimit"`
			}{}
		}, "positions would be lost"},
		{"state hostPath type", func(am *agentManifests) { volume(am, "state").HostPath.Type = "Directory" }, "want DirectoryOrCreate"},
		{"state_dir elsewhere", editConfig("state_dir: /var/lib/kinlog-agent", "state_dir: /var/lib/other"), "not a hostPath mount"},
		{"config not mounted", func(am *agentManifests) { volume(am, "config").ConfigMap.Name = "other" }, "is not mounted read-only"},
		{"listen port", editConfig(`listen: ":8081"`, `listen: ":9090"`), "does not listen on the container port"},
		{"probe path", func(am *agentManifests) { ctr(am).ReadinessProbe.HTTPGet.Path = "/healthz" }, "readiness probe path"},
		{"probe port", func(am *agentManifests) { ctr(am).LivenessProbe.HTTPGet.Port = intOrString{Int: 8080} }, "liveness probe port"},
		{"no liveness probe", func(am *agentManifests) { ctr(am).LivenessProbe = nil }, "no HTTP liveness probe"},
		{"grace period", func(am *agentManifests) { pod(am).TerminationGracePeriodSeconds = ptr(30) }, "not longer than the shutdown deadline"},
		{"longer shutdown", editConfig("timeout: 30s", "timeout: 90s"), "not longer than the shutdown deadline"},
		{"update strategy", func(am *agentManifests) {
			am.daemonSet.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = &intOrString{Str: "100%"}
		}, "maxUnavailable 1"},
		{"tolerations", func(am *agentManifests) { pod(am).Tolerations = nil }, "tainted nodes"},
		{"non-root", func(am *agentManifests) { pod(am).SecurityContext.RunAsUser = ptr(65532) }, "runAsUser 0"},
		{"capability", func(am *agentManifests) {
			ctr(am).SecurityContext.Capabilities.Add = []string{"DAC_READ_SEARCH"}
		}, "drop ALL and add none"},
		{"writable root fs", func(am *agentManifests) { ctr(am).SecurityContext.ReadOnlyRootFilesystem = bptr(false) }, "readOnlyRootFilesystem"},
		{"privilege escalation", func(am *agentManifests) { ctr(am).SecurityContext.AllowPrivilegeEscalation = nil }, "allowPrivilegeEscalation"},
		{"privileged", func(am *agentManifests) { ctr(am).SecurityContext.Privileged = bptr(true) }, "is privileged"},
		{"host pid", func(am *agentManifests) { pod(am).HostPID = true }, "hostPID"},
		{"api token", func(am *agentManifests) { pod(am).AutomountServiceAccountToken = nil }, "automountServiceAccountToken"},
		{"memory limit", func(am *agentManifests) { delete(ctr(am).Resources.Limits, "memory") }, "memory limit"},
		{"node name", func(am *agentManifests) {
			ctr(am).Env = slices.DeleteFunc(ctr(am).Env, func(e envVar) bool { return e.Name == "KINLOG_HOST" })
		}, "KINLOG_HOST"},
		{"region", func(am *agentManifests) {
			ctr(am).Env = slices.DeleteFunc(ctr(am).Env, func(e envVar) bool { return e.Name == "AWS_REGION" })
		}, "AWS_REGION"},
		{"own logs", editConfig(`exclude: ["/var/log/pods/kinlog-agent_kinlog-agent-*_*/*/*.log"]`, `exclude: ["*.gz"]`), "reads its own log"},
		{"format", editConfig("format: cri", "format: docker"), "want cri"},
		{"unknown format", editConfig("format: cri", "format: logfmt"), `format "logfmt"`},
		{"path outside mounts", editConfig(`paths: ["/var/log/pods/*/*/*.log"]`, `paths: ["/var/log/pods/*/*/*.log", "/var/log/syslog"]`), "outside the mounted log directories"},
		{"duplicate key", editConfig("stream: kinlog-logs", "stream: a\nstream: kinlog-logs"), "duplicate key"},
		{"no stream", editConfig("stream: kinlog-logs", "stream: \"\""), "stream is required"},
		{"other stream", editConfig("stream: kinlog-logs", "stream: other"), "but the consumer reads"},
		{"fixed host", editConfig("state_dir:", "host: node-1\nstate_dir:"), "would name every node the same"},
		{"bad duration", editConfig("rotate_wait: 5s", "rotate_wait: 5"), "rotate_wait"},
		{"podmonitor selector", func(am *agentManifests) { am.podMonitor.Spec.Selector.MatchLabels = map[string]string{"app": "x"} }, "PodMonitor: does not select"},
		{"podmonitor port", func(am *agentManifests) { am.podMonitor.Spec.PodMetricsEndpoints[0].Port = "metrics" }, "PodMonitor: want one endpoint"},
		{"scrape annotation", func(am *agentManifests) {
			am.daemonSet.Spec.Template.Metadata.Annotations["prometheus.io/port"] = "8080"
		}, "prometheus.io/port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			am := loadAgentManifests(t)
			tc.mutate(am)
			requireProblem(t, checkAgentManifests(am, loadManifests(t)), tc.want)
		})
	}
}

// TestAgentIRSATrust checks that the producer role, given the agent's ServiceAccount in
// producer_service_accounts (as serviceaccount.yaml says to), trusts exactly it, and that
// the ServiceAccount's role-arn annotation names that role.
func TestAgentIRSATrust(t *testing.T) {
	sa := loadAgentManifests(t).serviceAccount.Metadata
	m := loadModule(t)
	provider := "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE"
	ctx, err := m.evalContext(map[string]cty.Value{
		"eks_oidc_provider_arn": cty.StringVal(provider),
		"producer_service_accounts": cty.ListVal([]cty.Value{cty.ObjectVal(map[string]cty.Value{
			"namespace": cty.StringVal(sa.Namespace), "name": cty.StringVal(sa.Name),
		})}),
	})
	if err != nil {
		t.Fatal(err)
	}
	sts, err := statements(m, "producer_assume", ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 1 {
		t.Fatalf("producer_assume has %d statements with only IRSA configured, want 1", len(sts))
	}
	wantSub := "system:serviceaccount:" + sa.Namespace + ":" + sa.Name
	if got := sts[0].conditions["oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE:sub"]; !slices.Equal(got, []string{wantSub}) {
		t.Errorf("producer role trusts %v, want [%s]; conditions: %v", got, wantSub, sts[0].conditions)
	}
	role, err := m.resource("aws_iam_role", "producer", ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, name, _ := strings.Cut(sa.Annotations["eks.amazonaws.com/role-arn"], ":role/"); name != role.str("name") {
		t.Errorf("ServiceAccount role-arn %s does not name the producer role %q", sa.Annotations["eks.amazonaws.com/role-arn"], role.str("name"))
	}
}

func TestAgentFileGlobs(t *testing.T) {
	f := agentFileInput{Paths: []string{"/var/log/pods/*/*/*.log"}, Exclude: []string{"/var/log/pods/kinlog-agent_kinlog-agent-*_*/*/*.log", "*.gz"}}
	for name, want := range map[string]bool{
		"/var/log/pods/shop_cart-0_uid/cart/0.log":                      true,
		"/var/log/pods/kinlog-agent_kinlog-agent-x2x9q_uid/agent/0.log": false,
		"/var/log/pods/kinlog-agent_other-x2x9q_uid/app/0.log":          true,
		"/var/log/pods/shop_cart-0_uid/cart/0.log.20240314-095800":      false,
		"/var/log/pods/shop_cart-0_uid/cart/sub/0.log":                  false,
		"/var/log/pods/shop_cart-0_uid/cart/0.log.gz":                   false,
	} {
		if got := f.reads(name); got != want {
			t.Errorf("reads(%s) = %v, want %v", name, got, want)
		}
	}
}
