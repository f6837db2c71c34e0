package deploytest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The Dockerfile is checked by parsing it: no Docker engine runs here. Parsing follows the
// Dockerfile reference for what kinlog's file uses: comments, line continuations,
// case-insensitive instructions, --flags, global ARGs substituted into FROM.

type instruction struct {
	line  int
	cmd   string   // upper case
	flags []string // leading --flag[=value] tokens
	rest  string   // the arguments after the flags, as written
}

type dockerStage struct {
	image  string // FROM image after ARG substitution
	name   string // AS name
	instrs []instruction
}

type dockerfile struct {
	globalArgs map[string]string
	stages     []dockerStage
}

func parseDockerfile(src string) (*dockerfile, error) {
	df := &dockerfile{globalArgs: map[string]string{}}
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// Join continuation lines; comment lines inside a continuation are dropped.
		for strings.HasSuffix(line, `\`) {
			line = strings.TrimSuffix(line, `\`)
			i++
			for i < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i]), "#") {
				i++
			}
			if i >= len(lines) {
				return nil, fmt.Errorf("line %d: continuation at end of file", start)
			}
			line += " " + strings.TrimSpace(lines[i])
		}
		cmd, rest, _ := strings.Cut(line, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd)}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			flag, after, _ := strings.Cut(rest, " ")
			in.flags = append(in.flags, flag)
			rest = strings.TrimSpace(after)
		}
		in.rest = rest
		switch in.cmd {
		case "FROM":
			f := strings.Fields(rest)
			if len(f) != 1 && (len(f) != 3 || !strings.EqualFold(f[1], "AS")) {
				return nil, fmt.Errorf("line %d: FROM %q: want an image and an optional AS name", start, rest)
			}
			st := dockerStage{image: df.expand(f[0])}
			if len(f) == 3 {
				st.name = f[2]
			}
			df.stages = append(df.stages, st)
			continue
		case "ARG":
			if len(df.stages) == 0 {
				name, val, _ := strings.Cut(rest, "=")
				df.globalArgs[name] = val
				continue
			}
		case "ADD", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR", "ONBUILD":
		default:
			return nil, fmt.Errorf("line %d: unknown instruction %q", start, cmd)
		}
		if len(df.stages) == 0 {
			return nil, fmt.Errorf("line %d: %s before the first FROM", start, in.cmd)
		}
		st := &df.stages[len(df.stages)-1]
		st.instrs = append(st.instrs, in)
	}
	if len(df.stages) == 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return df, nil
}

var argRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// expand substitutes global ARGs; $BUILDPLATFORM-style automatic ARGs stay as written.
func (df *dockerfile) expand(s string) string {
	return argRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := df.globalArgs[argRef.FindStringSubmatch(m)[1]]; ok {
			return v
		}
		return m
	})
}

func (st *dockerStage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range st.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// execForm decodes a JSON-array (exec form) argument list.
func execForm(in instruction) ([]string, error) {
	var args []string
	if err := json.Unmarshal([]byte(in.rest), &args); err != nil || len(args) == 0 {
		return nil, fmt.Errorf("line %d: %s %s is not in exec form (a JSON array), so signals would go to a shell", in.line, in.cmd, in.rest)
	}
	return args, nil
}

var ldflagsStrip = regexp.MustCompile(`-ldflags[= ]("-s -w"|'-s -w')`)

// checkDockerfile returns everything wrong with the Dockerfile, given the port and args the
// Deployment uses.
func checkDockerfile(src string, port int, podArgs []string) problems {
	var ps problems
	df, err := parseDockerfile(src)
	if err != nil {
		ps = append(ps, err)
		return ps
	}
	if len(df.stages) < 2 {
		ps.addf("want a multi-stage build, got %d stage(s)", len(df.stages))
		return ps
	}

	// Build stage: static, trimmed, stripped build of ./cmd/kinlog.
	build := df.stages[0]
	if !strings.HasPrefix(build.image, "golang:1.26") {
		ps.addf("build stage FROM %s, want golang:1.26", build.image)
	}
	binary := ""
	for _, in := range build.all("RUN") {
		if !strings.Contains(in.rest, "go build") {
			continue
		}
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/kinlog"} {
			if !strings.Contains(in.rest, want) {
				ps.addf("line %d: go build without %s", in.line, want)
			}
		}
		if !ldflagsStrip.MatchString(in.rest) {
			ps.addf(`line %d: go build without -ldflags="-s -w"`, in.line)
		}
		if m := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(in.rest); m != nil {
			binary = m[1]
		}
	}
	if binary == "" {
		ps.addf("build stage has no `go build -o <path>`")
	}

	// Final stage: small non-root base, the binary copied from the build stage.
	final := df.stages[len(df.stages)-1]
	distroless := regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:(nonroot|latest)(@sha256:[0-9a-f]{64})?$`)
	if !distroless.MatchString(final.image) && final.image != "scratch" {
		ps.addf("final stage FROM %s, want distroless static (nonroot) or scratch", final.image)
	}
	dest := ""
	for _, in := range final.all("COPY") {
		if slices.Contains(in.flags, "--from="+build.name) || slices.Contains(in.flags, "--from=0") {
			if f := strings.Fields(in.rest); len(f) == 2 && f[0] == binary {
				dest = f[1]
			}
		}
	}
	if dest == "" {
		ps.addf("final stage does not COPY %s from the build stage", binary)
	}
	if final.image == "scratch" {
		certs := false
		for _, in := range final.all("COPY") {
			certs = certs || strings.Contains(in.rest, "ca-certificates")
		}
		if !certs {
			ps.addf("scratch image without CA certificates: TLS to AWS would fail")
		}
	}
	users := final.all("USER")
	switch {
	case len(users) == 0 && !strings.Contains(final.image, ":nonroot"):
		ps.addf("final stage has no USER and its base does not default to a non-root user")
	case len(users) > 0:
		u, _, _ := strings.Cut(users[len(users)-1].rest, ":")
		if u == "" || u == "root" || u == "0" {
			ps.addf("final stage runs as USER %q (root)", users[len(users)-1].rest)
		} else if _, err := strconv.Atoi(u); err != nil {
			ps.addf("USER %q: give a numeric uid so Kubernetes' runAsNonRoot can verify it", u)
		}
	}

	exposed := false
	for _, in := range final.all("EXPOSE") {
		for _, f := range strings.Fields(in.rest) {
			exposed = exposed || strings.TrimSuffix(f, "/tcp") == strconv.Itoa(port)
		}
	}
	if !exposed {
		ps.addf("final stage does not EXPOSE %d (the metrics and health port)", port)
	}

	switch eps := final.all("ENTRYPOINT"); {
	case len(eps) != 1:
		ps.addf("final stage has %d ENTRYPOINT instructions, want 1", len(eps))
	default:
		ep, err := execForm(eps[0])
		if err != nil {
			ps = append(ps, err)
		} else if ep[0] != dest || filepath.Base(ep[0]) != "kinlog" || len(ep) != 1 {
			ps.addf("ENTRYPOINT %q, want [%q] (the kinlog binary copied from the build)", ep, dest)
		}
	}
	if cmds := final.all("CMD"); len(cmds) == 1 {
		cmd, err := execForm(cmds[0])
		if err != nil {
			ps = append(ps, err)
		} else if !slices.Equal(cmd, podArgs) {
			ps.addf("CMD %q differs from the Deployment's args %q", cmd, podArgs)
		}
	}
	return ps
}

func deploymentPortAndArgs(t *testing.T) (int, []string) {
	t.Helper()
	ms := loadManifests(t)
	c := ms.deployment.Spec.Template.Spec.Containers[0]
	return c.Ports[0].ContainerPort, c.Args
}

func TestDockerfile(t *testing.T) {
	port, args := deploymentPortAndArgs(t)
	requireNone(t, "infra/docker/Dockerfile", checkDockerfile(string(readFile(t, "infra/docker/Dockerfile")), port, args))

	// What the build compiles exists and is a command.
	main, err := os.ReadFile(filepath.Join(repoRoot(t), "cmd", "kinlog", "main.go"))
	if err != nil || !regexp.MustCompile(`(?m)^package main$`).Match(main) {
		t.Errorf("./cmd/kinlog is not a main package: %v", err)
	}
}

// TestDockerfileChecksCatch edits one thing at a time in the real Dockerfile and requires the
// check to report it.
func TestDockerfileChecksCatch(t *testing.T) {
	src := string(readFile(t, "infra/docker/Dockerfile"))
	port, args := deploymentPortAndArgs(t)
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"cgo", "CGO_ENABLED=0 ", "", "without CGO_ENABLED=0"},
		{"trimpath", "-trimpath ", "", "without -trimpath"},
		{"not stripped", `-ldflags="-s -w" `, "", "-ldflags"},
		{"other package", "./cmd/kinlog\n", "./cmd/other\n", "without ./cmd/kinlog"},
		{"old go", "ARG GO_VERSION=1.26", "ARG GO_VERSION=1.21", "want golang:1.26"},
		{"root user", "USER 65532:65532", "USER root", "(root)"},
		{"root uid", "USER 65532:65532", "USER 0:0", "(root)"},
		{"named user", "USER 65532:65532", "USER nonroot", "numeric uid"},
		{"big base", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM debian:12", "want distroless"},
		{"scratch without certs", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM scratch", "CA certificates"},
		{"port", "EXPOSE 8080", "EXPOSE 9090", "does not EXPOSE 8080"},
		{"shell entrypoint", `ENTRYPOINT ["/usr/local/bin/kinlog"]`, "ENTRYPOINT /usr/local/bin/kinlog", "not in exec form"},
		{"wrong binary", `ENTRYPOINT ["/usr/local/bin/kinlog"]`, `ENTRYPOINT ["/bin/sh"]`, "ENTRYPOINT"},
		{"cmd", `CMD ["consume", "--config", "/etc/kinlog/kinlog.yaml"]`, `CMD ["demo"]`, "differs from the Deployment"},
		{"single stage", "FROM gcr.io/distroless/static-debian12:nonroot\nCOPY --from=build /out/kinlog /usr/local/bin/kinlog\n", "", "multi-stage"},
		{"typo", "WORKDIR /src", "WORKDRI /src", "unknown instruction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(src, tc.old) {
				t.Fatalf("the Dockerfile no longer contains %q; update the test", tc.old)
			}
			requireProblem(t, checkDockerfile(strings.Replace(src, tc.old, tc.new, 1), port, args), tc.want)
		})
	}
}
