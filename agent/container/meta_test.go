package container

import (
	"encoding/json"
	"testing"
)

const cid = "6a5b3c1d2e4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"

func TestMetaFromPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		want Meta
		ok   bool
	}{
		{"/var/log/pods/default_web-7d4b9c8f6-x2x9q_0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d/nginx/0.log",
			Meta{Namespace: "default", Pod: "web-7d4b9c8f6-x2x9q", PodUID: "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d", Container: "nginx"}, true},
		{"/var/log/pods/kube-system_kube-proxy-abcde_11111111-2222-3333-4444-555555555555/kube-proxy/12.log",
			Meta{Namespace: "kube-system", Pod: "kube-proxy-abcde", PodUID: "11111111-2222-3333-4444-555555555555", Container: "kube-proxy"}, true},
		// Rotated by the kubelet, then compressed.
		{"/var/log/pods/default_web-0_uid/app/0.log.20240314-095800",
			Meta{Namespace: "default", Pod: "web-0", PodUID: "uid", Container: "app"}, true},
		{"/var/log/pods/default_web-0_uid/app/0.log.20240314-095800.gz",
			Meta{Namespace: "default", Pod: "web-0", PodUID: "uid", Container: "app"}, true},
		// Static pods have a hash for a uid; the host's /var/log may be mounted elsewhere.
		{"/host/var/log/pods/kube-system_etcd-node-1_0f1e2d3c4b5a69788796a5b4c3d2e1f0/etcd/3.log",
			Meta{Namespace: "kube-system", Pod: "etcd-node-1", PodUID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0", Container: "etcd"}, true},
		{"/var/log/containers/web-7d4b9c8f6-x2x9q_default_nginx-" + cid + ".log",
			Meta{Namespace: "default", Pod: "web-7d4b9c8f6-x2x9q", Container: "nginx", ContainerID: cid}, true},
		// Container names may hold dashes, and look like ids.
		{"/var/log/containers/api-0_prod_istio-proxy-sidecar-" + cid + ".log",
			Meta{Namespace: "prod", Pod: "api-0", Container: "istio-proxy-sidecar", ContainerID: cid}, true},
		{"/var/log/containers/api-0_prod_" + cid + "-" + cid + ".log",
			Meta{Namespace: "prod", Pod: "api-0", Container: cid, ContainerID: cid}, true},
		{"/var/lib/docker/containers/" + cid + "/" + cid + "-json.log", Meta{ContainerID: cid}, true},
		{"/var/lib/docker/containers/" + cid + "/" + cid + "-json.log.3", Meta{ContainerID: cid}, true},

		{"", Meta{}, false},
		{"/var/log/syslog", Meta{}, false},
		{"/var/log/app/web.log", Meta{}, false},
		{"/var/log/pods/default_web-0_uid/app/config.json", Meta{}, false},
		{"/var/log/pods/default_web-0_uid/app/x.log", Meta{}, false},
		{"/var/log/pods/default_web-0_uid/app/.log", Meta{}, false},
		{"/var/log/pods/default_web-0_uid/app/0.logx", Meta{}, false},
		{"/var/log/pods/default_web-0/app/0.log", Meta{}, false},       // no uid
		{"/var/log/pods/default_web_0_uid/app/0.log", Meta{}, false},   // four parts
		{"/var/log/pods/_web-0_uid/app/0.log", Meta{}, false},          // no namespace
		{"/var/log/other/default_web-0_uid/app/0.log", Meta{}, false},  // not under pods
		{"/var/log/pods/default_web-0_uid/0.log", Meta{}, false},       // no container directory
		{"/var/log/containers/web-0_default_nginx.log", Meta{}, false}, // no id
		{"/var/log/containers/web-0_default_nginx-" + cid[:63] + ".log", Meta{}, false},
		{"/var/log/containers/web-0_default_nginx-" + cid + "X.log", Meta{}, false},
		{"/var/log/containers/web-0_default_nginx_" + cid + ".log", Meta{}, false},
		{"/var/log/containers/web-0_default_-" + cid + ".log", Meta{}, false}, // no container name
		{"/var/log/containers/web-0_default_nginx-" + cid + ".log.1", Meta{}, false},
		{"/var/log/containers/web-0_default_nginx-6A5B3C1D2E4F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9.log", Meta{}, false},
		{"/var/lib/docker/containers/" + cid + "/other-json.log", Meta{}, false},
		{"/var/lib/docker/containers/" + cid + "/" + cid + "-json.log.old", Meta{}, false},
		{"/var/lib/docker/containers/" + cid + "/config.v2.json", Meta{}, false},
	} {
		got, ok := MetaFromPath(tc.path)
		if ok != tc.ok || got != tc.want {
			t.Errorf("MetaFromPath(%q) = %+v, %v; want %+v, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func TestMetaAppendJSON(t *testing.T) {
	for _, tc := range []struct {
		m    Meta
		want string
	}{
		{Meta{Namespace: "default", Pod: "web-0", PodUID: "u-1", Container: "app", ContainerID: cid},
			`"kubernetes":{"namespace":"default","pod":"web-0","container":"app","pod_uid":"u-1","container_id":"` + cid + `"}`},
		{Meta{Namespace: "default", Pod: "web-0", PodUID: "u-1", Container: "app"},
			`"kubernetes":{"namespace":"default","pod":"web-0","container":"app","pod_uid":"u-1"}`},
		{Meta{ContainerID: cid}, `"kubernetes":{"container_id":"` + cid + `"}`},
		{Meta{}, `"kubernetes":{}`},
		// Paths are bytes: whatever a file name holds comes out as valid JSON.
		{Meta{Container: "a\"b\\c<\x01\xff"}, `"kubernetes":{"container":"a\"b\\c<\u0001\ufffd"}`},
	} {
		got := tc.m.AppendJSON([]byte("{"))
		if string(got[1:]) != tc.want {
			t.Errorf("AppendJSON(%+v) = %s\nwant %s", tc.m, got[1:], tc.want)
		}
		if !json.Valid(append(got, '}')) {
			t.Errorf("AppendJSON(%+v) does not make a valid object: %s}", tc.m, got)
		}
	}
}

func TestMetaAllocations(t *testing.T) {
	path := "/var/log/containers/web-7d4b9c8f6-x2x9q_default_nginx-" + cid + ".log"
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() {
		m, _ := MetaFromPath(path)
		buf = m.AppendJSON(buf[:0])
	}); n != 0 {
		t.Errorf("MetaFromPath and AppendJSON allocate %v times", n)
	}
}
