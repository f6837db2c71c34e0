package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
)

// Toxiproxy is the API endpoint of the stack's toxiproxy server (KINLOG_TOXIPROXY), the
// fault-injecting TCP proxy the fault tests put between a client and a service.
const Toxiproxy Service = "KINLOG_TOXIPROXY"

// FaultProxy is a toxiproxy proxy in front of one service of the stack. Clients given
// [FaultProxy.URL] as their endpoint reach the service through it; the methods inject
// faults at the TCP level, so the client sees exactly what a real network or a real
// stopped server gives it. The proxy is deleted when the test ends.
type FaultProxy struct {
	t     testing.TB
	proxy *toxiproxy.Proxy
	// URL is the endpoint to give clients: the service's URL with the proxy's address.
	URL string
}

// NewFaultProxy creates a proxy in front of service (one of the endpoint variables, such as
// [Kinesis]) on a free port of 127.0.0.1. It skips or fails like [Require] when toxiproxy
// or the service is not there.
func NewFaultProxy(t testing.TB, service Service) *FaultProxy {
	t.Helper()
	Require(t, Toxiproxy, service)
	up, err := url.Parse(os.Getenv(string(service)))
	if err != nil {
		t.Fatalf("parsing %s: %v", service, err)
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	// The toxiproxy client puts the name in URL paths unescaped: a subtest name holding '#'
	// or '?' ("case#01") would address another proxy, or none.
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '=':
			return r
		}
		return '_'
	}, t.Name()) + "-" + hex.EncodeToString(id[:])
	c := toxiproxy.NewClient(os.Getenv(string(Toxiproxy)))
	p, err := c.CreateProxy(name, "127.0.0.1:0", up.Host)
	if err != nil {
		t.Fatalf("creating toxiproxy proxy in front of %s: %v", up.Host, err)
	}
	fp := &FaultProxy{t: t, proxy: p}
	u := *up
	u.Host = p.Listen
	fp.URL = u.String()
	t.Cleanup(func() {
		if err := p.Delete(); err != nil {
			t.Errorf("deleting toxiproxy proxy %s: %v", name, err)
		}
	})
	return fp
}

// Host returns the proxy's listen address, host:port.
func (f *FaultProxy) Host() string { return f.proxy.Listen }

// Down closes the proxy's listener and every connection through it: new connections are
// refused, as by a stopped server.
func (f *FaultProxy) Down() {
	f.t.Helper()
	if err := f.proxy.Disable(); err != nil {
		f.t.Fatalf("disabling proxy: %v", err)
	}
}

// Up listens again on the same address after [FaultProxy.Down].
func (f *FaultProxy) Up() {
	f.t.Helper()
	if err := f.proxy.Enable(); err != nil {
		f.t.Fatalf("enabling proxy: %v", err)
	}
}

func (f *FaultProxy) add(name, typ, stream string, attrs toxiproxy.Attributes) {
	f.addSome(name, typ, stream, 1, attrs)
}

// addSome adds a toxic to a fraction (toxicity, 0 to 1) of the connections.
func (f *FaultProxy) addSome(name, typ, stream string, toxicity float32, attrs toxiproxy.Attributes) {
	f.t.Helper()
	if _, err := f.proxy.AddToxic(name, typ, stream, toxicity, attrs); err != nil {
		f.t.Fatalf("adding %s toxic: %v", typ, err)
	}
}

// freezeFor is the latency of a frozen proxy: longer than any test.
const freezeFor = 24 * time.Hour

// Freeze holds every byte in both directions, on open and new connections, without closing
// anything: connections are accepted and requests never answered, as by a frozen
// (SIGSTOPped) server. [FaultProxy.Heal] releases the held bytes, as SIGCONT would: the
// service then executes the requests sent during the freeze (even those their clients gave
// up on) and its answers reach the clients still waiting.
//
// It is a latency toxic of a day each way: toxiproxy's timeout toxic would drop the bytes
// instead, and close every connection when removed, which no frozen server does.
func (f *FaultProxy) Freeze() {
	f.add("freeze-up", "latency", "upstream", toxiproxy.Attributes{"latency": freezeFor.Milliseconds()})
	f.add("freeze-down", "latency", "downstream", toxiproxy.Attributes{"latency": freezeFor.Milliseconds()})
}

// LoseResponses lets requests through to the service, which executes them, and drops its
// answers: the client times out on requests that were applied. [FaultProxy.Heal] closes the
// connections whose answers were dropped; a client without a timeout waits until then.
func (f *FaultProxy) LoseResponses() {
	f.add("lose-responses", "timeout", "downstream", toxiproxy.Attributes{"timeout": 0})
}

// BlackHole holds, for ever, the service's answers on a fraction (0 to 1) of the
// connections, drawn at random for each open connection and each new one; the others are
// untouched. On a connection in the hole requests reach the service, which executes them,
// and nothing comes back — not even a close, since the service's close waits behind the
// held answer — as on a network path that silently drops packets: only a client-side
// deadline gets the caller out. [FaultProxy.Heal] releases the held bytes.
func (f *FaultProxy) BlackHole(fraction float32) {
	f.t.Helper()
	f.addSome("black-hole", "latency", "downstream", fraction, toxiproxy.Attributes{"latency": freezeFor.Milliseconds()})
}

// Latency delays the service's answers by d, give or take up to jitter.
func (f *FaultProxy) Latency(d, jitter time.Duration) {
	f.add("latency", "latency", "downstream", toxiproxy.Attributes{"latency": d.Milliseconds(), "jitter": jitter.Milliseconds()})
}

// ResetConnections resets (TCP RST) every connection as soon as the client sends data on it
// — mid-request, before the service answers.
func (f *FaultProxy) ResetConnections() {
	f.add("reset", "reset_peer", "upstream", toxiproxy.Attributes{"timeout": 0})
}

// CutResponsesAfter closes each connection after n bytes of answer have passed: answers are
// cut in the middle.
func (f *FaultProxy) CutResponsesAfter(n int) {
	f.add("cut", "limit_data", "downstream", toxiproxy.Attributes{"bytes": n})
}

// Bandwidth limits the traffic in each direction to kbps kilobytes per second.
func (f *FaultProxy) Bandwidth(kbps int) {
	f.add("bandwidth-up", "bandwidth", "upstream", toxiproxy.Attributes{"rate": kbps})
	f.add("bandwidth-down", "bandwidth", "downstream", toxiproxy.Attributes{"rate": kbps})
}

// Heal removes every toxic; the proxy passes traffic untouched again.
func (f *FaultProxy) Heal() {
	f.t.Helper()
	toxics, err := f.proxy.Toxics()
	if err != nil {
		f.t.Fatalf("listing toxics: %v", err)
	}
	for _, tx := range toxics {
		if err := f.proxy.RemoveToxic(tx.Name); err != nil {
			f.t.Fatalf("removing toxic %s: %v", tx.Name, err)
		}
	}
}
