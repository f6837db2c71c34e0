package container_test

import (
	"fmt"

	"github.com/kinlog/kinlog/agent/container"
)

// A long line that containerd cut into pieces is joined back into one record.
func ExampleJoiner() {
	file := []string{
		"2024-03-14T09:58:00.000000001Z stdout P {\"msg\":\"a long ",
		"2024-03-14T09:58:00.000000002Z stderr F warning: disk 91% full",
		"2024-03-14T09:58:00.000000003Z stdout F line\"}",
	}
	j := container.NewJoiner(1 << 20)
	for _, s := range file {
		l, err := container.ParseCRI([]byte(s))
		if err != nil {
			fmt.Println(err)
			continue
		}
		if rec, first, _, done := j.Add(l); done {
			fmt.Printf("%s %s %s\n", first.Time.Format("15:04:05.000000000"), first.Stream, rec)
		}
	}
	// Output:
	// 09:58:00.000000002 stderr warning: disk 91% full
	// 09:58:00.000000001 stdout {"msg":"a long line"}
}

func ExampleParseDocker() {
	l, err := container.ParseDocker([]byte(`{"log":"caf\u00e9 \"open\"\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`))
	fmt.Printf("%q %s partial=%v %v %v\n", l.Log, l.Stream, l.Partial, l.Time, err)
	// Output:
	// "café \"open\"" stdout partial=false 2019-01-01 11:11:11.111111111 +0000 UTC <nil>
}

func ExampleMetaFromPath() {
	m, ok := container.MetaFromPath("/var/log/pods/shop_cart-5f7d9b-x2x9q_0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d/cart/0.log")
	fmt.Println(ok)
	fmt.Printf("%s\n", m.AppendJSON(nil))
	m, _ = container.MetaFromPath("/var/log/containers/cart-5f7d9b-x2x9q_shop_istio-proxy-6a5b3c1d2e4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9.log")
	fmt.Printf("%s\n", m.AppendJSON(nil))
	// Output:
	// true
	// "kubernetes":{"namespace":"shop","pod":"cart-5f7d9b-x2x9q","container":"cart","pod_uid":"0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"}
	// "kubernetes":{"namespace":"shop","pod":"cart-5f7d9b-x2x9q","container":"istio-proxy","container_id":"6a5b3c1d2e4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"}
}
