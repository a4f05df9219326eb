//! Fuzz target: arbitrary bytes as each xDS resource type (Listener, RouteConfiguration,
//! Cluster, ClusterLoadAssignment, server Listener) through `xds::resource::decode` and
//! `decode_with` (gRFC A27, A28, A29, A36, A41, A46): never a panic, and an accepted
//! resource has the type and name it was decoded as.
//!
//! Input: byte 0 selects the type (`% 5`; 4 is a server Listener template), byte 1 the
//! form: even, the rest is merged into a valid template (see `mesh_fuzz`); odd, the rest is
//! the whole resource; and `≥ 128` wraps it in a discovery `Resource`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_client::xds::resource::{ResourceType, ValidationContext, decode, decode_with};
use xds_proto::envoy::envoy::service::discovery::v3::Resource as ResourceWrapper;
use xds_proto::protobuf::Any;

fuzz_target!(|data: &[u8]| {
    let [kind, form, rest @ ..] = data else {
        return;
    };
    let ty = match kind % 5 {
        0 | 4 => ResourceType::Listener,
        1 => ResourceType::RouteConfiguration,
        2 => ResourceType::Cluster,
        _ => ResourceType::ClusterLoadAssignment,
    };
    let mut any = if form % 2 == 0 {
        mesh_fuzz::template_any(*kind, "r", rest)
    } else {
        Any {
            type_url: ty.type_url().into(),
            value: rest.to_vec(),
        }
    };
    if *form >= 128 {
        any = xds_proto::any::pack(&ResourceWrapper {
            name: "r".into(),
            resource: Some(any),
            ..Default::default()
        });
    }
    let ctx = ValidationContext::with_cert_provider_instances(["default"]);
    let plain = decode(ty, &any);
    let checked = decode_with(ty, &any, &ctx);
    for result in [&plain, &checked] {
        match result {
            Ok(resource) => assert_eq!(resource.resource_type(), ty),
            Err(e) => {
                assert_eq!(e.kind, ty);
                assert!(!e.message.is_empty());
                let _ = e.to_string();
            }
        }
    }
    // The bootstrap check only adds rejections.
    if checked.is_ok() {
        assert!(
            plain.is_ok(),
            "accepted with a bootstrap context, rejected without"
        );
    }
    // A rejection names the same resource either way.
    if let (Err(a), Err(b)) = (&plain, &checked) {
        assert_eq!(a.name, b.name);
    }
    // Every type URL is tried for the bytes, as a server sending the wrong type would.
    for other in ResourceType::ALL {
        let _ = decode(other, &any);
    }
});
