// Command gocp is a small xDS control plane built on go-control-plane, used by the
// mesh-tests interop suite to check that our Rust client accepts resources produced by a
// control plane we did not write.
//
// It serves one service the way Istio names things for proxyless gRPC (see resources.go)
// over go-control-plane's state-of-the-world ADS server, and is driven by its parent
// through stdin/stdout:
//
//	stdout, first line:  LISTENING 127.0.0.1:PORT
//	stdin:  UPDATE <backends|-> [split]   → stdout: VERSION n   (or ERROR <why>)
//	stdin:  RESOURCES <file>              → stdout: VERSION n   (or ERROR <why>)
//	        (replaces the --resources set with the file's, keeping the generated ones)
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

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	cplog "github.com/envoyproxy/go-control-plane/pkg/log"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
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
	flag.Parse()

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

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen %s: %v", *listen, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := serverv3.NewServer(ctx, cache, callbacks())
	grpcServer := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(grpcServer, srv)
	go func() {
		if err := grpcServer.Serve(lis); err != nil {
			log.Printf("serve: %v", err)
		}
	}()
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
			log.Printf("stream %d open %s", id, typeURL)
			return nil
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
