package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/xmodal/xmodal/internal/testutil"
)

// manifest is one decoded document of deploy/k8s/*.yaml.
type manifest struct {
	where string // file#index
	tm    metav1.TypeMeta
	obj   any
}

// typed are the kinds the manifests may use, with their Go types.
var typed = map[string]func() any{
	"v1/Namespace":                           func() any { return &corev1.Namespace{} },
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                              func() any { return &corev1.Secret{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"keda.sh/v1alpha1/ScaledObject":          nil, // a CRD: unstructured, checked by hand below
}

func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), b...), []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// loadManifests strictly decodes every document: an unknown or misspelt field,
// a duplicate key or a wrong type fails.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(testutil.MustRepoRoot(t), "deploy", "k8s", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no deploy/k8s/*.yaml")
	}
	var out []manifest
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range splitDocs(b) {
			where := fmt.Sprintf("%s#%d", filepath.Base(f), i)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(d, &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			mk, ok := typed[tm.APIVersion+"/"+tm.Kind]
			if !ok {
				t.Errorf("%s: kind %s %s is not one this test knows; add it to typed", where, tm.APIVersion, tm.Kind)
				continue
			}
			var obj any
			if mk == nil {
				// apimachinery's JSON decoding keeps integers int64.
				u := &unstructured.Unstructured{}
				j, err := yaml.YAMLToJSONStrict(d)
				if err == nil {
					err = u.UnmarshalJSON(j)
				}
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				obj = u
			} else {
				obj = mk()
				if err := yaml.UnmarshalStrict(d, obj); err != nil {
					t.Errorf("%s (%s): %v", where, tm.Kind, err)
					continue
				}
			}
			out = append(out, manifest{where: where, tm: tm, obj: obj})
		}
	}
	return out
}

func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	bad := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n")
	if err := yaml.UnmarshalStrict(bad, &appsv1.Deployment{}); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("a misspelt field was accepted: %v", err)
	}
}

func TestKubernetesManifests(t *testing.T) {
	ms := loadManifests(t)
	_, envs := configKeys(t)
	deps := map[string]*appsv1.Deployment{}
	var cms []*corev1.ConfigMap
	var secrets []*corev1.Secret
	var svcs []*corev1.Service
	var pdbs []*policyv1.PodDisruptionBudget
	var hpas []*autoscalingv2.HorizontalPodAutoscaler
	var scaled []*unstructured.Unstructured
	for _, m := range ms {
		switch o := m.obj.(type) {
		case *appsv1.Deployment:
			deps[o.Name] = o
		case *corev1.ConfigMap:
			cms = append(cms, o)
		case *corev1.Secret:
			secrets = append(secrets, o)
		case *corev1.Service:
			svcs = append(svcs, o)
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			hpas = append(hpas, o)
		case *unstructured.Unstructured:
			scaled = append(scaled, o)
		}
		if ns := objectMeta(m.obj); ns != nil && ns.Namespace != "xmodal" && m.tm.Kind != "Namespace" {
			t.Errorf("%s: namespace %q, want xmodal", m.where, ns.Namespace)
		}
	}
	for _, name := range []string{"xmodal-indexer", "xmodal-query"} {
		if deps[name] == nil {
			t.Fatalf("no Deployment %s", name)
		}
	}
	if len(cms) != 1 || len(secrets) != 1 || len(hpas) != 1 || len(scaled) != 1 || len(pdbs) != 2 || len(svcs) != 2 {
		t.Fatalf("want 1 ConfigMap, 1 Secret, 2 Services, 2 PDBs, 1 HPA, 1 ScaledObject; got %d, %d, %d, %d, %d, %d",
			len(cms), len(secrets), len(svcs), len(pdbs), len(hpas), len(scaled))
	}
	cfg := parseXmodalConfig(t, cms[0])
	for k := range secrets[0].StringData {
		if !envs[k] {
			t.Errorf("Secret key %s is not a config env name (docs/configuration.md)", k)
		}
	}
	roleOf := map[string]string{"xmodal-indexer": "indexer", "xmodal-query": "serve"}
	for name, d := range deps {
		checkDeployment(t, d, roleOf[name], envs, cfg, cms[0], secrets[0])
	}
	// Autoscaled Deployments leave replicas to their autoscaler.
	for _, d := range deps {
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment %s sets replicas; its autoscaler owns them", d.Name)
		}
	}
	for _, s := range svcs {
		d := selected(t, deps, s.Spec.Selector, "Service "+s.Name)
		for _, p := range s.Spec.Ports {
			if p.TargetPort.StrVal != "" && !hasPort(d, p.TargetPort.StrVal) {
				t.Errorf("Service %s targets port %q, which %s does not name", s.Name, p.TargetPort.StrVal, d.Name)
			}
		}
	}
	for _, p := range pdbs {
		sel, err := metav1.LabelSelectorAsMap(p.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		selected(t, deps, sel, "PodDisruptionBudget "+p.Name)
		if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
			t.Errorf("PodDisruptionBudget %s sets neither minAvailable nor maxUnavailable", p.Name)
		}
	}
	h := hpas[0]
	if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != "xmodal-query" {
		t.Errorf("HPA scales %s/%s, want the query Deployment", h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
		t.Errorf("HPA replicas %v..%d: want at least 2 (the PDB keeps one through evictions)", h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	if len(h.Spec.Metrics) == 0 {
		t.Error("HPA has no metric")
	}
	checkScaledObject(t, scaled[0], deps["xmodal-indexer"], cfg)
}

func objectMeta(o any) *metav1.ObjectMeta {
	switch o := o.(type) {
	case *appsv1.Deployment:
		return &o.ObjectMeta
	case *corev1.ConfigMap:
		return &o.ObjectMeta
	case *corev1.Secret:
		return &o.ObjectMeta
	case *corev1.Service:
		return &o.ObjectMeta
	case *policyv1.PodDisruptionBudget:
		return &o.ObjectMeta
	case *autoscalingv2.HorizontalPodAutoscaler:
		return &o.ObjectMeta
	}
	return nil
}

func selected(t *testing.T, deps map[string]*appsv1.Deployment, sel map[string]string, what string) *appsv1.Deployment {
	t.Helper()
	var hit []*appsv1.Deployment
	for _, d := range deps {
		if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(d.Spec.Template.Labels)) {
			hit = append(hit, d)
		}
	}
	if len(hit) != 1 {
		t.Fatalf("%s selects %d Deployments' pods, want 1 (selector %v)", what, len(hit), sel)
	}
	return hit[0]
}

func hasPort(d *appsv1.Deployment, name string) bool {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

// parseXmodalConfig checks that the ConfigMap's config.yaml uses only known keys
// and returns it flattened (key -> value).
func parseXmodalConfig(t *testing.T, cm *corev1.ConfigMap) map[string]any {
	t.Helper()
	keys, _ := configKeys(t)
	raw, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no config.yaml", cm.Name)
	}
	var tree map[string]any
	if err := yaml.Unmarshal([]byte(raw), &tree); err != nil {
		t.Fatalf("ConfigMap %s config.yaml: %v", cm.Name, err)
	}
	flat := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok && !keys[prefix] {
			for k, x := range m {
				walk(strings.TrimPrefix(prefix+"."+k, "."), x)
			}
			return
		}
		if !keys[prefix] {
			t.Errorf("ConfigMap config.yaml: %s is not a config key (docs/configuration.md)", prefix)
		}
		flat[prefix] = v
	}
	walk("", tree)
	return flat
}

func checkDeployment(t *testing.T, d *appsv1.Deployment, role string, envs map[string]bool, cfg map[string]any, cm *corev1.ConfigMap, sec *corev1.Secret) {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("%s: selector %v does not match its pod labels %v", d.Name, d.Spec.Selector, d.Spec.Template.Labels)
	}
	ps := d.Spec.Template.Spec
	if sc := ps.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("%s: pod does not require runAsNonRoot", d.Name)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", d.Name, len(ps.Containers))
	}
	c := ps.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != role {
		t.Errorf("%s: args %v, want the %s role", d.Name, c.Args, role)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
			t.Errorf("%s: no %s request", d.Name, r)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Errorf("%s: no memory limit", d.Name)
	}
	probe := func(p *corev1.Probe, path, what string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path {
			t.Errorf("%s: %s probe is not GET %s", d.Name, what, path)
			return
		}
		if name := p.HTTPGet.Port.StrVal; name != "" && !hasPort(d, name) {
			t.Errorf("%s: %s probe port %q is not a container port", d.Name, what, name)
		}
	}
	probe(c.LivenessProbe, "/healthz", "liveness")
	probe(c.ReadinessProbe, "/readyz", "readiness")
	if c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", d.Name)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if !envs[e.Name] {
			t.Errorf("%s: env %s is not a config env name (docs/configuration.md)", d.Name, e.Name)
		}
		env[e.Name] = e.Value
	}
	if env["XMODAL_CONFIG"] == "" {
		t.Errorf("%s: no XMODAL_CONFIG", d.Name)
	} else if !mountsConfigMap(d, cm.Name, filepath.Dir(env["XMODAL_CONFIG"])) {
		t.Errorf("%s: XMODAL_CONFIG=%s is not under a mount of ConfigMap %s", d.Name, env["XMODAL_CONFIG"], cm.Name)
	}
	// terminationGracePeriodSeconds covers the preStop hook, shutdown_grace, and
	// the close of the source and the index (10s for the indexer: committing and
	// leaving the Kafka group; 5s for the query role).
	grace := 20 * time.Second // the default
	if s, ok := cfg["shutdown_grace"].(string); ok {
		grace = mustDuration(t, s)
	}
	if s := env["XMODAL_SHUTDOWN_GRACE"]; s != "" {
		grace = mustDuration(t, s)
	}
	need := grace + 5*time.Second
	if role == "indexer" {
		need = grace + 10*time.Second
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		need += time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	if tg := ps.TerminationGracePeriodSeconds; tg == nil || time.Duration(*tg)*time.Second < need {
		got := "unset (30s)"
		if tg != nil {
			got = fmt.Sprintf("%ds", *tg)
		}
		t.Errorf("%s: terminationGracePeriodSeconds %s < %v (shutdown_grace %v + preStop + closing)", d.Name, got, need, grace)
	}
	hasSecret := false
	for _, ef := range c.EnvFrom {
		if ef.SecretRef != nil && ef.SecretRef.Name == sec.Name {
			hasSecret = true
		}
	}
	if !hasSecret {
		t.Errorf("%s: does not take its credentials from Secret %s", d.Name, sec.Name)
	}
	// The binary itself accepts this configuration for this role.
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfgFile, []byte(cm.Data["config.yaml"]), 0o644)
	runEnv := []string{}
	for k, v := range env {
		if k == "XMODAL_CONFIG" {
			v = cfgFile
		}
		runEnv = append(runEnv, k+"="+v)
	}
	for k, v := range sec.StringData {
		runEnv = append(runEnv, k+"="+v)
	}
	if out, err := xmodal(t, runEnv, append(slices.Clone(c.Args), "--check")...); err != nil {
		t.Errorf("%s: xmodal %s --check refuses the manifest's configuration: %v\n%s", d.Name, role, err, out)
	}
}

func mountsConfigMap(d *appsv1.Deployment, cm, dir string) bool {
	vols := map[string]bool{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm {
			vols[v.Name] = true
		}
	}
	for _, m := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
		if vols[m.Name] && m.MountPath == dir {
			return true
		}
	}
	return false
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return d
}

// KEDA's ScaledObject (keda.sh/v1alpha1) and its Kafka scaler, as documented at
// keda.sh/docs/2.16: the fields this test accepts. No Go types module is used.
var (
	scaledObjectSpec = []string{"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
		"idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers"}
	scaleTargetRef = []string{"apiVersion", "kind", "name", "envSourceContainerName"}
	advancedFields = []string{"restoreToOriginalReplicaCount", "horizontalPodAutoscalerConfig", "scalingModifiers"}
	triggerFields  = []string{"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"}
	kafkaMetadata  = []string{"bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
		"offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset", "excludePersistentLag",
		"limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions", "version", "partitionLimitation", "sasl", "tls", "unsafeSsl"}
)

func checkScaledObject(t *testing.T, u *unstructured.Unstructured, indexer *appsv1.Deployment, cfg map[string]any) {
	t.Helper()
	if u.GetNamespace() != indexer.Namespace || u.GetName() == "" {
		t.Errorf("ScaledObject %s/%s: want namespace %s and a name", u.GetNamespace(), u.GetName(), indexer.Namespace)
	}
	spec, ok := u.Object["spec"].(map[string]any)
	if !ok {
		t.Fatal("ScaledObject has no spec")
	}
	only := func(what string, m map[string]any, allowed []string) {
		for k := range m {
			if !slices.Contains(allowed, k) {
				t.Errorf("ScaledObject %s: unknown field %q (known: %v)", what, k, allowed)
			}
		}
	}
	only("spec", spec, scaledObjectSpec)
	ref, _ := spec["scaleTargetRef"].(map[string]any)
	only("spec.scaleTargetRef", ref, scaleTargetRef)
	if ref["name"] != indexer.Name || (ref["kind"] != nil && ref["kind"] != "Deployment") {
		t.Errorf("ScaledObject scales %v %v, want Deployment %s", ref["kind"], ref["name"], indexer.Name)
	}
	minR, _, _ := unstructured.NestedInt64(spec, "minReplicaCount")
	maxR, found, _ := unstructured.NestedInt64(spec, "maxReplicaCount")
	if !found || maxR < 1 || minR > maxR {
		t.Errorf("ScaledObject replicas %d..%d", minR, maxR)
	}
	for _, k := range []string{"pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"} {
		if v, ok := spec[k]; ok {
			if _, isInt := v.(int64); !isInt {
				t.Errorf("ScaledObject spec.%s = %v (%T), want an integer", k, v, v)
			}
		}
	}
	if adv, ok := spec["advanced"].(map[string]any); ok {
		only("spec.advanced", adv, advancedFields)
		if hc, ok := adv["horizontalPodAutoscalerConfig"].(map[string]any); ok {
			only("spec.advanced.horizontalPodAutoscalerConfig", hc, []string{"name", "behavior"})
			b, _ := yaml.Marshal(hc["behavior"])
			if err := yaml.UnmarshalStrict(b, &autoscalingv2.HorizontalPodAutoscalerBehavior{}); err != nil {
				t.Errorf("ScaledObject HPA behavior: %v", err)
			}
		}
	}
	triggers, _ := spec["triggers"].([]any)
	if len(triggers) == 0 {
		t.Fatal("ScaledObject has no trigger")
	}
	for i, x := range triggers {
		tr, _ := x.(map[string]any)
		only(fmt.Sprintf("spec.triggers[%d]", i), tr, triggerFields)
		if tr["type"] != "kafka" {
			t.Errorf("trigger %d is %v, want kafka (consumer lag)", i, tr["type"])
			continue
		}
		md, _ := tr["metadata"].(map[string]any)
		only(fmt.Sprintf("spec.triggers[%d].metadata", i), md, kafkaMetadata)
		for k, v := range md {
			if _, isString := v.(string); !isString {
				t.Errorf("trigger metadata %s = %v (%T): KEDA wants strings", k, v, v)
			}
		}
		if md["consumerGroup"] != cfg["kafka.group"] || md["topic"] != cfg["kafka.topic"] {
			t.Errorf("trigger watches group %v topic %v; the indexer consumes group %v topic %v",
				md["consumerGroup"], md["topic"], cfg["kafka.group"], cfg["kafka.topic"])
		}
		brokers := fmt.Sprint(cfg["kafka.brokers"])
		for _, b := range strings.Split(fmt.Sprint(md["bootstrapServers"]), ",") {
			if !strings.Contains(brokers, strings.TrimSpace(b)) {
				t.Errorf("trigger bootstrapServers %q is not among kafka.brokers %s", b, brokers)
			}
		}
		for _, k := range []string{"lagThreshold", "activationLagThreshold"} {
			if s, ok := md[k].(string); ok {
				if n, err := strconv.Atoi(s); err != nil || n < 0 {
					t.Errorf("trigger %s = %q, want a non-negative integer", k, s)
				}
			}
		}
		if md["lagThreshold"] == nil {
			t.Error("trigger has no lagThreshold")
		}
	}
}
