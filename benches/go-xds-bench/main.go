// Command go-xds-bench is mesh-bench's grpc-go proxyless xDS row (issue 9): a
// grpc.testing.TestService server built with grpc-go's xDS server (gRFC A36: it serves
// once its inbound Listener arrives) and a client dialing xds:/// targets through grpc-go's
// xDS resolver (gRFC A27), both configured by the bootstrap in GRPC_XDS_BOOTSTRAP. It
// speaks mesh-bench's child protocol: the server prints "LISTEN <addr>" then "READY"; the
// client runs each cell and prints "RESULT {json}" in mesh-bench's CellResult format. Both
// exit when stdin closes.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/xds"
)

type server struct {
	testgrpc.UnimplementedTestServiceServer
}

func (server) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

func (server) UnaryCall(_ context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

func (server) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	for _, p := range req.GetResponseParameters() {
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

func exitWithStdin() {
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
}

func serve() error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("LISTEN %s\n", lis.Addr())
	var once sync.Once
	srv, err := xds.NewGRPCServer(
		grpc.Creds(insecure.NewCredentials()),
		xds.ServingModeCallback(func(_ net.Addr, args xds.ServingModeChangeArgs) {
			if args.Mode == connectivity.ServingModeServing {
				once.Do(func() { fmt.Println("READY") })
			}
		}),
	)
	if err != nil {
		return err
	}
	testgrpc.RegisterTestServiceServer(srv, server{})
	return srv.Serve(lis)
}

type workload struct {
	name                  string
	reqSize, respSize, nr int
}

var workloads = map[string]workload{
	"unary-100B":     {"unary-100B", 100, 100, 1},
	"unary-10KiB":    {"unary-10KiB", 10240, 10240, 1},
	"stream-10x100B": {"stream-10x100B", 100, 100, 10},
}

type result struct {
	Workload    string  `json:"workload"`
	Concurrency int     `json:"concurrency"`
	Calls       uint64  `json:"calls"`
	Errors      uint64  `json:"errors"`
	FirstError  *string `json:"first_error"`
	Seconds     float64 `json:"seconds"`
	P50         float64 `json:"p50_us"`
	P99         float64 `json:"p99_us"`
	P999        float64 `json:"p999_us"`
	RPS         float64 `json:"rps"`
	CPUPerCall  float64 `json:"client_cpu_us_per_call"`
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func percentile(sorted []int64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return float64(sorted[rank-1]) / 1000
}

func call(ctx context.Context, c testgrpc.TestServiceClient, w workload, unary *testgrpc.SimpleRequest, streamReq *testgrpc.StreamingOutputCallRequest) error {
	if w.nr == 1 {
		r, err := c.UnaryCall(ctx, unary)
		if err != nil {
			return err
		}
		if len(r.GetPayload().GetBody()) != w.respSize {
			return fmt.Errorf("reply of %d bytes, %d asked for", len(r.GetPayload().GetBody()), w.respSize)
		}
		return nil
	}
	s, err := c.StreamingOutputCall(ctx, streamReq)
	if err != nil {
		return err
	}
	n := 0
	for {
		_, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		n++
	}
	if n != w.nr {
		return fmt.Errorf("%d streamed messages, %d asked for", n, w.nr)
	}
	return nil
}

const (
	warmup = iota
	measure
	stop
)

func runCell(c testgrpc.TestServiceClient, w workload, concurrency int, warm, dur time.Duration) result {
	unary := &testgrpc.SimpleRequest{ResponseSize: int32(w.respSize), Payload: &testgrpc.Payload{Body: make([]byte, w.reqSize)}}
	params := make([]*testgrpc.ResponseParameters, w.nr)
	for i := range params {
		params[i] = &testgrpc.ResponseParameters{Size: int32(w.respSize)}
	}
	streamReq := &testgrpc.StreamingOutputCallRequest{ResponseParameters: params, Payload: &testgrpc.Payload{Body: make([]byte, w.reqSize)}}
	var phase atomic.Int32
	var wg sync.WaitGroup
	lats := make([][]int64, concurrency)
	errs := make([]uint64, concurrency)
	firsts := make([]error, concurrency)
	for i := 0; i < concurrency; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for {
				before := phase.Load()
				if before == stop {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), dur+30*time.Second)
				start := time.Now()
				err := call(ctx, c, w, unary, streamReq)
				ns := time.Since(start).Nanoseconds()
				cancel()
				if before == measure && phase.Load() == measure {
					if err == nil {
						lats[i] = append(lats[i], ns)
					} else {
						errs[i]++
						if firsts[i] == nil {
							firsts[i] = err
						}
					}
				} else if err != nil && before == warmup {
					if firsts[i] == nil {
						firsts[i] = err
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		}(i)
	}
	time.Sleep(warm)
	cpu0 := cpuSeconds()
	start := time.Now()
	phase.Store(measure)
	time.Sleep(dur)
	phase.Store(stop)
	secs := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	wg.Wait()
	var all []int64
	var errors uint64
	var first *string
	for i := range lats {
		all = append(all, lats[i]...)
		errors += errs[i]
		if first == nil && firsts[i] != nil {
			s := firsts[i].Error()
			first = &s
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	calls := uint64(len(all))
	r := result{Workload: w.name, Concurrency: concurrency, Calls: calls, Errors: errors, FirstError: first, Seconds: secs,
		P50: percentile(all, 0.5), P99: percentile(all, 0.99), P999: percentile(all, 0.999)}
	if secs > 0 {
		r.RPS = float64(calls) / secs
	}
	if calls > 0 {
		r.CPUPerCall = 1e6 * cpu / float64(calls)
	}
	return r
}

func client(target, cells string, warm, dur time.Duration) error {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	_, err = c.EmptyCall(ctx, &testgrpc.Empty{}, grpc.WaitForReady(true))
	cancel()
	if err != nil {
		return fmt.Errorf("first call through %s: %w", target, err)
	}
	for _, spec := range strings.Split(cells, ",") {
		name, conc, ok := strings.Cut(spec, ":")
		w, known := workloads[name]
		n, err := strconv.Atoi(conc)
		if !ok || !known || err != nil || n < 1 {
			return fmt.Errorf("bad cell %q", spec)
		}
		out, err := json.Marshal(runCell(c, w, n, warm, dur))
		if err != nil {
			return err
		}
		fmt.Printf("RESULT %s\n", out)
	}
	return nil
}

func main() {
	mode := flag.String("mode", "", "server or client")
	target := flag.String("target", "xds:///bench.default:8080", "xDS target (client)")
	cells := flag.String("cells", "unary-100B:1", "WORKLOAD:CONCURRENCY,... (client)")
	warm := flag.Int("warmup_ms", 1000, "warm-up per cell (client)")
	dur := flag.Int("duration_ms", 4000, "measuring window per cell (client)")
	flag.Parse()
	exitWithStdin()
	var err error
	switch *mode {
	case "server":
		err = serve()
	case "client":
		err = client(*target, *cells, time.Duration(*warm)*time.Millisecond, time.Duration(*dur)*time.Millisecond)
	default:
		err = fmt.Errorf("-mode must be server or client")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-xds-bench:", err)
		os.Exit(1)
	}
}
