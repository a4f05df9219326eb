//! Tests of mTLS with SPIFFE identities (gRFC A29, Istio's PeerAuthentication modes): the
//! model's identities, the clusters' UpstreamTlsContext and SAN, the inbound filter chains
//! per mode with their DownstreamTlsContext, the validation errors, and what `describe`
//! prints.

// The older provider-instance fields and match_subject_alt_names are deprecated in Envoy;
// the translation writes them on purpose, so the tests read them.
#![allow(deprecated)]

use prost::Message;
use xds_proto::any::unpack;
use xds_proto::envoy::envoy::config::cluster::v3::Cluster;
use xds_proto::envoy::envoy::config::core::v3::{TransportSocket, transport_socket};
use xds_proto::envoy::envoy::config::listener::v3::{FilterChain, Listener};
use xds_proto::envoy::envoy::config::rbac::v3::{Principal, principal};
use xds_proto::envoy::envoy::extensions::filters::http::rbac::v3::Rbac;
use xds_proto::envoy::envoy::extensions::transport_sockets::tls::v3::{
    CertificateProviderPluginInstance, CommonTlsContext, DownstreamTlsContext, UpstreamTlsContext,
    common_tls_context::{CertificateProviderInstance, ValidationContextType},
};
use xds_proto::envoy::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use xds_proto::type_url;

use crate::{MeshConfig, MtlsMode, Snapshot, cluster_name, describe, describe_services, translate};

const MESH: &str = r#"
trust_domain: example.org
services:
  - name: plain.default
    port: 8080
    endpoints:
      - address: 127.0.0.1:7001
  - name: greeter.prod.svc.cluster.local
    port: 8080
    mtls: PERMISSIVE
    endpoints:
      - address: 127.0.0.1:7002
        labels: { version: v1 }
    subsets:
      - name: v1
        labels: { version: v1 }
  - name: vault
    port: 9090
    mtls: STRICT
    service_account: vault-server
    endpoints:
      - address: 127.0.0.1:7003
    authorization:
      policies:
        - name: only-greeter
          principals: ["spiffe://example.org/ns/prod/sa/greeter"]
"#;

const GREETER_ID: &str = "spiffe://example.org/ns/prod/sa/greeter";
const VAULT_ID: &str = "spiffe://example.org/ns/default/sa/vault-server";

fn snapshot(yaml: &str) -> Snapshot {
    translate(&MeshConfig::from_yaml(yaml).unwrap()).unwrap()
}

fn cluster(s: &Snapshot, name: &str) -> Cluster {
    unpack(s.get(type_url::CLUSTER, name).unwrap()).unwrap()
}

fn listener(s: &Snapshot, address: &str) -> Listener {
    let name = format!("xds.istio.io/grpc/lds/inbound/{address}");
    unpack(s.get(type_url::LISTENER, &name).unwrap()).unwrap()
}

fn invalid(yaml: &str) -> String {
    MeshConfig::from_yaml(yaml).unwrap_err().to_string()
}

/// The transport socket's typed_config, checked to be a TLS socket of `want_type`.
fn tls_config<'a>(ts: &'a TransportSocket, want_type: &str) -> &'a [u8] {
    assert_eq!(ts.name, "envoy.transport_sockets.tls");
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
        panic!("no typed_config");
    };
    assert_eq!(any.type_url, want_type);
    any.value.as_slice()
}

fn upstream(c: &Cluster) -> UpstreamTlsContext {
    let ts = c.transport_socket.as_ref().expect("a transport socket");
    UpstreamTlsContext::decode(tls_config(ts, type_url::UPSTREAM_TLS_CONTEXT)).unwrap()
}

fn downstream(chain: &FilterChain) -> DownstreamTlsContext {
    let ts = chain.transport_socket.as_ref().expect("a transport socket");
    DownstreamTlsContext::decode(tls_config(ts, type_url::DOWNSTREAM_TLS_CONTEXT)).unwrap()
}

fn plugin(certificate_name: &str) -> Option<CertificateProviderPluginInstance> {
    Some(CertificateProviderPluginInstance {
        instance_name: "default".into(),
        certificate_name: certificate_name.into(),
    })
}

fn deprecated_instance(certificate_name: &str) -> Option<CertificateProviderInstance> {
    Some(CertificateProviderInstance {
        instance_name: "default".into(),
        certificate_name: certificate_name.into(),
    })
}

/// Asserts istiod's proxyless CommonTlsContext (current and deprecated provider fields,
/// instance `default`, certificates `default` and `ROOTCA`) and returns its SAN matchers.
fn assert_istio_common(common: &CommonTlsContext) -> Vec<StringMatcher> {
    assert_eq!(common.tls_certificate_provider_instance, plugin("default"));
    assert_eq!(
        common.tls_certificate_certificate_provider_instance,
        deprecated_instance("default")
    );
    assert!(common.tls_params.is_none());
    assert!(common.custom_handshaker.is_none());
    assert!(common.tls_certificates.is_empty());
    assert!(common.tls_certificate_sds_secret_configs.is_empty());
    let Some(ValidationContextType::CombinedValidationContext(combined)) =
        &common.validation_context_type
    else {
        panic!(
            "not a combined validation context: {:?}",
            common.validation_context_type
        );
    };
    assert_eq!(
        combined.validation_context_certificate_provider_instance,
        deprecated_instance("ROOTCA")
    );
    assert!(combined.validation_context_sds_secret_config.is_none());
    let default = combined
        .default_validation_context
        .as_ref()
        .expect("default_validation_context");
    assert_eq!(default.ca_certificate_provider_instance, plugin("ROOTCA"));
    assert!(default.match_typed_subject_alt_names.is_empty());
    default.match_subject_alt_names.clone()
}

fn exact(s: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::Exact(s.into())),
        ignore_case: false,
    }
}

#[test]
fn identities_default_from_the_name_and_trust_domain() {
    let config = MeshConfig::from_yaml(MESH).unwrap();
    let ids: Vec<String> = config
        .services
        .iter()
        .map(|s| config.spiffe_id(s))
        .collect();
    assert_eq!(
        ids,
        [
            "spiffe://example.org/ns/default/sa/plain",
            GREETER_ID,
            VAULT_ID,
        ]
    );
    let modes: Vec<MtlsMode> = config.services.iter().map(|s| s.mtls).collect();
    assert_eq!(
        modes,
        [MtlsMode::Disable, MtlsMode::Permissive, MtlsMode::Strict]
    );

    let defaults =
        MeshConfig::from_yaml("services:\n  - name: greeter\n    port: 1\n    mtls: strict\n")
            .unwrap();
    assert_eq!(defaults.trust_domain, "cluster.local");
    assert_eq!(defaults.services[0].mtls, MtlsMode::Strict);
    assert_eq!(
        defaults.spiffe_id(&defaults.services[0]),
        "spiffe://cluster.local/ns/default/sa/greeter"
    );
    assert_eq!(MeshConfig::default().trust_domain, "cluster.local");
}

#[test]
fn yaml_round_trips_with_mtls_fields() {
    let config = MeshConfig::from_yaml(MESH).unwrap();
    let yaml = config.to_yaml().unwrap();
    assert!(yaml.contains("mtls: STRICT"), "{yaml}");
    assert!(yaml.contains("trust_domain: example.org"), "{yaml}");
    assert_eq!(MeshConfig::from_yaml(&yaml).unwrap(), config);
    // Defaults are not written out, so existing files serialize as before.
    let plain = MeshConfig::from_yaml("services:\n  - name: a.b\n    port: 1\n")
        .unwrap()
        .to_yaml()
        .unwrap();
    assert!(!plain.contains("mtls"), "{plain}");
    assert!(!plain.contains("trust_domain"), "{plain}");
    assert!(!plain.contains("service_account"), "{plain}");
}

#[test]
fn clusters_of_disabled_services_have_no_transport_socket() {
    let s = snapshot(MESH);
    let c = cluster(&s, &cluster_name("plain.default", 8080, None));
    assert!(c.transport_socket.is_none(), "{:?}", c.transport_socket);
    assert!(c.transport_socket_matches.is_empty());
}

#[test]
fn clusters_of_permissive_and_strict_services_use_mtls_with_the_destination_san() {
    let s = snapshot(MESH);
    for (name, want) in [
        (
            cluster_name("greeter.prod.svc.cluster.local", 8080, None),
            GREETER_ID,
        ),
        (
            cluster_name("greeter.prod.svc.cluster.local", 8080, Some("v1")),
            GREETER_ID,
        ),
        (cluster_name("vault", 9090, None), VAULT_ID),
    ] {
        let tls = upstream(&cluster(&s, &name));
        assert_eq!(tls.sni, "", "{name}");
        let common = tls.common_tls_context.as_ref().expect("common_tls_context");
        assert_eq!(assert_istio_common(common), [exact(want)], "{name}");
    }
}

#[test]
fn the_san_follows_the_destination_not_the_route_owner() {
    // A route of a plaintext service into a STRICT one: the STRICT service's cluster
    // carries its own identity; the plaintext service's cluster stays plaintext.
    let s = snapshot(
        r#"
services:
  - name: front.web
    port: 80
    routes:
      - destination: { service: back.api }
  - name: back.api
    port: 81
    mtls: STRICT
"#,
    );
    assert!(
        cluster(&s, &cluster_name("front.web", 80, None))
            .transport_socket
            .is_none()
    );
    let tls = upstream(&cluster(&s, &cluster_name("back.api", 81, None)));
    let sans = assert_istio_common(tls.common_tls_context.as_ref().unwrap());
    assert_eq!(sans, [exact("spiffe://cluster.local/ns/api/sa/back")]);
}

#[test]
fn disabled_inbound_listener_has_one_plaintext_chain() {
    let l = listener(&snapshot(MESH), "127.0.0.1:7001");
    let [chain] = l.filter_chains.as_slice() else {
        panic!("{} chains", l.filter_chains.len());
    };
    assert_eq!(chain.name, "inbound-plaintext");
    assert_eq!(
        chain
            .filter_chain_match
            .as_ref()
            .unwrap()
            .transport_protocol,
        ""
    );
    assert!(chain.transport_socket.is_none());
}

#[test]
fn strict_inbound_listener_has_one_mtls_chain_requiring_client_certificates() {
    let l = listener(&snapshot(MESH), "127.0.0.1:7003");
    let [chain] = l.filter_chains.as_slice() else {
        panic!("{} chains", l.filter_chains.len());
    };
    assert_eq!(chain.name, "inbound-mtls");
    // No transport_protocol match: a plaintext connection fails the TLS handshake rather
    // than finding no chain.
    assert_eq!(
        chain
            .filter_chain_match
            .as_ref()
            .unwrap()
            .transport_protocol,
        ""
    );
    let tls = downstream(chain);
    assert_eq!(tls.require_client_certificate.map(|b| b.value), Some(true));
    assert!(tls.require_sni.is_none());
    assert_eq!(tls.ocsp_staple_policy, 0, "LENIENT_STAPLING");
    let sans = assert_istio_common(tls.common_tls_context.as_ref().unwrap());
    assert!(sans.is_empty(), "servers take no SAN matchers: {sans:?}");
    assert!(l.default_filter_chain.is_none());
}

#[test]
fn permissive_inbound_listener_has_a_tls_and_a_raw_buffer_chain() {
    let l = listener(&snapshot(MESH), "127.0.0.1:7002");
    let [mtls, plain] = l.filter_chains.as_slice() else {
        panic!("{} chains", l.filter_chains.len());
    };
    assert_eq!(mtls.name, "inbound-mtls");
    assert_eq!(
        mtls.filter_chain_match.as_ref().unwrap().transport_protocol,
        "tls"
    );
    let tls = downstream(mtls);
    assert_eq!(tls.require_client_certificate.map(|b| b.value), Some(true));
    assert!(assert_istio_common(tls.common_tls_context.as_ref().unwrap()).is_empty());

    assert_eq!(plain.name, "inbound-plaintext");
    assert_eq!(
        plain
            .filter_chain_match
            .as_ref()
            .unwrap()
            .transport_protocol,
        "raw_buffer"
    );
    assert!(plain.transport_socket.is_none());
    // Both chains serve the same routes and filters.
    assert_eq!(mtls.filters, plain.filters);
}

#[test]
fn mtls_chains_keep_rbac_on_spiffe_principals() {
    use xds_proto::envoy::envoy::config::listener::v3::filter;
    use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpConnectionManager, http_filter,
    };
    let l = listener(&snapshot(MESH), "127.0.0.1:7003");
    let Some(filter::ConfigType::TypedConfig(any)) = &l.filter_chains[0].filters[0].config_type
    else {
        panic!("no hcm");
    };
    let hcm: HttpConnectionManager = unpack(any).unwrap();
    let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["envoy.filters.http.rbac", "envoy.filters.http.router"]
    );
    let Some(http_filter::ConfigType::TypedConfig(any)) = &hcm.http_filters[0].config_type else {
        panic!("no rbac config");
    };
    let rbac: Rbac = unpack(any).unwrap();
    let policy = &rbac.rules.unwrap().policies["only-greeter"];
    assert_eq!(
        policy.principals,
        [Principal {
            identifier: Some(principal::Identifier::Authenticated(
                principal::Authenticated {
                    principal_name: Some(exact(GREETER_ID)),
                }
            )),
        }]
    );
}

#[test]
fn a_bad_mode_names_the_field() {
    let e = invalid("services:\n  - name: a.b\n    port: 1\n    mtls: STRIKT\n");
    assert!(e.contains("services[0].mtls"), "{e}");
    assert!(e.contains("STRIKT"), "{e}");
    assert!(e.contains("PERMISSIVE"), "{e}");
}

#[test]
fn a_bad_trust_domain_names_the_field() {
    for td in ["Cluster.Local", "a/b", "spiffe://x", "\"\"", "ex ample"] {
        let e = invalid(&format!("trust_domain: {td}\nservices: []\n"));
        assert!(
            e.starts_with("trust_domain: ") && e.contains("is not a SPIFFE trust domain"),
            "{td}: {e}"
        );
    }
}

#[test]
fn a_bad_service_account_names_the_field() {
    let e = invalid("services:\n  - name: a.b\n    port: 1\n    service_account: \"\"\n");
    assert_eq!(
        e,
        "services[0].service_account: must not be empty (remove it to use the service's short name)"
    );
    let e = invalid("services:\n  - name: a.b\n    port: 1\n    service_account: a@b\n");
    assert!(
        e.starts_with("services[0].service_account: \"a@b\" cannot be part of a SPIFFE ID"),
        "{e}"
    );
    let e = invalid("services:\n  - name: a.b\n    port: 1\n    service_account: \"..\"\n");
    assert!(e.starts_with("services[0].service_account: "), "{e}");
}

#[test]
fn a_name_that_cannot_make_an_identity_is_an_error_only_with_mtls() {
    let plain = "services:\n  - name: a@b.ns%1\n    port: 1\n";
    assert!(MeshConfig::from_yaml(plain).is_ok());
    let e = invalid(&format!("{plain}    mtls: STRICT\n"));
    assert!(
        e.starts_with("services[0].name: the namespace \"ns%1\""),
        "{e}"
    );
    let e = invalid("services:\n  - name: a@b.ns\n    port: 1\n    mtls: PERMISSIVE\n");
    assert!(
        e.starts_with("services[0].name: the short name \"a@b\"") && e.contains("service_account"),
        "{e}"
    );
    // An explicit service account fixes it.
    assert!(
        MeshConfig::from_yaml(
            "services:\n  - name: a@b.ns\n    port: 1\n    mtls: PERMISSIVE\n    service_account: ab\n"
        )
        .is_ok()
    );
}

#[test]
fn services_sharing_an_endpoint_must_agree_on_the_mode() {
    let e = invalid(
        r#"
services:
  - name: a.default
    port: 1
    mtls: STRICT
    endpoints: [ { address: "127.0.0.1:7000" } ]
  - name: b.default
    port: 2
    endpoints: [ { address: "127.0.0.1:7000" } ]
"#,
    );
    assert!(
        e.starts_with("services[1].mtls: DISABLE differs from STRICT of services[0] (a.default:1)"),
        "{e}"
    );
}

#[test]
fn describe_shows_modes_identities_and_transports() {
    let config = MeshConfig::from_yaml(MESH).unwrap();
    let services = describe_services(&config);
    assert!(
        services.contains("services (3), trust domain example.org:"),
        "{services}"
    );
    assert!(
        services.contains(
            "plain.default:8080: mtls DISABLE, identity spiffe://example.org/ns/default/sa/plain"
        ),
        "{services}"
    );
    assert!(
        services.contains(&format!(
            "greeter.prod.svc.cluster.local:8080: mtls PERMISSIVE, identity {GREETER_ID}"
        )),
        "{services}"
    );
    assert!(
        services.contains(&format!("vault:9090: mtls STRICT, identity {VAULT_ID}")),
        "{services}"
    );

    let text = describe(&translate(&config).unwrap());
    assert!(
        text.contains(&format!(
            "outbound|9090||vault: 1 endpoint(s) in 1 locality group(s), mtls, expects {VAULT_ID}"
        )),
        "{text}"
    );
    assert!(
        text.contains("outbound|8080||plain.default: 1 endpoint(s) in 1 locality group(s)\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "chain inbound-mtls (transport_protocol tls): mtls (client certificate required)"
        ),
        "{text}"
    );
    assert!(
        text.contains("chain inbound-plaintext (transport_protocol raw_buffer): plaintext"),
        "{text}"
    );
    assert!(
        text.contains("chain inbound-mtls: mtls (client certificate required)"),
        "{text}"
    );
}
