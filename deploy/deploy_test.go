package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// noProxyMust are the hosts an app's NO_PROXY must hold so that metadata
// credentials and local calls never loop through the proxy.
var noProxyMust = []string{"169.254.169.254", "169.254.170.2", "fd00:ec2::254", "localhost", "127.0.0.1"}

type envVar struct {
	Name      string         `yaml:"name" json:"name"`
	Value     string         `yaml:"value" json:"value"`
	ValueFrom map[string]any `yaml:"valueFrom" json:"valueFrom"`
}

type k8sContainer struct {
	Name          string   `yaml:"name"`
	Args          []string `yaml:"args"`
	RestartPolicy string   `yaml:"restartPolicy"`
	Env           []envVar `yaml:"env"`
	EnvFrom       []any    `yaml:"envFrom"`
	VolumeMounts  []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	ReadinessProbe *struct {
		Exec struct {
			Command []string `yaml:"command"`
		} `yaml:"exec"`
	} `yaml:"readinessProbe"`
}

type k8sPod struct {
	Kind string `yaml:"kind"`
	Spec struct {
		InitContainers []k8sContainer `yaml:"initContainers"`
		Containers     []k8sContainer `yaml:"containers"`
	} `yaml:"spec"`
}

func env(vars []envVar, name string) (string, bool) {
	for _, v := range vars {
		if v.Name == name {
			return v.Value, true
		}
	}
	return "", false
}

// checkAppEnv asserts the app's proxy settings and that it holds no credentials.
func checkAppEnv(t *testing.T, where string, vars []envVar) {
	t.Helper()
	noProxy, ok := env(vars, "NO_PROXY")
	if !ok {
		t.Fatalf("%s: app has no NO_PROXY", where)
	}
	entries := strings.Split(noProxy, ",")
	for _, must := range noProxyMust {
		if !slices.Contains(entries, must) {
			t.Errorf("%s: NO_PROXY %q lacks %s", where, noProxy, must)
		}
	}
	if p, _ := env(vars, "HTTPS_PROXY"); !strings.HasPrefix(p, "http://") || !strings.HasSuffix(p, ":8080") {
		t.Errorf("%s: HTTPS_PROXY = %q, want the sidecar on :8080", where, p)
	}
	if ca, _ := env(vars, "AWS_CA_BUNDLE"); ca == "" {
		t.Errorf("%s: app does not trust the proxy CA (AWS_CA_BUNDLE)", where)
	}
	for _, v := range vars {
		if v.ValueFrom != nil {
			t.Errorf("%s: app env %s comes from %v: the app must hold no credentials", where, v.Name, v.ValueFrom)
		}
		switch v.Name {
		case "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY":
			if !strings.HasPrefix(v.Value, "placeholder") {
				t.Errorf("%s: app %s = %q, want a placeholder", where, v.Name, v.Value)
			}
		case "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI":
			t.Errorf("%s: app carries credential setting %s", where, v.Name)
		}
	}
}

func TestKubernetesSidecar(t *testing.T) {
	var pod k8sPod
	readYAML(t, filepath.Join("kubernetes", "pod.yaml"), &pod)
	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].RestartPolicy != "Always" {
		t.Fatalf("want skewproxy as a native sidecar (one init container, restartPolicy Always), got %+v", pod.Spec.InitContainers)
	}
	side := pod.Spec.InitContainers[0]
	if side.ReadinessProbe == nil {
		t.Fatal("sidecar has no readiness probe")
	}
	cmd := strings.Join(side.ReadinessProbe.Exec.Command, " ")
	if !strings.Contains(cmd, "skewproxy healthcheck") || !strings.Contains(cmd, "/readyz") {
		t.Errorf("readiness probe %q, want skewproxy healthcheck of /readyz", cmd)
	}
	caDir := ""
	for _, a := range side.Args {
		if v, ok := strings.CutPrefix(a, "--ca-export="); ok {
			caDir = filepath.Dir(v)
		}
	}
	if caDir == "" {
		t.Fatal("sidecar does not export its CA (--ca-export)")
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one app container, got %d", len(pod.Spec.Containers))
	}
	app := pod.Spec.Containers[0]
	checkAppEnv(t, "kubernetes app", app.Env)
	if len(app.EnvFrom) != 0 {
		t.Errorf("app takes envFrom %v: it must hold no credentials", app.EnvFrom)
	}
	mounted := func(c k8sContainer, path string) (string, bool) {
		for _, m := range c.VolumeMounts {
			if m.MountPath == path {
				return m.Name, m.ReadOnly
			}
		}
		return "", false
	}
	sideVol, _ := mounted(side, caDir)
	appVol, ro := mounted(app, caDir)
	if sideVol == "" || sideVol != appVol || !ro {
		t.Errorf("CA volume: sidecar mounts %q at %s, app mounts %q (read-only %v): want the same volume, read-only for the app", sideVol, caDir, appVol, ro)
	}
	if bundle, _ := env(app.Env, "AWS_CA_BUNDLE"); filepath.Dir(bundle) != caDir {
		t.Errorf("AWS_CA_BUNDLE %q is not in the shared CA volume %s", bundle, caDir)
	}
	var kust struct {
		Resources []string `yaml:"resources"`
	}
	readYAML(t, filepath.Join("kubernetes", "kustomization.yaml"), &kust)
	for _, r := range kust.Resources {
		if _, err := os.Stat(filepath.Join("kubernetes", r)); err != nil {
			t.Errorf("kustomization resource %s: %v", r, err)
		}
	}
}

func TestECSTaskDefinition(t *testing.T) {
	var td struct {
		TaskRoleArn          string `json:"taskRoleArn"`
		ContainerDefinitions []struct {
			Name        string   `json:"name"`
			Command     []string `json:"command"`
			Environment []envVar `json:"environment"`
			Secrets     []any    `json:"secrets"`
			HealthCheck *struct {
				Command []string `json:"command"`
			} `json:"healthCheck"`
			DependsOn []struct {
				ContainerName string `json:"containerName"`
				Condition     string `json:"condition"`
			} `json:"dependsOn"`
			MountPoints []struct {
				SourceVolume  string `json:"sourceVolume"`
				ContainerPath string `json:"containerPath"`
			} `json:"mountPoints"`
		} `json:"containerDefinitions"`
	}
	b, err := os.ReadFile(filepath.Join("ecs", "task-definition.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &td); err != nil {
		t.Fatalf("task-definition.json: %v", err)
	}
	if td.TaskRoleArn == "" || len(td.ContainerDefinitions) != 2 {
		t.Fatalf("want a task role and two containers, got %q and %d", td.TaskRoleArn, len(td.ContainerDefinitions))
	}
	side, app := td.ContainerDefinitions[0], td.ContainerDefinitions[1]
	if side.Name != "skewproxy" || side.HealthCheck == nil || !strings.Contains(strings.Join(side.HealthCheck.Command, " "), "healthcheck") {
		t.Errorf("sidecar %q needs a healthcheck running `skewproxy healthcheck`", side.Name)
	}
	if len(app.DependsOn) != 1 || app.DependsOn[0].ContainerName != "skewproxy" || app.DependsOn[0].Condition != "HEALTHY" {
		t.Errorf("app dependsOn = %+v, want skewproxy HEALTHY", app.DependsOn)
	}
	checkAppEnv(t, "ecs app", app.Environment)
	if len(app.Secrets) != 0 {
		t.Errorf("app has secrets %v: it must hold no credentials", app.Secrets)
	}
	vol := func(mps []struct {
		SourceVolume  string `json:"sourceVolume"`
		ContainerPath string `json:"containerPath"`
	}, name string) bool {
		for _, m := range mps {
			if m.SourceVolume == name {
				return true
			}
		}
		return false
	}
	if !vol(side.MountPoints, "skewproxy-ca") || !vol(app.MountPoints, "skewproxy-ca") {
		t.Error("the CA volume must be mounted in both containers")
	}
	if vol(app.MountPoints, "skewproxy-state") {
		t.Error("the app must not mount skewproxy's state (it holds the CA key)")
	}
}

func TestComposeParses(t *testing.T) {
	var c struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	readYAML(t, filepath.Join("compose", "compose.yaml"), &c)
	for _, s := range []string{"app", "skewproxy", "minio"} {
		if _, ok := c.Services[s]; !ok {
			t.Errorf("compose has no %s service", s)
		}
	}
	var vars []envVar
	for k, v := range c.Services["app"].Environment {
		vars = append(vars, envVar{Name: k, Value: v})
	}
	checkAppEnv(t, "compose app", vars)
}

func TestSystemdUnitVerifies(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join("systemd", "skewproxy.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"StateDirectory=skewproxy", "DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes",
		"CapabilityBoundingSet=\n", "RestrictAddressFamilies=", "After=network-online.target", "Restart=on-failure", "EnvironmentFile="} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found: run `make deps`")
	}
	// systemd-analyze verify wants ExecStart to exist: point it at a built binary.
	dir := t.TempDir()
	bin := filepath.Join(dir, "skewproxy")
	build := exec.Command("go", "build", "-o", bin, "../cmd/skewproxy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "skewproxy.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/skewproxy", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "skewproxy.service:") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
