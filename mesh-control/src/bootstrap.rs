//! The gRPC xDS bootstrap (gRFC A27) that points a client at this control plane.

use serde_json::{Value, json};

/// A gRPC bootstrap for a client with node id `node_id` talking to `server_uri`
/// (`host:port`) over an insecure channel, xDS v3, with Istio's server listener template.
///
/// ```
/// let b = mesh_control::bootstrap_json("127.0.0.1:18000", "client-1");
/// assert_eq!(b["node"]["id"], "client-1");
/// assert_eq!(b["xds_servers"][0]["server_uri"], "127.0.0.1:18000");
/// ```
pub fn bootstrap_json(server_uri: &str, node_id: &str) -> Value {
    json!({
        "xds_servers": [{
            "server_uri": server_uri,
            "channel_creds": [{ "type": "insecure" }],
            "server_features": ["xds_v3"],
        }],
        "node": {
            "id": node_id,
            "cluster": "mesh",
            "locality": {},
        },
        "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s",
    })
}
