// Command json2pb converts Envoy resources written as proto JSON (each with "@type") into
// protobuf bytes, for control planes that take raw resources (mesh-control's raw mode).
//
// Input: one or more files, each {"resources": [<resource JSON with "@type">, ...]} (the
// format of the go-control-plane program's --resources). Output, on stdout, one JSON object
// per resource and line:
//
//	{"type_url": "type.googleapis.com/...", "name": "...", "value_base64": "<bytes>"}
//
// The name is the resource's "name" field ("cluster_name" for a ClusterLoadAssignment).
// Errors go to stderr with a non-zero exit.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	// protojson resolves "@type" (top level and nested Any) through the global registry,
	// so every message a scenario may write must be linked in.
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

type line struct {
	TypeURL     string `json:"type_url"`
	Name        string `json:"name"`
	ValueBase64 string `json:"value_base64"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: json2pb FILE...")
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout)
	for _, path := range os.Args[1:] {
		if err := convert(path, out); err != nil {
			fmt.Fprintf(os.Stderr, "json2pb: %s: %v\n", path, err)
			os.Exit(1)
		}
	}
}

func convert(path string, out *json.Encoder) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var file struct {
		Resources []json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return err
	}
	for i, raw := range file.Resources {
		var packed anypb.Any
		if err := protojson.Unmarshal(raw, &packed); err != nil {
			return fmt.Errorf("resources[%d]: %v", i, err)
		}
		msg, err := packed.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("resources[%d]: %v", i, err)
		}
		name := resourceName(msg.ProtoReflect())
		if name == "" {
			return fmt.Errorf("resources[%d] (%s): no name", i, packed.GetTypeUrl())
		}
		// Deterministic bytes, so serving the same file twice is not a change.
		value, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		if err != nil {
			return fmt.Errorf("resources[%d]: %v", i, err)
		}
		if err := out.Encode(line{
			TypeURL:     packed.GetTypeUrl(),
			Name:        name,
			ValueBase64: base64.StdEncoding.EncodeToString(value),
		}); err != nil {
			return err
		}
	}
	return nil
}

func resourceName(m protoreflect.Message) string {
	for _, field := range []protoreflect.Name{"name", "cluster_name"} {
		fd := m.Descriptor().Fields().ByName(field)
		if fd != nil && fd.Kind() == protoreflect.StringKind {
			if v := m.Get(fd).String(); v != "" {
				return v
			}
		}
	}
	return ""
}
