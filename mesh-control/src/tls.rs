//! TLS transport sockets for mTLS services (gRFC A29), shaped the way istiod shapes them for
//! proxyless gRPC: certificates come from the bootstrap's certificate provider instance
//! `default` ([`crate::bootstrap_json_with_certs`]), certificate name `default` for the
//! workload's own certificate and `ROOTCA` for the roots.
//!
//! Each [`CommonTlsContext`] names the provider instances twice, in the current fields
//! (`tls_certificate_provider_instance`,
//! `combined_validation_context.default_validation_context.ca_certificate_provider_instance`)
//! and in the deprecated ones (`tls_certificate_certificate_provider_instance`,
//! `combined_validation_context.validation_context_certificate_provider_instance`), as
//! current istiod does: a gRPC that reads only one generation of fields finds a complete
//! configuration in it (grpc-go falls back to the deprecated fields as a whole when the
//! current ones are incomplete, so half of each would lose the identity).

use xds_proto::any::pack;
use xds_proto::envoy::envoy::config::core::v3::{TransportSocket, transport_socket};
use xds_proto::envoy::envoy::extensions::transport_sockets::tls::v3::{
    CertificateProviderPluginInstance, CertificateValidationContext, CommonTlsContext,
    DownstreamTlsContext, UpstreamTlsContext,
    common_tls_context::{
        CertificateProviderInstance, CombinedCertificateValidationContext, ValidationContextType,
    },
};
use xds_proto::envoy::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use xds_proto::protobuf::BoolValue;

/// The name of a TLS transport socket (gRPC checks it on both sides).
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";

/// The certificate provider instance the contexts name; the bootstrap's
/// `certificate_providers` key.
pub const CERT_PROVIDER_INSTANCE: &str = "default";

/// The certificate name of the workload's own certificate.
pub const IDENTITY_CERT_NAME: &str = "default";

/// The certificate name of the root certificates.
pub const ROOT_CERT_NAME: &str = "ROOTCA";

/// The transport socket of a cluster whose endpoints must present `spiffe_id`: mTLS with an
/// exact SAN match on the destination's SPIFFE ID.
pub fn upstream_transport_socket(spiffe_id: &str) -> TransportSocket {
    let san = StringMatcher {
        match_pattern: Some(MatchPattern::Exact(spiffe_id.to_string())),
        ignore_case: false,
    };
    let context = UpstreamTlsContext {
        common_tls_context: Some(common_tls_context(vec![san])),
        ..Default::default()
    };
    socket(pack(&context))
}

/// The transport socket of an mTLS inbound filter chain: the workload's certificate, and a
/// client certificate required and verified against the roots. Servers take no SAN matchers
/// (gRPC NACKs them); who may call is RBAC's business.
pub fn downstream_transport_socket() -> TransportSocket {
    let context = DownstreamTlsContext {
        common_tls_context: Some(common_tls_context(Vec::new())),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    socket(pack(&context))
}

fn socket(typed_config: xds_proto::protobuf::Any) -> TransportSocket {
    TransportSocket {
        name: TLS_TRANSPORT_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(typed_config)),
    }
}

// The deprecated provider-instance fields are set on purpose (see the module docs).
#[allow(deprecated)]
fn common_tls_context(match_subject_alt_names: Vec<StringMatcher>) -> CommonTlsContext {
    let plugin = |certificate_name: &str| CertificateProviderPluginInstance {
        instance_name: CERT_PROVIDER_INSTANCE.to_string(),
        certificate_name: certificate_name.to_string(),
    };
    let deprecated = |certificate_name: &str| CertificateProviderInstance {
        instance_name: CERT_PROVIDER_INSTANCE.to_string(),
        certificate_name: certificate_name.to_string(),
    };
    CommonTlsContext {
        tls_certificate_provider_instance: Some(plugin(IDENTITY_CERT_NAME)),
        tls_certificate_certificate_provider_instance: Some(deprecated(IDENTITY_CERT_NAME)),
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_subject_alt_names,
                    ca_certificate_provider_instance: Some(plugin(ROOT_CERT_NAME)),
                    ..Default::default()
                }),
                validation_context_certificate_provider_instance: Some(deprecated(ROOT_CERT_NAME)),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}
