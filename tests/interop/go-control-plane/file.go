package main

// --resources: arbitrary Envoy resources, written as protojson with "@type", so the interop
// suite can serve shapes the generator does not make (RBAC filters, ring hash, aggregate
// clusters, TLS, …) exactly as a go-control-plane user would.

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	// protojson resolves "@type" (top level and nested Any) through the global registry,
	// so every message a test may write must be linked in.
	_ "github.com/cncf/xds/go/udpa/type/v1"
	_ "github.com/cncf/xds/go/xds/type/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/stateful_session/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/client_side_weighted_round_robin/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/pick_first/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/wrr_locality/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// namedResource is one resource from the file, keyed the way the snapshot is.
type namedResource struct {
	typeURL string
	name    string
	msg     types.Resource
}

func loadResources(path string) ([]namedResource, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var file struct {
		Resources []json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, err
	}
	out := make([]namedResource, 0, len(file.Resources))
	for i, raw := range file.Resources {
		var any anypb.Any
		if err := protojson.Unmarshal(raw, &any); err != nil {
			return nil, fmt.Errorf("resources[%d]: %v", i, err)
		}
		if cachev3.GetResponseType(any.GetTypeUrl()) == types.UnknownType {
			return nil, fmt.Errorf("resources[%d]: %s is not a type the snapshot cache serves", i, any.GetTypeUrl())
		}
		msg, err := any.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("resources[%d]: %v", i, err)
		}
		name := cachev3.GetResourceName(msg)
		if name == "" {
			return nil, fmt.Errorf("resources[%d] (%s): no name", i, any.GetTypeUrl())
		}
		out = append(out, namedResource{typeURL: any.GetTypeUrl(), name: name, msg: msg})
	}
	return out, nil
}
