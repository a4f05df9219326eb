package main

// The generated resources follow the names istiod gives a proxyless gRPC client for
// `xds:///{service}:{port}`:
//
//	Listener            {service}:{port}   api_listener → HttpConnectionManager, RDS over ADS
//	RouteConfiguration  {service}:{port}   one virtual host, prefix "/" → cluster(s)
//	Cluster             outbound|{port}||{service}          (no split)
//	                    outbound|{port}|v1|{service}, …|v2| (with --split)
//	ClusterLoadAssignment, one per cluster, one locality (region "r1")

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// meshSpec is everything the generated resources depend on.
type meshSpec struct {
	service  string
	port     uint32
	backends []*core.SocketAddress
	// split holds the v1 and v2 weights; nil means one cluster without subsets.
	split *[2]uint32
}

// setEndpoints parses a backend list ("h:p,h:p" or "-" for none) and an optional split
// ("80,20" or "").
func (s *meshSpec) setEndpoints(backends, split string) error {
	var addrs []*core.SocketAddress
	if backends != "" && backends != "-" {
		for _, b := range strings.Split(backends, ",") {
			host, portStr, err := net.SplitHostPort(strings.TrimSpace(b))
			if err != nil {
				return fmt.Errorf("backend %q: %v", b, err)
			}
			p, err := strconv.ParseUint(portStr, 10, 16)
			if err != nil || p == 0 {
				return fmt.Errorf("backend %q: bad port", b)
			}
			addrs = append(addrs, &core.SocketAddress{
				Address:       host,
				PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(p)},
			})
		}
	}
	var weights *[2]uint32
	if split != "" {
		parts := strings.Split(split, ",")
		if len(parts) != 2 {
			return fmt.Errorf("split %q: want two weights v1,v2", split)
		}
		var w [2]uint32
		for i, part := range parts {
			v, err := strconv.ParseUint(strings.TrimSpace(part), 10, 32)
			if err != nil {
				return fmt.Errorf("split %q: %v", split, err)
			}
			w[i] = uint32(v)
		}
		if w[0]+w[1] == 0 {
			return fmt.Errorf("split %q: weights sum to zero", split)
		}
		weights = &w
	}
	s.backends = addrs
	s.split = weights
	return nil
}

func (s meshSpec) hostPort() string { return fmt.Sprintf("%s:%d", s.service, s.port) }

func (s meshSpec) clusterName(subset string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", s.port, subset, s.service)
}

func adsSource() *core.ConfigSource {
	return &core.ConfigSource{
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
		ResourceApiVersion:    core.ApiVersion_V3,
	}
}

// generate builds the Listener, RouteConfiguration, Clusters and ClusterLoadAssignments.
func (s meshSpec) generate() (map[resourcev3.Type][]types.Resource, error) {
	out := map[resourcev3.Type][]types.Resource{}
	if s.service == "" {
		return out, nil
	}
	name := s.hostPort()

	routerAny, err := anypb.New(&router.Router{})
	if err != nil {
		return nil, err
	}
	manager := &hcm.HttpConnectionManager{
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: name,
		}},
		HttpFilters: []*hcm.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: routerAny},
		}},
	}
	managerAny, err := anypb.New(manager)
	if err != nil {
		return nil, err
	}
	out[resourcev3.ListenerType] = []types.Resource{&listener.Listener{
		Name:        name,
		ApiListener: &listener.ApiListener{ApiListener: managerAny},
	}}

	// Which cluster gets which backends: without a split, all in one cluster; with one,
	// backends alternate v1, v2, v1, … so backends[0] is in v1 and backends[1] in v2.
	type clusterPlan struct {
		name     string
		backends []*core.SocketAddress
	}
	var plans []clusterPlan
	action := &route.RouteAction{}
	if s.split == nil {
		plans = []clusterPlan{{name: s.clusterName(""), backends: s.backends}}
		action.ClusterSpecifier = &route.RouteAction_Cluster{Cluster: plans[0].name}
	} else {
		plans = []clusterPlan{{name: s.clusterName("v1")}, {name: s.clusterName("v2")}}
		for i, b := range s.backends {
			plans[i%2].backends = append(plans[i%2].backends, b)
		}
		weighted := &route.WeightedCluster{}
		for i, p := range plans {
			weighted.Clusters = append(weighted.Clusters, &route.WeightedCluster_ClusterWeight{
				Name:   p.name,
				Weight: wrapperspb.UInt32(s.split[i]),
			})
		}
		action.ClusterSpecifier = &route.RouteAction_WeightedClusters{WeightedClusters: weighted}
	}

	out[resourcev3.RouteType] = []types.Resource{&route.RouteConfiguration{
		Name: name,
		VirtualHosts: []*route.VirtualHost{{
			Name:    name,
			Domains: []string{s.service, name},
			Routes: []*route.Route{{
				Match: &route.RouteMatch{
					PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"},
				},
				Action: &route.Route_Route{Route: action},
			}},
		}},
	}}

	for _, p := range plans {
		out[resourcev3.ClusterType] = append(out[resourcev3.ClusterType], &cluster.Cluster{
			Name:                 p.name,
			ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
			EdsClusterConfig: &cluster.Cluster_EdsClusterConfig{
				EdsConfig:   adsSource(),
				ServiceName: p.name,
			},
			LbPolicy: cluster.Cluster_ROUND_ROBIN,
		})
		out[resourcev3.EndpointType] = append(out[resourcev3.EndpointType], loadAssignment(p.name, p.backends))
	}
	return out, nil
}

func loadAssignment(clusterName string, backends []*core.SocketAddress) *endpoint.ClusterLoadAssignment {
	locality := &endpoint.LocalityLbEndpoints{
		Locality:            &core.Locality{Region: "r1"},
		LoadBalancingWeight: wrapperspb.UInt32(1),
	}
	for _, b := range backends {
		locality.LbEndpoints = append(locality.LbEndpoints, &endpoint.LbEndpoint{
			HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
				Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: b}},
			}},
			HealthStatus:        core.HealthStatus_HEALTHY,
			LoadBalancingWeight: wrapperspb.UInt32(1),
		})
	}
	return &endpoint.ClusterLoadAssignment{
		ClusterName: clusterName,
		Endpoints:   []*endpoint.LocalityLbEndpoints{locality},
	}
}

// buildSnapshot merges the generated resources with those from --resources; a file
// resource replaces a generated one of the same type and name, so the interop suite can
// override any piece.
func buildSnapshot(version string, spec meshSpec, extra []namedResource) (*cachev3.Snapshot, error) {
	byType, err := spec.generate()
	if err != nil {
		return nil, err
	}
	for _, e := range extra {
		list := byType[e.typeURL]
		replaced := false
		for i, r := range list {
			if cachev3.GetResourceName(r) == e.name {
				list[i] = e.msg
				replaced = true
			}
		}
		if !replaced {
			list = append(list, e.msg)
		}
		byType[e.typeURL] = list
	}
	return cachev3.NewSnapshot(version, byType)
}
