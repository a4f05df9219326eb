//! Fuzz target: gRPC bootstrap JSON (gRFC A27, A47, A65, A71) through `Bootstrap::from_json`
//! and the lookups a parsed bootstrap answers (listener and server resource names, the xDS
//! servers of an `xdstp:` name, server addresses, the `file_watcher` provider config).
//!
//! Input: the first line is a target/resource name to look up, the rest is the JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_client::bootstrap::Bootstrap;
use mesh_client::identity::FileWatcherConfig;
use mesh_client::xds::resource::ValidationContext;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (name, json) = text.split_once('\n').unwrap_or(("xds:///a", text));
    // The whole input as JSON too, so the corpus need not start with a name line.
    let _ = Bootstrap::from_json(text);
    let Ok(bootstrap) = Bootstrap::from_json(json) else {
        return;
    };
    // A parsed bootstrap always has a server (gRFC A27).
    assert!(!bootstrap.xds_servers.is_empty());
    let _ = bootstrap.node_proto();
    if let Ok(resource) = bootstrap.listener_resource_name(name) {
        let _ = bootstrap.xds_servers_for(&resource);
    }
    let _ = bootstrap.listener_resource_name(&format!("xds:///{name}"));
    let _ = bootstrap.server_listener_resource_name(name);
    let _ = bootstrap.xds_servers_for(name);
    for server in &bootstrap.xds_servers {
        let _ = server.address();
        let _ = server.ignore_resource_deletion();
    }
    for authority in bootstrap.authorities.values() {
        for server in &authority.xds_servers {
            let _ = server.address();
        }
    }
    for provider in bootstrap.certificate_providers.values() {
        let _ = FileWatcherConfig::from_bootstrap(provider);
    }
    let _ = ValidationContext::from_bootstrap(&bootstrap);
});
