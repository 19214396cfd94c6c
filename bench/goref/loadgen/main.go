// Command loadgen is the closed-loop HTTPS load generator of `make bench`, the same for every server
// it measures: `-c` workers, each with its own keep-alive HTTP/1.1 connection, each sending one
// request, reading the whole answer and sending the next, until `-duration` or `-max` requests.
// Bodies come from a file, one request body per line, taken in turn. Only 127.0.0.1 is accepted.
// It prints one JSON object: counts, requests/s, latency percentiles, statuses and, with -check,
// how many answers carried a patch or refused the pod.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Concurrency int            `json:"concurrency"`
	Count       int            `json:"count"`
	Elapsed     float64        `json:"elapsed_s"`
	RPS         float64        `json:"rps"`
	P50         float64        `json:"p50_ms"`
	P90         float64        `json:"p90_ms"`
	P99         float64        `json:"p99_ms"`
	Max         float64        `json:"max_ms"`
	Errors      int            `json:"errors"`
	FirstError  string         `json:"first_error,omitempty"`
	Statuses    map[string]int `json:"statuses"`
	Patched     int            `json:"patched"`
	Refused     int            `json:"refused"`
}

type answer struct {
	Response struct {
		Allowed bool   `json:"allowed"`
		Patch   []byte `json:"patch"`
	} `json:"response"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(2)
}

func readBodies(path string) [][]byte {
	file, err := os.Open(path)
	if err != nil {
		fail("%v", err)
	}
	defer file.Close()
	var bodies [][]byte
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	for scanner.Scan() {
		if line := bytes.TrimSpace(scanner.Bytes()); len(line) > 0 {
			bodies = append(bodies, append([]byte(nil), line...))
		}
	}
	if err := scanner.Err(); err != nil {
		fail("%s: %v", path, err)
	}
	if len(bodies) == 0 {
		fail("%s: no request bodies", path)
	}
	return bodies
}

func tlsConfig(caFile string) *tls.Config {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		fail("%v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fail("%s: no certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// percentile is the nearest-rank percentile of sorted latencies, in milliseconds.
func percentile(sorted []time.Duration, fraction float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(fraction*float64(len(sorted))+0.5) - 1
	rank = max(0, min(len(sorted)-1, rank))
	return float64(sorted[rank]) / 1e6
}

func main() {
	target := flag.String("url", "", "https://127.0.0.1:PORT/PATH")
	bodiesFile := flag.String("bodies", "", "file of request bodies, one a line")
	caFile := flag.String("ca", "", "CA certificate (PEM) the server's certificate is verified against")
	concurrency := flag.Int("c", 1, "closed-loop workers, one connection each")
	duration := flag.Duration("duration", 5*time.Second, "how long to send")
	maxRequests := flag.Int64("max", 1<<40, "at most this many requests in all")
	check := flag.Bool("check", false, "parse every answer: count patches and refusals")
	flag.Parse()

	parsed, err := url.Parse(*target)
	if err != nil || parsed.Scheme != "https" || parsed.Hostname() != "127.0.0.1" {
		fail("-url must be https://127.0.0.1:PORT/PATH, got %q", *target)
	}
	bodies := readBodies(*bodiesFile)
	config := tlsConfig(*caFile)

	var next, budget atomic.Int64
	budget.Store(*maxRequests)
	var mu sync.Mutex
	out := result{Concurrency: *concurrency, Statuses: map[string]int{}}
	var latencies []time.Duration
	var wg sync.WaitGroup
	began := time.Now()
	deadline := began.Add(*duration)
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{
				TLSClientConfig:     config,
				MaxIdleConnsPerHost: 1,
				MaxConnsPerHost:     1,
				DisableCompression:  true,
				ForceAttemptHTTP2:   false,
				TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
			}}
			mine := make([]time.Duration, 0, 1<<16)
			statuses := map[string]int{}
			var errors, patched, refused int
			firstError := ""
			for budget.Add(-1) >= 0 {
				body := bodies[int(next.Add(1)-1)%len(bodies)]
				request, _ := http.NewRequest(http.MethodPost, *target, bytes.NewReader(body))
				request.Header.Set("Content-Type", "application/json")
				request.Header.Set("Accept", "application/json")
				started := time.Now()
				response, err := client.Do(request)
				if err != nil {
					errors++
					if firstError == "" {
						firstError = err.Error()
					}
					break
				}
				data, err := io.ReadAll(response.Body)
				response.Body.Close()
				finished := time.Now()
				if err != nil {
					errors++
					break
				}
				mine = append(mine, finished.Sub(started))
				statuses[fmt.Sprint(response.StatusCode)]++
				if *check {
					var parsed answer
					if json.Unmarshal(data, &parsed) != nil || !parsed.Response.Allowed {
						refused++
					} else if len(parsed.Response.Patch) > 0 {
						patched++
					}
				}
				if finished.After(deadline) {
					break
				}
			}
			client.CloseIdleConnections()
			mu.Lock()
			defer mu.Unlock()
			latencies = append(latencies, mine...)
			for status, n := range statuses {
				out.Statuses[status] += n
			}
			out.Errors += errors
			out.Patched += patched
			out.Refused += refused
			if out.FirstError == "" {
				out.FirstError = firstError
			}
		}()
	}
	wg.Wait()
	out.Elapsed = time.Since(began).Seconds()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	out.Count = len(latencies)
	out.RPS = float64(out.Count) / out.Elapsed
	out.P50, out.P90, out.P99 = percentile(latencies, 0.50), percentile(latencies, 0.90), percentile(latencies, 0.99)
	if out.Count > 0 {
		out.Max = float64(latencies[out.Count-1]) / 1e6
	}
	encoder := json.NewEncoder(os.Stdout)
	if err := encoder.Encode(out); err != nil {
		fail("%v", err)
	}
}
