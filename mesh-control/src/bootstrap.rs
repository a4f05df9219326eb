//! The gRPC xDS bootstrap (gRFC A27) that points a client at this control plane, optionally
//! with the `file_watcher` certificate provider (gRFC A29) that mTLS services need.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::ca::{CERT_CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE};
use crate::tls::CERT_PROVIDER_INSTANCE;

/// How often the `file_watcher` provider rereads the certificate files unless told otherwise.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

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

/// [`bootstrap_json`], plus, with `certs_dir`, the certificate provider instance `default`
/// reading Istio's file layout in that directory (`cert-chain.pem`, `key.pem`,
/// `root-cert.pem`, as `mesh-control ca issue` writes it) every
/// [`DEFAULT_REFRESH_INTERVAL`]. Without `certs_dir` it is exactly [`bootstrap_json`].
///
/// ```
/// let b = mesh_control::bootstrap_json_with_certs(
///     "127.0.0.1:18000",
///     "client-1",
///     Some(std::path::Path::new("/etc/certs")),
/// );
/// let provider = &b["certificate_providers"]["default"];
/// assert_eq!(provider["plugin_name"], "file_watcher");
/// assert_eq!(provider["config"]["certificate_file"], "/etc/certs/cert-chain.pem");
/// assert_eq!(provider["config"]["refresh_interval"], "10s");
/// ```
pub fn bootstrap_json_with_certs(
    server_uri: &str,
    node_id: &str,
    certs_dir: Option<&Path>,
) -> Value {
    bootstrap_json_with_cert_refresh(server_uri, node_id, certs_dir, DEFAULT_REFRESH_INTERVAL)
}

/// [`bootstrap_json_with_certs`] with the provider rereading the files every
/// `refresh_interval`.
pub fn bootstrap_json_with_cert_refresh(
    server_uri: &str,
    node_id: &str,
    certs_dir: Option<&Path>,
    refresh_interval: Duration,
) -> Value {
    let mut bootstrap = bootstrap_json(server_uri, node_id);
    if let (Some(dir), Some(object)) = (certs_dir, bootstrap.as_object_mut()) {
        object.insert(
            "certificate_providers".to_string(),
            json!({ CERT_PROVIDER_INSTANCE: file_watcher_provider(dir, refresh_interval) }),
        );
    }
    bootstrap
}

/// A workload's identity as Istio's agent (`pilot-agent`) describes it to istiod in a
/// proxyless gRPC bootstrap: the node id `sidecar~{ip}~{workload}.{namespace}~{namespace}.svc.cluster.local`
/// and the node metadata istiod reads (`GENERATOR`, `NAMESPACE`, `CLUSTER_ID`, `INSTANCE_IPS`,
/// `ISTIO_VERSION`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IstioNode {
    /// The workload's IP (`INSTANCE_IPS`; the server listener name uses it too).
    pub ip: std::net::IpAddr,
    /// The workload name (a pod name under Kubernetes).
    pub workload: String,
    /// The workload's namespace.
    pub namespace: String,
    /// istiod's cluster id (`Kubernetes` unless istiod was told otherwise).
    pub cluster_id: String,
    /// The Istio release the workload claims (`ISTIO_VERSION`; istiod gates some features on
    /// it and warns when it is missing): [`IstioNode::ISTIO_VERSION`] unless set.
    pub istio_version: String,
}

impl IstioNode {
    /// The Istio release our tests run istiod from (release-1.31).
    pub const ISTIO_VERSION: &'static str = "1.31.0";

    /// A node in `namespace` of istiod's default cluster `Kubernetes`.
    pub fn new(ip: std::net::IpAddr, workload: &str, namespace: &str) -> Self {
        IstioNode {
            ip,
            workload: workload.to_string(),
            namespace: namespace.to_string(),
            cluster_id: "Kubernetes".to_string(),
            istio_version: Self::ISTIO_VERSION.to_string(),
        }
    }

    /// The node id, as `pilot-agent` writes it.
    pub fn node_id(&self) -> String {
        format!(
            "sidecar~{}~{}.{ns}~{ns}.svc.cluster.local",
            self.ip,
            self.workload,
            ns = self.namespace
        )
    }

    /// The bootstrap's `node` object: the id and the metadata istiod reads.
    pub fn node_json(&self) -> Value {
        json!({
            "id": self.node_id(),
            "metadata": {
                "GENERATOR": "grpc",
                "NAMESPACE": self.namespace,
                "CLUSTER_ID": self.cluster_id,
                "INSTANCE_IPS": self.ip.to_string(),
                "ISTIO_VERSION": self.istio_version,
            },
            "locality": {},
        })
    }
}

/// A proxyless gRPC bootstrap for a workload under istiod (plaintext xDS to `server_uri`),
/// as Istio's agent writes it: the node of [`IstioNode`] with `GENERATOR: grpc` (so istiod
/// answers with its proxyless generator), Istio's server listener template, and with
/// `certs_dir` the `default` `file_watcher` certificate provider over Istio's file layout.
///
/// ```
/// use mesh_control::bootstrap::{IstioNode, istio_bootstrap_json};
/// let node = IstioNode::new("10.0.0.7".parse().unwrap(), "greeter-1", "default");
/// let b = istio_bootstrap_json("127.0.0.1:15010", &node, None);
/// assert_eq!(b["node"]["id"], "sidecar~10.0.0.7~greeter-1.default~default.svc.cluster.local");
/// assert_eq!(b["node"]["metadata"]["GENERATOR"], "grpc");
/// assert_eq!(b["node"]["metadata"]["INSTANCE_IPS"], "10.0.0.7");
/// ```
pub fn istio_bootstrap_json(server_uri: &str, node: &IstioNode, certs_dir: Option<&Path>) -> Value {
    let mut bootstrap = bootstrap_json_with_certs(server_uri, &node.node_id(), certs_dir);
    bootstrap["node"] = node.node_json();
    bootstrap
}

/// One `certificate_providers` entry as Istio's agent writes it: the `file_watcher` plugin
/// over `dir`'s `cert-chain.pem`, `key.pem` and `root-cert.pem`. Paths are written as given
/// (relative ones resolve against the client's working directory), and a path that is not
/// UTF-8 is written lossily.
pub fn file_watcher_provider(dir: &Path, refresh_interval: Duration) -> Value {
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    json!({
        "plugin_name": "file_watcher",
        "config": {
            "certificate_file": file(CERT_CHAIN_FILE),
            "private_key_file": file(KEY_FILE),
            "ca_certificate_file": file(ROOT_CERT_FILE),
            "refresh_interval": proto_json_duration(refresh_interval),
        },
    })
}

/// A protobuf JSON `Duration`: decimal seconds with an `s` suffix (`"10s"`, `"0.5s"`).
fn proto_json_duration(d: Duration) -> String {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return format!("{}s", d.as_secs());
    }
    let fraction = format!("{nanos:09}");
    format!("{}.{}s", d.as_secs(), fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_protobuf_json() {
        assert_eq!(proto_json_duration(Duration::from_secs(10)), "10s");
        assert_eq!(proto_json_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(proto_json_duration(Duration::from_millis(100)), "0.1s");
        assert_eq!(proto_json_duration(Duration::from_nanos(1)), "0.000000001s");
        assert_eq!(proto_json_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn bootstrap_with_certs_adds_istios_file_watcher_provider() {
        let dir = Path::new("/var/run/mesh/certs");
        let b = bootstrap_json_with_cert_refresh(
            "127.0.0.1:18000",
            "node-1",
            Some(dir),
            Duration::from_secs(900),
        );
        assert_eq!(
            b["certificate_providers"],
            json!({
                "default": {
                    "plugin_name": "file_watcher",
                    "config": {
                        "certificate_file": "/var/run/mesh/certs/cert-chain.pem",
                        "private_key_file": "/var/run/mesh/certs/key.pem",
                        "ca_certificate_file": "/var/run/mesh/certs/root-cert.pem",
                        "refresh_interval": "900s",
                    }
                }
            })
        );
        // Everything else is the plain bootstrap.
        let mut rest = b.clone();
        rest.as_object_mut()
            .unwrap()
            .remove("certificate_providers");
        assert_eq!(rest, bootstrap_json("127.0.0.1:18000", "node-1"));
        assert_eq!(
            bootstrap_json_with_certs("127.0.0.1:18000", "node-1", Some(dir))["certificate_providers"]
                ["default"]["config"]["refresh_interval"],
            "10s"
        );
        assert_eq!(
            bootstrap_json_with_certs("127.0.0.1:18000", "node-1", None),
            bootstrap_json("127.0.0.1:18000", "node-1")
        );
    }
}
