// Command gocp is a small xDS control plane built on go-control-plane, used by the
// mesh-tests interop suite to check that our Rust client accepts resources produced by a
// control plane we did not write.
//
// It serves one service the way Istio names things for proxyless gRPC (see resources.go)
// over go-control-plane's ADS server, state of the world and delta (incremental) xDS, both
// from the same snapshot cache (--protocols restricts which; the other answers
// UNIMPLEMENTED), and is driven by its parent through stdin/stdout:
//
//	stdout, first line:  LISTENING 127.0.0.1:PORT
//	stdin:  UPDATE <backends|-> [split]   → stdout: VERSION n   (or ERROR <why>)
//	stdin:  RESOURCES <file>              → stdout: VERSION n   (or ERROR <why>)
//	        (replaces the --resources set with the file's, keeping the generated ones)
//	stdin:  STATS                         → stdout: STATS sotw_streams=n delta_streams=n
//	        initial_resource_versions=n delta_resources_sent=n delta_nacks=n
//	stdin:  RESTART                       → stdout: LISTENING 127.0.0.1:PORT
//	        (closes every stream and serves again on the same address, same cache)
//	stdin EOF                             → exit
//
// Logs go to stderr.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	cplog "github.com/envoyproxy/go-control-plane/pkg/log"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// snapshotKey is the single cache key every node maps to unless --node is given.
const snapshotKey = "mesh"

// oneKey maps every node to snapshotKey, so clients may use any node id.
type oneKey struct{}

func (oneKey) ID(*core.Node) string { return snapshotKey }

// stdout is shared by the control loop and nothing else, but the protocol lines must
// never interleave, so writes go through one function.
var stdoutMu sync.Mutex

func say(format string, args ...any) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	fmt.Fprintf(os.Stdout, format+"\n", args...)
	_ = os.Stdout.Sync()
}

func main() {
	log.SetOutput(os.Stderr)
	log.SetPrefix("gocp: ")
	log.SetFlags(log.Lmicroseconds)

	listen := flag.String("listen", "127.0.0.1:0", "address to serve ADS on")
	node := flag.String("node", "", "serve only this node id (default: every node gets the snapshot)")
	service := flag.String("service", "greeter.default", "service host name; empty generates no resources")
	port := flag.Uint("port", 8080, "service port")
	backends := flag.String("backends", "", "comma-separated backend host:port list")
	split := flag.String("split", "", "optional weights v1,v2 (e.g. 80,20) for a weighted-cluster split")
	resourcesFile := flag.String("resources", "", `optional JSON file {"resources": [<resource with "@type">...]}`)
	verbose := flag.Bool("verbose", false, "log go-control-plane debug messages")
	adsHold := flag.Bool("ads-hold", true, "ADS mode: answer a request for named resources only when it names every resource of "+
		"that type in the snapshot; false answers with the named subset (needed when nodes want different names, e.g. one "+
		"inbound Listener per server)")
	protocols := flag.String("protocols", "sotw,delta", "ADS protocols served: sotw, delta or both (comma-separated)")
	flag.Parse()

	var serveSotw, serveDelta bool
	for _, p := range strings.Split(*protocols, ",") {
		switch strings.TrimSpace(p) {
		case "sotw":
			serveSotw = true
		case "delta":
			serveDelta = true
		default:
			log.Fatalf("--protocols %q: unknown protocol %q (want sotw, delta)", *protocols, p)
		}
	}

	if *port == 0 || *port > 65535 {
		log.Fatalf("--port %d: out of range", *port)
	}

	var extra []namedResource
	if *resourcesFile != "" {
		var err error
		extra, err = loadResources(*resourcesFile)
		if err != nil {
			log.Fatalf("--resources %s: %v", *resourcesFile, err)
		}
		log.Printf("loaded %d resources from %s", len(extra), *resourcesFile)
	}

	spec := meshSpec{service: *service, port: uint32(*port)}
	if err := spec.setEndpoints(*backends, *split); err != nil {
		log.Fatalf("%v", err)
	}

	var hash cachev3.NodeHash = oneKey{}
	key := snapshotKey
	if *node != "" {
		hash = cachev3.IDHash{}
		key = *node
	}
	// ads=true (the default): go-control-plane answers a request naming resources only if it
	// names every resource of that type in the snapshot, so that an Envoy gets a consistent
	// set. With one snapshot shared by all nodes that holds back clients and servers that
	// want different Listeners; --ads-hold=false serves each the named subset instead.
	cache := cachev3.NewSnapshotCache(*adsHold, hash, logger(*verbose))

	version := 1
	if err := publish(cache, key, version, spec, extra); err != nil {
		log.Fatalf("initial snapshot: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := serverv3.NewServer(ctx, cache, callbacks())
	ads := restricted{Server: srv, sotw: serveSotw, delta: serveDelta}
	grpcServer, lis, err := serve(*listen, ads)
	if err != nil {
		log.Fatalf("%v", err)
	}
	say("LISTENING %s", lis.Addr().String())
	log.Printf("serving ADS on %s, snapshot key %q, version %d", lis.Addr(), key, version)

	// The parent drives updates through stdin; EOF means the parent is gone or done, so
	// the process never outlives the test that started it.
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "" {
			continue
		}
		fields := strings.Fields(line)
		switch fields[0] {
		case "UPDATE":
			if len(fields) < 2 || len(fields) > 3 {
				say("ERROR usage: UPDATE <backends|-> [split]")
				continue
			}
			next := spec
			splitArg := ""
			if len(fields) == 3 {
				splitArg = fields[2]
			}
			if err := next.setEndpoints(fields[1], splitArg); err != nil {
				say("ERROR %v", err)
				continue
			}
			if err := publish(cache, key, version+1, next, extra); err != nil {
				say("ERROR %v", err)
				continue
			}
			version++
			spec = next
			log.Printf("published version %d: %s", version, line)
			say("VERSION %d", version)
		case "RESOURCES":
			if len(fields) != 2 {
				say("ERROR usage: RESOURCES <file>")
				continue
			}
			next, err := loadResources(fields[1])
			if err != nil {
				say("ERROR %s: %v", fields[1], err)
				continue
			}
			if err := publish(cache, key, version+1, spec, next); err != nil {
				say("ERROR %v", err)
				continue
			}
			version++
			extra = next
			log.Printf("published version %d: %d resources from %s", version, len(next), fields[1])
			say("VERSION %d", version)
		case "STATS":
			say("STATS sotw_streams=%d delta_streams=%d initial_resource_versions=%d delta_resources_sent=%d delta_nacks=%d",
				stats.sotwStreams.Load(), stats.deltaStreams.Load(), stats.initialVersions.Load(),
				stats.deltaResourcesSent.Load(), stats.deltaNacks.Load())
		case "RESTART":
			addr := lis.Addr().String()
			grpcServer.Stop()
			next, nextLis, err := serve(addr, ads)
			if err != nil {
				say("ERROR %v", err)
				continue
			}
			grpcServer, lis = next, nextLis
			log.Printf("restarted on %s", addr)
			say("LISTENING %s", addr)
		default:
			say("ERROR unknown command %q", fields[0])
		}
	}
	if err := in.Err(); err != nil {
		log.Printf("stdin: %v", err)
	}
	log.Printf("stdin closed, exiting")
	grpcServer.Stop()
}

// serve starts a gRPC server with the ADS service on addr.
func serve(addr string, ads discovery.AggregatedDiscoveryServiceServer) (*grpc.Server, net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %v", addr, err)
	}
	grpcServer := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(grpcServer, ads)
	go func() {
		if err := grpcServer.Serve(lis); err != nil {
			log.Printf("serve: %v", err)
		}
	}()
	return grpcServer, lis, nil
}

// restricted serves only the ADS protocols asked for; the others answer UNIMPLEMENTED, so a
// test can prove which one a client speaks.
type restricted struct {
	serverv3.Server
	sotw, delta bool
}

func (r restricted) StreamAggregatedResources(s discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	if !r.sotw {
		return status.Error(codes.Unimplemented, "state-of-the-world ADS is disabled (--protocols)")
	}
	return r.Server.StreamAggregatedResources(s)
}

func (r restricted) DeltaAggregatedResources(s discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	if !r.delta {
		return status.Error(codes.Unimplemented, "delta ADS is disabled (--protocols)")
	}
	return r.Server.DeltaAggregatedResources(s)
}

// stats counts what the STATS command reports.
var stats struct {
	sotwStreams, deltaStreams, initialVersions, deltaResourcesSent, deltaNacks atomic.Int64
}

func publish(cache cachev3.SnapshotCache, key string, version int, spec meshSpec, extra []namedResource) error {
	snap, err := buildSnapshot(fmt.Sprint(version), spec, extra)
	if err != nil {
		return err
	}
	return cache.SetSnapshot(context.Background(), key, snap)
}

func logger(verbose bool) cplog.Logger {
	debug := func(string, ...any) {}
	if verbose {
		debug = log.Printf
	}
	return cplog.LoggerFuncs{
		DebugFunc: debug,
		InfoFunc:  log.Printf,
		WarnFunc:  log.Printf,
		ErrorFunc: log.Printf,
	}
}

// callbacks log each stream and request, so a failing test's stderr shows what the client
// asked for and whether it ACKed or NACKed.
func callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, typeURL string) error {
			stats.sotwStreams.Add(1)
			log.Printf("stream %d open %s", id, typeURL)
			return nil
		},
		DeltaStreamOpenFunc: func(_ context.Context, id int64, typeURL string) error {
			stats.deltaStreams.Add(1)
			log.Printf("delta stream %d open %s", id, typeURL)
			return nil
		},
		DeltaStreamClosedFunc: func(id int64, node *core.Node) {
			log.Printf("delta stream %d closed (node %q)", id, node.GetId())
		},
		StreamDeltaRequestFunc: func(id int64, req *discovery.DeltaDiscoveryRequest) error {
			kind := "request"
			if req.GetErrorDetail() != nil {
				kind = "NACK"
				stats.deltaNacks.Add(1)
			} else if req.GetResponseNonce() != "" {
				kind = "ACK"
			}
			stats.initialVersions.Add(int64(len(req.GetInitialResourceVersions())))
			log.Printf("delta stream %d %s node=%q type=%s nonce=%q subscribe=%v unsubscribe=%v initial=%v error=%q",
				id, kind, req.GetNode().GetId(), req.GetTypeUrl(), req.GetResponseNonce(),
				req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe(),
				req.GetInitialResourceVersions(), req.GetErrorDetail().GetMessage())
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
			stats.deltaResourcesSent.Add(int64(len(resp.GetResources())))
			log.Printf("delta stream %d response type=%s system_version=%q nonce=%q resources=%d removed=%v",
				id, resp.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce(), len(resp.GetResources()),
				resp.GetRemovedResources())
		},
		StreamClosedFunc: func(id int64, node *core.Node) {
			log.Printf("stream %d closed (node %q)", id, node.GetId())
		},
		StreamRequestFunc: func(id int64, req *discovery.DiscoveryRequest) error {
			kind := "request"
			if req.GetErrorDetail() != nil {
				kind = "NACK"
			} else if req.GetResponseNonce() != "" {
				kind = "ACK"
			}
			log.Printf("stream %d %s node=%q type=%s version=%q nonce=%q names=%v error=%q",
				id, kind, req.GetNode().GetId(), req.GetTypeUrl(), req.GetVersionInfo(),
				req.GetResponseNonce(), req.GetResourceNames(), req.GetErrorDetail().GetMessage())
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
			log.Printf("stream %d response type=%s version=%q nonce=%q resources=%d",
				id, resp.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce(), len(resp.GetResources()))
		},
	}
}
