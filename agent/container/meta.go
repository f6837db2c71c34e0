package container

import (
	"strings"

	"github.com/kinlog/kinlog/internal/jsonx"
)

// Meta is what a log file's path tells about its container. Fields the path does not give
// are empty.
type Meta struct {
	Namespace   string
	Pod         string
	PodUID      string
	Container   string
	ContainerID string
}

// MetaFromPath reads a container's identity from the path of its log file, in the layouts
// the kubelet and Docker write:
//
//	/var/log/pods/<namespace>_<pod>_<pod uid>/<container>/<restart count>.log
//	/var/log/containers/<pod>_<namespace>_<container>-<container id>.log
//	/var/lib/docker/containers/<container id>/<container id>-json.log
//
// The first is the kubelet's own (CRI format); it gives no container id. The second holds
// the symbolic links the kubelet makes to the first. The third is Docker's json-file driver,
// which gives only the container id. Rotated files keep their meaning: "0.log.20240102-150405"
// (the kubelet's, also compressed: ".gz") and "<id>-json.log.1" (Docker's) are understood.
//
// Only the last directories count, not the root, so a host's /var/log mounted elsewhere in
// a container works. Namespaces and pod names cannot hold '_' (they are DNS labels and
// subdomains), which makes the '_'-separated names unambiguous; container names may hold
// '-', so the container id is the final 64 hexadecimal digits. ok is false for any other path.
func MetaFromPath(path string) (Meta, bool) {
	dir, file := cutLast(path)
	dir, parent := cutLast(dir)
	dir, grand := cutLast(dir)

	// Docker: containers/<id>/<id>-json.log[.N]
	if grand == "containers" && isContainerID(parent) {
		rest, ok := strings.CutPrefix(file, parent+"-json.log")
		if ok && (rest == "" || rest[0] == '.' && isDigits(rest[1:])) {
			return Meta{ContainerID: parent}, true
		}
		return Meta{}, false
	}

	// kubelet symbolic links: containers/<pod>_<namespace>_<container>-<id>.log
	if parent == "containers" {
		name, ok := strings.CutSuffix(file, ".log")
		pod, ns, rest, ok3 := split3(name)
		n := len(rest)
		if !ok || !ok3 || n < 66 || rest[n-65] != '-' || !isContainerID(rest[n-64:]) {
			return Meta{}, false
		}
		return Meta{Namespace: ns, Pod: pod, Container: rest[:n-65], ContainerID: rest[n-64:]}, true
	}

	// kubelet: pods/<namespace>_<pod>_<uid>/<container>/<N>.log[.<rotation suffix>]
	_, pods := cutLast(dir)
	restart, rotated, found := strings.Cut(file, ".log")
	if pods != "pods" || parent == "" || !found || !isDigits(restart) || (rotated != "" && rotated[0] != '.') {
		return Meta{}, false
	}
	ns, pod, uid, ok := split3(grand)
	if !ok {
		return Meta{}, false
	}
	return Meta{Namespace: ns, Pod: pod, PodUID: uid, Container: parent}, true
}

// cutLast splits p at its last '/'.
func cutLast(p string) (dir, elem string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// split3 splits s into exactly three non-empty '_'-separated parts.
func split3(s string) (a, b, c string, ok bool) {
	a, rest, ok1 := strings.Cut(s, "_")
	b, c, ok2 := strings.Cut(rest, "_")
	ok = ok1 && ok2 && a != "" && b != "" && c != "" && !strings.Contains(c, "_")
	return a, b, c, ok
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// isContainerID reports whether s is 64 lower-case hexadecimal digits, the form of Docker's,
// containerd's and CRI-O's container ids.
func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// AppendJSON appends m to dst as the JSON object member
//
//	"kubernetes":{"namespace":"…","pod":"…","container":"…","pod_uid":"…","container_id":"…"}
//
// in that member order, leaving out the fields that are empty; a zero Meta gives
// "kubernetes":{}. Nothing is written before the member's name (no comma), nothing after
// its closing brace. Strings are escaped as encoding/json does, without HTML escaping.
func (m Meta) AppendJSON(dst []byte) []byte {
	dst = append(dst, `"kubernetes":{`...)
	sep := false
	for _, f := range [...]struct{ name, v string }{
		{`"namespace":`, m.Namespace},
		{`"pod":`, m.Pod},
		{`"container":`, m.Container},
		{`"pod_uid":`, m.PodUID},
		{`"container_id":`, m.ContainerID},
	} {
		if f.v == "" {
			continue
		}
		if sep {
			dst = append(dst, ',')
		}
		sep = true
		dst = append(dst, f.name...)
		dst = jsonx.AppendString(dst, f.v)
	}
	return append(dst, '}')
}
