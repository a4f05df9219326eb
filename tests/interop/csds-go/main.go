// Command csds-go is the Go-side check of our CSDS server (gRFC A40): it calls
// envoy.service.status.v3.ClientStatusDiscoveryService/FetchClientStatus with grpc-go and
// Envoy's own Go protos (go-control-plane), and prints the answer in the two shapes an
// operator reads from grpcdebug:
//
//	csds-go ADDR xds status   a table: Name, Status, Version, Type, LastUpdated
//	csds-go ADDR xds config   the whole ClientStatusResponse as proto-JSON
//
// It stands in for github.com/grpc-ecosystem/grpcdebug, whose module the Go module proxy
// reachable here does not serve; the command line is the same, so a real grpcdebug binary
// can replace it (see tests/interop/README.md).
package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	adminpb "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	csdspb "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	// Every type our resources embed in an Any must be registered for proto-JSON.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/client_side_weighted_round_robin/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/pick_first/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

func main() {
	if len(os.Args) != 4 || os.Args[2] != "xds" || (os.Args[3] != "status" && os.Args[3] != "config") {
		fmt.Fprintln(os.Stderr, "usage: csds-go ADDR xds status|config")
		os.Exit(2)
	}
	resp, err := fetch(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "csds-go:", err)
		os.Exit(1)
	}
	if len(resp.Config) == 0 {
		fmt.Fprintln(os.Stderr, "csds-go: no ClientConfig returned")
		os.Exit(1)
	}
	if os.Args[3] == "status" {
		printStatus(resp)
		return
	}
	out, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(resp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "csds-go: proto-JSON:", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}

func fetch(addr string) (*csdspb.ClientStatusResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return csdspb.NewClientStatusDiscoveryServiceClient(conn).
		FetchClientStatus(ctx, &csdspb.ClientStatusRequest{}, grpc.WaitForReady(true))
}

func printStatus(resp *csdspb.ClientStatusResponse) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "Scope\tName\tStatus\tVersion\tType\tLastUpdated\tError")
	for _, cfg := range resp.Config {
		for _, g := range cfg.GenericXdsConfigs {
			errText := ""
			if e := g.GetErrorState(); e != nil {
				errText = fmt.Sprintf("rejected %q: %s", e.GetVersionInfo(), e.GetDetails())
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				cfg.ClientScope, g.Name, adminpb.ClientResourceStatus(g.ClientStatus),
				g.VersionInfo, g.TypeUrl, ago(g.LastUpdated), errText)
		}
	}
	w.Flush()
}

func ago(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return fmt.Sprintf("%s ago", time.Since(t.AsTime()).Round(time.Second))
}
