//! Fuzz target: route matching (gRFC A28, A42). A RouteConfiguration decoded from the input
//! (merged into a template using every matcher kind, or whole) is validated; then a request
//! (authority, path, headers) goes through virtual host selection, each route's matcher,
//! the request hash policies and `RouteTable::build` + `select`, as `MeshChannel` does.
//! Checked: no panic; the table's virtual host is the one `find_virtual_host` picks; a
//! selection names a cluster of a route that matches.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mesh_client::balance::{OutlierRegistry, request_hash};
use mesh_client::config::{
    HttpConnectionManager, Listener, RetryBudgetConfig, RouteAction, RouteSource, TargetConfig,
};
use mesh_client::route::{ClusterTarget, RouteTable};
use mesh_client::transport::{ConnectSettings, ConnectionSet};
use mesh_client::xds::resource::route::{RouteConfigurationProto, validate};
use prost::Message;

#[derive(Arbitrary, Debug)]
struct Input {
    whole: bool,
    authority: String,
    path: String,
    headers: Vec<(String, String)>,
    fraction: u32,
    channel_id: u64,
    /// The protobuf bytes: the RouteConfiguration (or its tail).
    proto: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let proto = if input.whole {
        RouteConfigurationProto::decode(input.proto.as_slice())
    } else {
        mesh_fuzz::merged(&mesh_fuzz::route_config("r"), &input.proto)
    };
    let Ok(proto) = proto else {
        return;
    };
    let Ok(route_config) = validate(&proto) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    for (name, value) in input.headers.iter().take(16) {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    let fraction = input.fraction % 1_000_000;
    let vh = route_config.find_virtual_host(&input.authority);
    let mut matching_clusters = Vec::new();
    if let Some(vh) = vh {
        for route in &vh.routes {
            let _ = route.matcher.matches(&input.path, &headers, fraction);
            if let RouteAction::Forward {
                clusters,
                hash_policy,
                ..
            } = &route.action
            {
                let _ = request_hash(hash_policy, &headers, input.channel_id);
                if route.matcher.matches(&input.path, &headers, 0)
                    || route.matcher.matches(&input.path, &headers, 999_999)
                {
                    matching_clusters.extend(clusters.iter().map(|c| c.name.clone()));
                }
            }
        }
    }

    let target = TargetConfig {
        listener: Arc::new(Listener {
            name: "l".into(),
            http: HttpConnectionManager {
                route_source: RouteSource::Inline(Arc::new(route_config.clone())),
                http_filters: Vec::new(),
                max_stream_duration: None,
            },
        }),
        route_config: Arc::new(route_config.clone()),
        // No cluster is resolved: every one is unavailable, so no connection is made.
        clusters: BTreeMap::new(),
    };
    let conns = ConnectionSet::new(ConnectSettings::default());
    let table = RouteTable::build(
        &target,
        &input.authority,
        &conns,
        &RetryBudgetConfig::default(),
        &OutlierRegistry::default(),
    );
    let selected = table.select(&input.path, &headers, input.channel_id);
    if vh.is_none() {
        assert!(
            selected.is_err(),
            "no virtual host, yet a route was selected"
        );
    }
    if let Ok(selection) = selected {
        let ClusterTarget::Unavailable { name, .. } = selection.cluster else {
            panic!("a cluster that is not in the configuration got a pool");
        };
        assert!(
            matching_clusters.iter().any(|c| c.as_str() == &**name),
            "selected cluster {name:?} is not in a matching route"
        );
    }
});
