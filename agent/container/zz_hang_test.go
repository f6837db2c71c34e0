package container

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

func TestHangHunt(t *testing.T) {
	seeds := []string{
		`{"log":"hello world\n","stream":"stdout","time":"2019-01-01T11:11:11.111111111Z"}`,
		`{"log":"{\"a\":\"\u00e9\ud83d\ude00\\\/\b\f\r\t\"}\n","stream":"stderr","time":"2019-01-01T11:11:11Z"}`,
		`{"log":"x\n","stream":"stdout","attrs":{"a":[1,2.5e3,true,null,{"b":"}"}]},"time":"2019-01-01T11:11:11Z"}`,
	}
	alpha := []byte(`{}[]":,\u0123456789abcdefZT-+. tnrl` + "\n\x00\xff")
	cur := make(chan []byte, 1)
	go func() {
		for {
			time.Sleep(500 * time.Millisecond)
			select {
			case b := <-cur:
				cur <- b
			default:
			}
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	r := rand.New(rand.NewPCG(1, 2))
	var last time.Time
	for n := 0; time.Now().Before(deadline); n++ {
		b := []byte(seeds[r.IntN(len(seeds))])
		for k := r.IntN(8); k >= 0; k-- {
			p := r.IntN(len(b) + 1)
			switch r.IntN(4) {
			case 0:
				b = append(b[:p], append([]byte{alpha[r.IntN(len(alpha))]}, b[p:]...)...)
			case 1:
				if p < len(b) {
					b = append(b[:p], b[p+1:]...)
				}
			case 2:
				if p < len(b) {
					b[p] = alpha[r.IntN(len(alpha))]
				}
			case 3:
				q := r.IntN(len(b) + 1)
				lo, hi := min(p, q), max(p, q)
				b = append(b[:hi], append(append([]byte{}, b[lo:hi]...), b[hi:]...)...)
			}
		}
		os.WriteFile("/tmp/fz/cur", b, 0o644)
		last = time.Now()
		ParseDocker(b)
		if d := time.Since(last); d > 100*time.Millisecond {
			t.Fatalf("slow %v on %q", d, b)
		}
	}
	fmt.Println("done")
}
