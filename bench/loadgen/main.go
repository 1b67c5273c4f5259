// Command loadgen loads an HTTPS URL over mutual TLS and prints one JSON object with the result.
//
// Standard library only, so Debian's golang-go builds it offline. Two modes:
//
//	keepalive: -c connections, each a loop of GETs on one TLS connection (reconnects after an error)
//	newconn:   -c workers, each opening a new TLS connection per request (full handshake:
//	           no client session cache, so no resumption) and sending "Connection: close"
//	resume:    as newconn, but with a client session cache: after each worker's first connection the
//	           handshakes resume the session (TLS 1.3 tickets), as real clients do; "resumed" counts them
//
// The run lasts -d (a duration) or until -n requests in total have completed, whichever is given.
// A warm-up of -warmup is run first and not counted.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Mode        string  `json:"mode"`
	Connections int     `json:"connections"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	Non2xx      int64   `json:"non_2xx"`
	Seconds     float64 `json:"seconds"`
	RPS         float64 `json:"rps"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	Resumed     int64   `json:"resumed"`
	FirstError  string  `json:"first_error,omitempty"`
}

type worker struct {
	cfg       *tls.Config
	addr      string
	reqBytes  []byte
	keepalive bool
	conn      *tls.Conn
	br        *bufio.Reader
}

func (w *worker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// one performs one request and returns the HTTP status.
func (w *worker) one() (int, error) {
	if w.conn == nil {
		raw, err := net.DialTimeout("tcp", w.addr, 10*time.Second)
		if err != nil {
			return 0, err
		}
		raw.(*net.TCPConn).SetNoDelay(true)
		c := tls.Client(raw, w.cfg)
		if err := c.Handshake(); err != nil {
			raw.Close()
			return 0, err
		}
		if c.ConnectionState().DidResume {
			resumed.Add(1)
		}
		w.conn = c
		w.br = bufio.NewReaderSize(c, 16384)
	}
	w.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := w.conn.Write(w.reqBytes); err != nil {
		w.close()
		return 0, err
	}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		w.close()
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		w.close()
		return 0, err
	}
	if !w.keepalive || resp.Close {
		w.close()
	}
	return resp.StatusCode, nil
}

var resumed atomic.Int64

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(sorted)-1))
	return float64(sorted[i]) / 1e6
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	target := flag.String("url", "", "https URL to GET")
	certFile := flag.String("cert", "", "client certificate (PEM)")
	keyFile := flag.String("key", "", "client private key (PEM); defaults to -cert")
	caFile := flag.String("ca", "", "CA file (PEM) to verify the server; empty: do not verify")
	mode := flag.String("mode", "keepalive", "keepalive or newconn")
	conns := flag.Int("c", 16, "connections (keepalive) or concurrent workers (newconn)")
	dur := flag.Duration("d", 0, "duration of the measured run")
	total := flag.Int64("n", 0, "requests in total (used when -d is 0)")
	warmup := flag.Duration("warmup", 0, "warm-up before the measured run, not counted")
	flag.Parse()

	if *target == "" || (*dur == 0 && *total == 0) {
		fail("need -url and one of -d or -n")
	}
	if *mode != "keepalive" && *mode != "newconn" && *mode != "resume" {
		fail("unknown -mode %q", *mode)
	}
	u, err := url.Parse(*target)
	if err != nil || u.Scheme != "https" {
		fail("bad -url %q", *target)
	}
	host := u.Hostname()
	port := u.Port()
	if port == "" {
		port = "443"
	}
	cfg := &tls.Config{ServerName: host, ClientSessionCache: nil}
	if *mode == "resume" {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1024)
	}
	if *certFile != "" {
		kf := *keyFile
		if kf == "" {
			kf = *certFile
		}
		pair, err := tls.LoadX509KeyPair(*certFile, kf)
		if err != nil {
			fail("client certificate: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fail("CA file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fail("no certificate in CA file %s", *caFile)
		}
		cfg.RootCAs = pool
	} else {
		cfg.InsecureSkipVerify = true
	}
	keepalive := *mode == "keepalive"
	connHeader := "keep-alive"
	if !keepalive {
		connHeader = "close"
	}
	path := u.RequestURI()
	req := []byte(fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: roost-loadgen\r\nAccept: */*\r\nConnection: %s\r\n\r\n",
		path, u.Host, connHeader))
	addr := net.JoinHostPort(host, port)

	run := func(d time.Duration, n int64, record bool) result {
		var (
			wg       sync.WaitGroup
			count    int64
			errs     int64
			non2xx   int64
			firstErr atomic.Value
			mu       sync.Mutex
			all      []time.Duration
		)
		deadline := time.Time{}
		if d > 0 {
			deadline = time.Now().Add(d)
		}
		resumed.Store(0)
		start := time.Now()
		for i := 0; i < *conns; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := &worker{cfg: cfg, addr: addr, reqBytes: req, keepalive: keepalive}
				defer w.close()
				lat := make([]time.Duration, 0, 4096)
				for {
					if d > 0 {
						if time.Now().After(deadline) {
							break
						}
					} else if atomic.AddInt64(&count, 1) > n {
						break
					}
					t0 := time.Now()
					status, err := w.one()
					el := time.Since(t0)
					if err != nil {
						atomic.AddInt64(&errs, 1)
						firstErr.CompareAndSwap(nil, err.Error())
						time.Sleep(time.Millisecond)
						continue
					}
					if status < 200 || status > 299 {
						atomic.AddInt64(&non2xx, 1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("HTTP status %d", status))
					}
					if record {
						lat = append(lat, el)
					}
				}
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		elapsed := time.Since(start).Seconds()
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		r := result{Mode: *mode, Connections: *conns, Requests: int64(len(all)), Errors: errs, Non2xx: non2xx,
			Seconds: elapsed, RPS: float64(len(all)) / elapsed,
			P50ms: percentile(all, 50), P90ms: percentile(all, 90), P99ms: percentile(all, 99),
			Resumed: resumed.Load()}
		if len(all) > 0 {
			r.MaxMs = float64(all[len(all)-1]) / 1e6
		}
		if v := firstErr.Load(); v != nil {
			r.FirstError = v.(string)
		}
		return r
	}

	if *warmup > 0 {
		run(*warmup, 0, false)
	}
	r := run(*dur, *total, true)
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}
