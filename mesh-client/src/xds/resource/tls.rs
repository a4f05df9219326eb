//! TLS transport sockets: validation of `UpstreamTlsContext` (CDS) and
//! `DownstreamTlsContext` (LDS filter chains) into [`config::UpstreamTls`] and
//! [`config::DownstreamTls`] (gRFC A29; SAN matchers per A29 and Envoy's
//! `match_typed_subject_alt_names`; the roots may be a SPIFFE bundle map, A87).
//!
//! Rules, as gRPC applies them (A29, grpc-go's CDS/LDS security parsing):
//! - the transport socket is named `envoy.transport_sockets.tls` and its `typed_config` is
//!   the context type of its side; `common_tls_context` is required.
//! - `CommonTlsContext`: `tls_params` and `custom_handshaker` NACK. Certificates come only
//!   from certificate provider instances: the identity from `tls_certificate_provider_instance`
//!   or the older `tls_certificate_certificate_provider_instance`; the roots from
//!   `ca_certificate_provider_instance` of `validation_context` or of
//!   `combined_validation_context.default_validation_context`, or from the older
//!   `validation_context_certificate_provider_instance` (top level or in the combined
//!   context): the shapes istiod and Traffic Director send. Another source standing in for
//!   a missing instance (`tls_certificates`, SDS secret configs, `CertificateProvider`)
//!   NACKs; a `validation_context` without `ca_certificate_provider_instance` NACKs.
//! - `CertificateValidationContext`: `verify_certificate_spki`, `verify_certificate_hash`,
//!   `require_signed_certificate_timestamp`, `crl` and `custom_validator_config` NACK;
//!   `trusted_ca`, `watched_directory`, `allow_expired_certificate`,
//!   `trust_chain_verification` and the rest are ignored. SAN matchers are valid Envoy
//!   `StringMatcher`s (A63); typed ones must be of SAN type DNS or URI.
//! - client: a root provider instance is required (no `system_root_certs`, gRFC A82, yet);
//!   `sni` is at most 255 bytes.
//! - server: an identity provider instance is required; `require_client_certificate` needs
//!   a root provider instance; SAN matchers NACK (grpc-go: not supported on servers);
//!   `require_sni` and an `ocsp_staple_policy` other than `LENIENT_STAPLING` NACK.
//! - every named instance must be in the bootstrap's `certificate_providers` when the
//!   [`ValidationContext`] knows them; an empty `instance_name` NACKs.

use prost::Message;
use xds_proto::envoy::envoy::config::core::v3::{
    TransportSocket as TransportSocketProto, transport_socket,
};
use xds_proto::envoy::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SubjectAltNameMatcher,
    UpstreamTlsContext, common_tls_context::ValidationContextType,
    downstream_tls_context::OcspStaplePolicy, subject_alt_name_matcher::SanType as SanTypeProto,
};
use xds_proto::protobuf::Any;
use xds_proto::type_url;

use super::ValidationContext;
use crate::config::{self, CertProviderInstance, SanMatcher, SanType};

/// The name a TLS transport socket must have (grpc-go checks it on both sides).
pub const TLS_TRANSPORT_SOCKET_NAME: &str = "envoy.transport_sockets.tls";

/// grpc-go: the longest accepted `sni`.
const MAX_SNI_LENGTH: usize = 255;

/// Which end of the connection a context configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// The provider instances and SAN matchers of a `CommonTlsContext`.
struct Common {
    identity: Option<CertProviderInstance>,
    roots: Option<CertProviderInstance>,
    san_matchers: Vec<SanMatcher>,
}

/// A cluster's `transport_socket` (A29): an `UpstreamTlsContext`. Errors are paths relative
/// to the transport socket, starting with `.` (`.typed_config.common_tls_context: missing`).
pub fn upstream(
    ts: &TransportSocketProto,
    ctx: &ValidationContext,
) -> Result<config::UpstreamTls, String> {
    check_name(ts)?;
    let any = typed_config(ts)?;
    if any.type_url != type_url::UPSTREAM_TLS_CONTEXT {
        return Err(format!(
            ".typed_config: unsupported transport socket type {:?}, want UpstreamTlsContext",
            any.type_url
        ));
    }
    let tls = UpstreamTlsContext::decode(any.value.as_slice())
        .map_err(|e| format!(".typed_config: cannot decode UpstreamTlsContext: {e}"))?;
    upstream_tls_context(&tls, ctx).map_err(|e| format!(".typed_config.{e}"))
}

/// A decoded `DownstreamTlsContext` of a filter chain whose transport socket is `ts` (its
/// name is checked here). Errors are relative to the transport socket, as in [`upstream`].
pub fn downstream(
    ts: &TransportSocketProto,
    tls: &DownstreamTlsContext,
    ctx: &ValidationContext,
) -> Result<config::DownstreamTls, String> {
    check_name(ts)?;
    downstream_tls_context(tls, ctx).map_err(|e| format!(".typed_config.{e}"))
}

fn check_name(ts: &TransportSocketProto) -> Result<(), String> {
    if ts.name != TLS_TRANSPORT_SOCKET_NAME {
        return Err(format!(
            ".name: {:?} is not {TLS_TRANSPORT_SOCKET_NAME:?}",
            ts.name
        ));
    }
    Ok(())
}

fn typed_config(ts: &TransportSocketProto) -> Result<&Any, String> {
    match &ts.config_type {
        Some(transport_socket::ConfigType::TypedConfig(any)) => Ok(any),
        None => Err(".typed_config: missing".into()),
    }
}

/// An `UpstreamTlsContext`. Errors are relative paths (`common_tls_context: missing`).
pub fn upstream_tls_context(
    tls: &UpstreamTlsContext,
    ctx: &ValidationContext,
) -> Result<config::UpstreamTls, String> {
    let common = tls
        .common_tls_context
        .as_ref()
        .ok_or("common_tls_context: missing")?;
    let c = common_tls_context(common, Side::Client, ctx)
        .map_err(|e| format!("common_tls_context.{e}"))?;
    let roots = c.roots.ok_or(
        "common_tls_context: no root certificate provider instance (a client must verify the \
         server: set validation_context.ca_certificate_provider_instance)",
    )?;
    if tls.sni.len() > MAX_SNI_LENGTH {
        return Err(format!(
            "sni: {} bytes, longer than {MAX_SNI_LENGTH}",
            tls.sni.len()
        ));
    }
    Ok(config::UpstreamTls {
        identity: c.identity,
        roots,
        san_matchers: c.san_matchers,
        sni: Some(tls.sni.clone()).filter(|s| !s.is_empty()),
    })
}

/// A `DownstreamTlsContext`. Errors are relative paths (`require_sni: must not be true`).
pub fn downstream_tls_context(
    tls: &DownstreamTlsContext,
    ctx: &ValidationContext,
) -> Result<config::DownstreamTls, String> {
    if tls.require_sni.as_ref().is_some_and(|v| v.value) {
        return Err("require_sni: must not be true".into());
    }
    if tls.ocsp_staple_policy != OcspStaplePolicy::LenientStapling as i32 {
        let name = OcspStaplePolicy::try_from(tls.ocsp_staple_policy)
            .map(|p| p.as_str_name().to_string())
            .unwrap_or_else(|_| tls.ocsp_staple_policy.to_string());
        return Err(format!(
            "ocsp_staple_policy: unsupported value {name}, want LENIENT_STAPLING"
        ));
    }
    let common = tls
        .common_tls_context
        .as_ref()
        .ok_or("common_tls_context: missing")?;
    let c = common_tls_context(common, Side::Server, ctx)
        .map_err(|e| format!("common_tls_context.{e}"))?;
    let identity = c.identity.ok_or(
        "common_tls_context: no identity certificate provider instance (a server needs a \
         certificate: set tls_certificate_provider_instance)",
    )?;
    let require_client_certificate = tls
        .require_client_certificate
        .as_ref()
        .is_some_and(|v| v.value);
    if require_client_certificate && c.roots.is_none() {
        return Err(
            "require_client_certificate: true without a validation context (no root \
             certificate provider instance to verify clients with)"
                .into(),
        );
    }
    Ok(config::DownstreamTls {
        identity,
        roots: c.roots,
        require_client_certificate,
    })
}

/// A `CommonTlsContext`. Errors are relative paths (`tls_params: unsupported`).
// The older provider-instance fields are deprecated in Envoy, but istiod and Traffic
// Director send them and gRPC reads them (A29).
#[allow(deprecated)]
fn common_tls_context(
    c: &CommonTlsContext,
    side: Side,
    ctx: &ValidationContext,
) -> Result<Common, String> {
    if c.tls_params.is_some() {
        return Err("tls_params: unsupported".into());
    }
    if c.custom_handshaker.is_some() {
        return Err("custom_handshaker: unsupported".into());
    }
    let identity = if let Some(p) = &c.tls_certificate_provider_instance {
        Some(
            instance(&p.instance_name, &p.certificate_name, ctx)
                .map_err(|e| format!("tls_certificate_provider_instance{e}"))?,
        )
    } else if let Some(p) = &c.tls_certificate_certificate_provider_instance {
        Some(
            instance(&p.instance_name, &p.certificate_name, ctx)
                .map_err(|e| format!("tls_certificate_certificate_provider_instance{e}"))?,
        )
    } else if !c.tls_certificates.is_empty() {
        return Err(unsupported_identity("tls_certificates"));
    } else if !c.tls_certificate_sds_secret_configs.is_empty() {
        return Err(unsupported_identity("tls_certificate_sds_secret_configs"));
    } else if c.tls_certificate_certificate_provider.is_some() {
        return Err(unsupported_identity("tls_certificate_certificate_provider"));
    } else {
        None
    };
    let (roots, san_matchers) = match &c.validation_context_type {
        None => (None, Vec::new()),
        Some(ValidationContextType::ValidationContext(v)) => {
            let sans = certificate_validation_context(v, side)
                .map_err(|e| format!("validation_context.{e}"))?;
            let p = v.ca_certificate_provider_instance.as_ref().ok_or_else(|| {
                let hint = if v.system_root_certs.is_some() {
                    " (system_root_certs is not supported)"
                } else {
                    ""
                };
                format!("validation_context.ca_certificate_provider_instance: missing{hint}")
            })?;
            let roots = instance(&p.instance_name, &p.certificate_name, ctx)
                .map_err(|e| format!("validation_context.ca_certificate_provider_instance{e}"))?;
            (Some(roots), sans)
        }
        Some(ValidationContextType::CombinedValidationContext(cc)) => {
            const PATH: &str = "combined_validation_context";
            let default = cc.default_validation_context.as_ref();
            let sans = match default {
                Some(v) => certificate_validation_context(v, side)
                    .map_err(|e| format!("{PATH}.default_validation_context.{e}"))?,
                None => Vec::new(),
            };
            let roots = if let Some(p) =
                default.and_then(|v| v.ca_certificate_provider_instance.as_ref())
            {
                Some(
                    instance(&p.instance_name, &p.certificate_name, ctx).map_err(|e| {
                        format!(
                            "{PATH}.default_validation_context.ca_certificate_provider_instance{e}"
                        )
                    })?,
                )
            } else if let Some(p) = &cc.validation_context_certificate_provider_instance {
                Some(
                    instance(&p.instance_name, &p.certificate_name, ctx).map_err(|e| {
                        format!("{PATH}.validation_context_certificate_provider_instance{e}")
                    })?,
                )
            } else if cc.validation_context_sds_secret_config.is_some() {
                return Err(format!(
                    "{PATH}.validation_context_sds_secret_config: unsupported (want a certificate provider instance)"
                ));
            } else if cc.validation_context_certificate_provider.is_some() {
                return Err(format!(
                    "{PATH}.validation_context_certificate_provider: unsupported (want a certificate provider instance)"
                ));
            } else if default.is_some_and(|v| v.system_root_certs.is_some()) {
                return Err(format!(
                    "{PATH}.default_validation_context.system_root_certs: unsupported (want ca_certificate_provider_instance)"
                ));
            } else {
                None
            };
            (roots, sans)
        }
        Some(ValidationContextType::ValidationContextSdsSecretConfig(_)) => {
            return Err(
                "validation_context_sds_secret_config: unsupported (want a certificate provider instance)"
                    .into(),
            );
        }
        Some(ValidationContextType::ValidationContextCertificateProvider(_)) => {
            return Err(
                "validation_context_certificate_provider: unsupported (want a certificate provider instance)"
                    .into(),
            );
        }
        Some(ValidationContextType::ValidationContextCertificateProviderInstance(p)) => {
            let roots = instance(&p.instance_name, &p.certificate_name, ctx)
                .map_err(|e| format!("validation_context_certificate_provider_instance{e}"))?;
            (Some(roots), Vec::new())
        }
    };
    Ok(Common {
        identity,
        roots,
        san_matchers,
    })
}

/// The NACK of an identity source standing in for a provider instance.
fn unsupported_identity(field: &str) -> String {
    format!(
        "{field}: unsupported (gRPC takes certificates only from tls_certificate_provider_instance)"
    )
}

/// A provider instance reference. Errors start with `.` (`.instance_name: empty`).
fn instance(
    instance_name: &str,
    certificate_name: &str,
    ctx: &ValidationContext,
) -> Result<CertProviderInstance, String> {
    if instance_name.is_empty() {
        return Err(".instance_name: empty".into());
    }
    ctx.check_cert_provider_instance(instance_name)
        .map_err(|e| format!(".instance_name: {e}"))?;
    Ok(CertProviderInstance {
        instance_name: instance_name.to_string(),
        certificate_name: certificate_name.to_string(),
    })
}

/// The checks of a `CertificateValidationContext` and its SAN matchers. Errors are
/// relative paths (`crl: unsupported`).
// match_subject_alt_names is deprecated in favour of the typed list; gRPC reads it (A29).
#[allow(deprecated)]
fn certificate_validation_context(
    v: &CertificateValidationContext,
    side: Side,
) -> Result<Vec<SanMatcher>, String> {
    let unsupported = [
        (
            "verify_certificate_spki",
            !v.verify_certificate_spki.is_empty(),
        ),
        (
            "verify_certificate_hash",
            !v.verify_certificate_hash.is_empty(),
        ),
        (
            "require_signed_certificate_timestamp",
            v.require_signed_certificate_timestamp
                .as_ref()
                .is_some_and(|b| b.value),
        ),
        ("crl", v.crl.is_some()),
        (
            "custom_validator_config",
            v.custom_validator_config.is_some(),
        ),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(format!("{field}: unsupported"));
    }
    let mut matchers = Vec::new();
    for (i, m) in v.match_subject_alt_names.iter().enumerate() {
        let matcher = super::matcher::string_matcher(m)
            .map_err(|e| format!("match_subject_alt_names[{i}].{e}"))?;
        matchers.push(SanMatcher {
            san_type: None,
            matcher,
        });
    }
    for (i, m) in v.match_typed_subject_alt_names.iter().enumerate() {
        matchers.push(
            typed_san_matcher(m).map_err(|e| format!("match_typed_subject_alt_names[{i}].{e}"))?,
        );
    }
    if side == Side::Server && !matchers.is_empty() {
        let field = if v.match_subject_alt_names.is_empty() {
            "match_typed_subject_alt_names"
        } else {
            "match_subject_alt_names"
        };
        return Err(format!("{field}: unsupported on the server"));
    }
    Ok(matchers)
}

/// One `SubjectAltNameMatcher`: DNS or URI only. Errors are relative paths.
fn typed_san_matcher(m: &SubjectAltNameMatcher) -> Result<SanMatcher, String> {
    let san_type = match SanTypeProto::try_from(m.san_type) {
        Ok(SanTypeProto::Dns) => SanType::Dns,
        Ok(SanTypeProto::Uri) => SanType::Uri,
        Ok(other) => {
            return Err(format!(
                "san_type: unsupported {} (only DNS and URI)",
                other.as_str_name()
            ));
        }
        Err(_) => return Err(format!("san_type: unknown value {}", m.san_type)),
    };
    let matcher = m.matcher.as_ref().ok_or("matcher: missing")?;
    Ok(SanMatcher {
        san_type: Some(san_type),
        matcher: super::matcher::string_matcher(matcher).map_err(|e| format!("matcher.{e}"))?,
    })
}

#[cfg(test)]
#[allow(deprecated)] // the older provider-instance fields are what istiod sends
pub(crate) mod tests {
    use super::*;
    use crate::config::{Cluster, ServerListener, TransportSocket};
    use crate::xds::resource::testing::{Expect, Expect::*, run, run_with};
    use crate::xds::resource::{Resource, ResourceType};
    use xds_proto::any::pack;
    use xds_proto::envoy::envoy::config::core::v3::{DataSource, TypedExtensionConfig};
    use xds_proto::envoy::envoy::extensions::transport_sockets::tls::v3::{
        CertificateProviderPluginInstance, SdsSecretConfig, TlsCertificate, TlsParameters,
        certificate_validation_context::SystemRootCerts,
        common_tls_context::{CertificateProviderInstance, CombinedCertificateValidationContext},
    };
    use xds_proto::envoy::envoy::r#type::matcher::v3::{
        RegexMatcher, StringMatcher as StringMatcherProto, string_matcher::MatchPattern,
    };
    use xds_proto::protobuf::BoolValue;

    const SPIFFE_ID: &str = "spiffe://cluster.local/ns/default/sa/greeter";

    fn old_instance(certificate_name: &str) -> CertificateProviderInstance {
        CertificateProviderInstance {
            instance_name: "default".into(),
            certificate_name: certificate_name.into(),
        }
    }

    fn plugin(instance_name: &str, certificate_name: &str) -> CertificateProviderPluginInstance {
        CertificateProviderPluginInstance {
            instance_name: instance_name.into(),
            certificate_name: certificate_name.into(),
        }
    }

    fn exact(s: &str) -> StringMatcherProto {
        StringMatcherProto {
            match_pattern: Some(MatchPattern::Exact(s.into())),
            ignore_case: false,
        }
    }

    /// istiod's proxyless CommonTlsContext: the older instance fields, provider `default`
    /// with certificate names `default` (identity) and `ROOTCA` (roots), SANs in the
    /// combined context's default validation context.
    pub(crate) fn istio_common(sans: Vec<StringMatcherProto>) -> CommonTlsContext {
        CommonTlsContext {
            tls_certificate_certificate_provider_instance: Some(old_instance("default")),
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_subject_alt_names: sans,
                        ..Default::default()
                    }),
                    validation_context_certificate_provider_instance: Some(old_instance("ROOTCA")),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    /// The newer shape: `tls_certificate_provider_instance` and
    /// `validation_context.ca_certificate_provider_instance`.
    fn new_common() -> CommonTlsContext {
        CommonTlsContext {
            tls_certificate_provider_instance: Some(plugin("default", "default")),
            validation_context_type: Some(ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    ca_certificate_provider_instance: Some(plugin("default", "ROOTCA")),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    fn socket(any: Any) -> TransportSocketProto {
        TransportSocketProto {
            name: TLS_TRANSPORT_SOCKET_NAME.into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(any)),
        }
    }

    /// A cluster named `name` with the newer-shape TLS context naming `instance_name` for
    /// both identity and roots.
    pub(crate) fn tls_cluster(name: &str, instance_name: &str) -> Any {
        let mut c = super::super::cluster::tests::eds();
        c.name = name.into();
        c.transport_socket = Some(socket(pack(&UpstreamTlsContext {
            common_tls_context: Some(CommonTlsContext {
                tls_certificate_provider_instance: Some(plugin(instance_name, "")),
                validation_context_type: Some(ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        ca_certificate_provider_instance: Some(plugin(instance_name, "")),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            ..Default::default()
        })));
        pack(&c)
    }

    fn cluster_with(ts: TransportSocketProto) -> Any {
        let mut c = super::super::cluster::tests::eds();
        c.transport_socket = Some(ts);
        pack(&c)
    }

    /// A cluster whose UpstreamTlsContext is Istio's, changed by `f`.
    fn upstream_with(f: impl FnOnce(&mut UpstreamTlsContext)) -> Any {
        let mut u = UpstreamTlsContext {
            common_tls_context: Some(istio_common(vec![exact(SPIFFE_ID)])),
            ..Default::default()
        };
        f(&mut u);
        cluster_with(socket(pack(&u)))
    }

    /// A cluster whose CommonTlsContext is Istio's, changed by `f`.
    fn common_with(f: impl FnOnce(&mut CommonTlsContext)) -> Any {
        upstream_with(|u| {
            if let Some(c) = u.common_tls_context.as_mut() {
                f(c)
            }
        })
    }

    /// A cluster with the newer shape, its validation context changed by `f`.
    fn cvc_with(f: impl FnOnce(&mut CertificateValidationContext)) -> Any {
        let mut c = new_common();
        if let Some(ValidationContextType::ValidationContext(v)) =
            c.validation_context_type.as_mut()
        {
            f(v);
        }
        cluster_with(socket(pack(&UpstreamTlsContext {
            common_tls_context: Some(c),
            ..Default::default()
        })))
    }

    fn sans(sans: Vec<StringMatcherProto>) -> Any {
        common_with(|c| *c = istio_common(sans))
    }

    fn tls(c: &Cluster) -> Option<&config::UpstreamTls> {
        c.tls.as_ref()
    }

    fn client_rows() -> Vec<(&'static str, Any, Expect<Cluster>)> {
        vec![
            (
                // A29: istiod's proxyless UpstreamTlsContext (older instance fields,
                // `default` provider, ROOTCA roots, exact SAN on the SPIFFE ID).
                "istio upstream mtls",
                upstream_with(|_| {}),
                Accepted(|c| {
                    tls(c).is_some_and(|t| {
                        t.identity.as_ref().is_some_and(|i| {
                            i.instance_name == "default" && i.certificate_name == "default"
                        }) && t.roots.instance_name == "default"
                            && t.roots.certificate_name == "ROOTCA"
                            && t.san_matchers.len() == 1
                            && t.san_matchers[0].matches(SPIFFE_ID)
                            && !t.san_matchers[0]
                                .matches("spiffe://cluster.local/ns/default/sa/other")
                            && t.sni.is_none()
                    })
                }),
            ),
            (
                // A29: the newer CertificateProviderPluginInstance fields.
                "new fields",
                cluster_with(socket(pack(&UpstreamTlsContext {
                    common_tls_context: Some(new_common()),
                    ..Default::default()
                }))),
                Accepted(|c| {
                    tls(c).is_some_and(|t| {
                        t.identity.is_some() && t.roots.certificate_name == "ROOTCA"
                    })
                }),
            ),
            (
                // A29: ca_certificate_provider_instance inside the combined context.
                "combined with ca_certificate_provider_instance",
                common_with(|c| {
                    c.validation_context_type =
                        Some(ValidationContextType::CombinedValidationContext(
                            CombinedCertificateValidationContext {
                                default_validation_context: Some(CertificateValidationContext {
                                    ca_certificate_provider_instance: Some(plugin("td", "roots")),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                        ))
                }),
                Accepted(|c| tls(c).is_some_and(|t| t.roots.instance_name == "td")),
            ),
            (
                // A29: Traffic Director's older shape: the top-level
                // validation_context_certificate_provider_instance.
                "td older top-level instance",
                common_with(|c| {
                    c.validation_context_type = Some(
                        ValidationContextType::ValidationContextCertificateProviderInstance(
                            CertificateProviderInstance {
                                instance_name: "td".into(),
                                certificate_name: String::new(),
                            },
                        ),
                    )
                }),
                Accepted(|c| {
                    tls(c)
                        .is_some_and(|t| t.roots.instance_name == "td" && t.san_matchers.is_empty())
                }),
            ),
            (
                // A29: TLS without a client certificate (roots only).
                "tls without identity",
                common_with(|c| c.tls_certificate_certificate_provider_instance = None),
                Accepted(|c| tls(c).is_some_and(|t| t.identity.is_none())),
            ),
            (
                // grpc-go: a provider instance wins over an ignored tls_certificates.
                "tls_certificates beside a provider instance",
                common_with(|c| c.tls_certificates = vec![TlsCertificate::default()]),
                Ignored("tls_certificates", |c| {
                    tls(c).is_some_and(|t| t.identity.is_some())
                }),
            ),
            (
                // A101 draft / grpc-go: sni is recorded.
                "sni",
                upstream_with(|u| u.sni = "greeter.default.svc".into()),
                Accepted(|c| {
                    tls(c).is_some_and(|t| t.sni.as_deref() == Some("greeter.default.svc"))
                }),
            ),
            (
                // grpc-go: sni is at most 255 bytes.
                "sni too long",
                upstream_with(|u| u.sni = "a".repeat(256)),
                Nack("transport_socket.typed_config.sni: 256 bytes, longer than 255"),
            ),
            (
                // grpc-go: the transport socket must be named envoy.transport_sockets.tls.
                "wrong name",
                cluster_with(TransportSocketProto {
                    name: "tls".into(),
                    ..socket(pack(&UpstreamTlsContext::default()))
                }),
                Nack("transport_socket.name: \"tls\" is not \"envoy.transport_sockets.tls\""),
            ),
            (
                // A29: a cluster's TLS context is an UpstreamTlsContext.
                "downstream context in a cluster",
                cluster_with(socket(pack(&DownstreamTlsContext::default()))),
                Nack(
                    "transport_socket.typed_config: unsupported transport socket type \"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\", want UpstreamTlsContext",
                ),
            ),
            (
                // A29: common_tls_context is required.
                "no common_tls_context",
                upstream_with(|u| u.common_tls_context = None),
                Nack("transport_socket.typed_config.common_tls_context: missing"),
            ),
            (
                // A29: tls_params NACKs.
                "tls_params",
                common_with(|c| c.tls_params = Some(TlsParameters::default())),
                Nack("transport_socket.typed_config.common_tls_context.tls_params: unsupported"),
            ),
            (
                // A29: custom_handshaker NACKs.
                "custom_handshaker",
                common_with(|c| c.custom_handshaker = Some(TypedExtensionConfig::default())),
                Nack("common_tls_context.custom_handshaker: unsupported"),
            ),
            (
                // A29: tls_certificates instead of a provider instance NACKs.
                "tls_certificates",
                common_with(|c| {
                    c.tls_certificate_certificate_provider_instance = None;
                    c.tls_certificates = vec![TlsCertificate::default()];
                }),
                Nack("common_tls_context.tls_certificates: unsupported"),
            ),
            (
                // A29: SDS for the identity NACKs.
                "tls_certificate_sds_secret_configs",
                common_with(|c| {
                    c.tls_certificate_certificate_provider_instance = None;
                    c.tls_certificate_sds_secret_configs = vec![SdsSecretConfig::default()];
                }),
                Nack("common_tls_context.tls_certificate_sds_secret_configs: unsupported"),
            ),
            (
                // A29: SDS for the validation context NACKs.
                "validation_context_sds_secret_config",
                common_with(|c| {
                    c.validation_context_type =
                        Some(ValidationContextType::ValidationContextSdsSecretConfig(
                            SdsSecretConfig::default(),
                        ))
                }),
                Nack("common_tls_context.validation_context_sds_secret_config: unsupported"),
            ),
            (
                // A29: SDS in the combined context, with no provider instance, NACKs.
                "combined validation_context_sds_secret_config",
                common_with(|c| {
                    c.validation_context_type =
                        Some(ValidationContextType::CombinedValidationContext(
                            CombinedCertificateValidationContext {
                                validation_context_sds_secret_config: Some(
                                    SdsSecretConfig::default(),
                                ),
                                ..Default::default()
                            },
                        ))
                }),
                Nack(
                    "common_tls_context.combined_validation_context.validation_context_sds_secret_config: unsupported",
                ),
            ),
            (
                // A29: a client needs a root provider instance.
                "client without roots",
                common_with(|c| c.validation_context_type = None),
                Nack(
                    "transport_socket.typed_config.common_tls_context: no root certificate provider instance",
                ),
            ),
            (
                // A29: a validation_context must name its CA provider instance.
                "validation_context without ca instance",
                cvc_with(|v| v.ca_certificate_provider_instance = None),
                Nack(
                    "common_tls_context.validation_context.ca_certificate_provider_instance: missing",
                ),
            ),
            (
                // A82 (not implemented): system roots do not replace a CA instance.
                "system_root_certs",
                cvc_with(|v| {
                    v.ca_certificate_provider_instance = None;
                    v.system_root_certs = Some(SystemRootCerts {});
                }),
                Nack(
                    "ca_certificate_provider_instance: missing (system_root_certs is not supported)",
                ),
            ),
            (
                // A29: verify_certificate_spki NACKs.
                "verify_certificate_spki",
                cvc_with(|v| v.verify_certificate_spki = vec!["x".into()]),
                Nack("common_tls_context.validation_context.verify_certificate_spki: unsupported"),
            ),
            (
                // A29: verify_certificate_hash NACKs.
                "verify_certificate_hash",
                cvc_with(|v| v.verify_certificate_hash = vec!["ab".into()]),
                Nack("validation_context.verify_certificate_hash: unsupported"),
            ),
            (
                // A29: require_signed_certificate_timestamp NACKs.
                "require_signed_certificate_timestamp",
                cvc_with(|v| {
                    v.require_signed_certificate_timestamp = Some(BoolValue { value: true })
                }),
                Nack("validation_context.require_signed_certificate_timestamp: unsupported"),
            ),
            (
                // A29: crl NACKs.
                "crl",
                cvc_with(|v| v.crl = Some(DataSource::default())),
                Nack("validation_context.crl: unsupported"),
            ),
            (
                // A29: custom_validator_config NACKs.
                "custom_validator_config",
                cvc_with(|v| v.custom_validator_config = Some(TypedExtensionConfig::default())),
                Nack("validation_context.custom_validator_config: unsupported"),
            ),
            (
                // A29: the unsupported fields NACK in the combined context too.
                "crl in combined default_validation_context",
                common_with(|c| {
                    if let Some(ValidationContextType::CombinedValidationContext(cc)) =
                        c.validation_context_type.as_mut()
                        && let Some(v) = cc.default_validation_context.as_mut()
                    {
                        v.crl = Some(DataSource::default());
                    }
                }),
                Nack("combined_validation_context.default_validation_context.crl: unsupported"),
            ),
            (
                // A29: the identity instance must be in the bootstrap.
                "unknown identity instance",
                common_with(|c| {
                    c.tls_certificate_certificate_provider_instance =
                        Some(CertificateProviderInstance {
                            instance_name: "vault".into(),
                            certificate_name: String::new(),
                        })
                }),
                Nack(
                    "common_tls_context.tls_certificate_certificate_provider_instance.instance_name: unknown certificate provider instance \"vault\" (not in the bootstrap's certificate_providers)",
                ),
            ),
            (
                // A29: the root instance must be in the bootstrap.
                "unknown root instance",
                cvc_with(|v| v.ca_certificate_provider_instance = Some(plugin("vault", ""))),
                Nack(
                    "validation_context.ca_certificate_provider_instance.instance_name: unknown certificate provider instance \"vault\"",
                ),
            ),
            (
                // A29: an instance needs a name.
                "empty instance name",
                common_with(|c| c.tls_certificate_provider_instance = Some(plugin("", ""))),
                Nack("common_tls_context.tls_certificate_provider_instance.instance_name: empty"),
            ),
            (
                // A29 match_subject_alt_names: every StringMatcher kind, ignore_case.
                "san matcher kinds",
                sans(vec![
                    StringMatcherProto {
                        match_pattern: Some(MatchPattern::Prefix("SPIFFE://cluster.local/".into())),
                        ignore_case: true,
                    },
                    StringMatcherProto {
                        match_pattern: Some(MatchPattern::Suffix("/sa/greeter".into())),
                        ignore_case: false,
                    },
                    StringMatcherProto {
                        match_pattern: Some(MatchPattern::Contains("/ns/prod/".into())),
                        ignore_case: false,
                    },
                    StringMatcherProto {
                        match_pattern: Some(MatchPattern::SafeRegex(RegexMatcher {
                            regex: r"[a-z]+\.example\.com".into(),
                            ..Default::default()
                        })),
                        ignore_case: false,
                    },
                ]),
                Accepted(|c| {
                    let Some(t) = tls(c) else { return false };
                    let hits = |v: &str| t.san_matchers.iter().filter(|m| m.matches(v)).count();
                    t.san_matchers.len() == 4
                        && hits("spiffe://cluster.local/ns/x/sa/y") == 1
                        && hits("spiffe://other/ns/x/sa/greeter") == 1
                        && hits("spiffe://other/ns/prod/sa/y") == 1
                        && hits("api.example.com") == 1
                        && hits("api.example.com.evil") == 0
                }),
            ),
            (
                // A63 (via A29): an invalid SAN regex NACKs with its index.
                "san matcher bad regex",
                sans(vec![StringMatcherProto {
                    match_pattern: Some(MatchPattern::SafeRegex(RegexMatcher {
                        regex: "(".into(),
                        ..Default::default()
                    })),
                    ignore_case: false,
                }]),
                Nack(
                    "default_validation_context.match_subject_alt_names[0].safe_regex: invalid regex",
                ),
            ),
            (
                // A87/Envoy: a typed URI matcher applies to URI SANs only.
                "typed uri san",
                cvc_with(|v| {
                    v.match_typed_subject_alt_names = vec![SubjectAltNameMatcher {
                        san_type: SanTypeProto::Uri as i32,
                        matcher: Some(exact(SPIFFE_ID)),
                        oid: String::new(),
                    }]
                }),
                Accepted(|c| {
                    tls(c).is_some_and(|t| {
                        t.san_matchers.len() == 1
                            && t.san_matchers[0].matches_san(SanType::Uri, SPIFFE_ID)
                            && !t.san_matchers[0].matches_san(SanType::Dns, SPIFFE_ID)
                    })
                }),
            ),
            (
                // Ours: typed SAN matchers other than DNS and URI NACK.
                "typed email san",
                cvc_with(|v| {
                    v.match_typed_subject_alt_names = vec![SubjectAltNameMatcher {
                        san_type: SanTypeProto::Email as i32,
                        matcher: Some(exact("a@b")),
                        oid: String::new(),
                    }]
                }),
                Nack(
                    "match_typed_subject_alt_names[0].san_type: unsupported EMAIL (only DNS and URI)",
                ),
            ),
        ]
    }

    #[test]
    fn upstream_tls_table() {
        run_with(
            ResourceType::Cluster,
            &ValidationContext::with_cert_provider_instances(["default", "td"]),
            client_rows(),
            |r| match r {
                Resource::Cluster(c) => Some(c),
                _ => None,
            },
        );
    }

    /// A server listener whose first (mTLS) chain has this DownstreamTlsContext.
    fn downstream_with(f: impl FnOnce(&mut DownstreamTlsContext)) -> Any {
        let mut d = DownstreamTlsContext {
            common_tls_context: Some(istio_common(vec![])),
            require_client_certificate: Some(BoolValue { value: true }),
            ..Default::default()
        };
        f(&mut d);
        let mut l = super::super::server_listener::tests::istio();
        if let Some(c) = l.filter_chains.first_mut() {
            c.transport_socket = Some(socket(pack(&d)));
        }
        pack(&l)
    }

    fn server_common_with(f: impl FnOnce(&mut CommonTlsContext)) -> Any {
        downstream_with(|d| {
            if let Some(c) = d.common_tls_context.as_mut() {
                f(c)
            }
        })
    }

    fn chain_tls(l: &ServerListener) -> Option<&config::DownstreamTls> {
        match &l.filter_chains.first()?.transport {
            TransportSocket::Tls(t) => Some(t),
            TransportSocket::Plaintext => None,
        }
    }

    fn server_rows() -> Vec<(&'static str, Any, Expect<ServerListener>)> {
        vec![
            (
                // A29: istiod's STRICT inbound mTLS context.
                "istio downstream mtls",
                downstream_with(|_| {}),
                Accepted(|l| {
                    chain_tls(l).is_some_and(|t| {
                        t.require_client_certificate
                            && t.identity.certificate_name == "default"
                            && t.roots
                                .as_ref()
                                .is_some_and(|r| r.certificate_name == "ROOTCA")
                    })
                }),
            ),
            (
                // A29: the newer fields on the server.
                "new fields",
                downstream_with(|d| d.common_tls_context = Some(new_common())),
                Accepted(|l| chain_tls(l).is_some_and(|t| t.roots.is_some())),
            ),
            (
                // A29: TLS without client certificates needs only the identity.
                "tls only",
                downstream_with(|d| {
                    d.require_client_certificate = None;
                    if let Some(c) = d.common_tls_context.as_mut() {
                        c.validation_context_type = None;
                    }
                }),
                Accepted(|l| {
                    chain_tls(l).is_some_and(|t| !t.require_client_certificate && t.roots.is_none())
                }),
            ),
            (
                // A29: a server needs an identity provider instance.
                "server without identity",
                server_common_with(|c| c.tls_certificate_certificate_provider_instance = None),
                Nack(
                    "filter_chains[0].transport_socket.typed_config.common_tls_context: no identity certificate provider instance",
                ),
            ),
            (
                // A29: require_client_certificate without a validation context NACKs.
                "require_client_certificate without validation context",
                server_common_with(|c| c.validation_context_type = None),
                Nack(
                    "filter_chains[0].transport_socket.typed_config.require_client_certificate: true without a validation context",
                ),
            ),
            (
                // A29: a strict OCSP policy NACKs.
                "ocsp strict stapling",
                downstream_with(|d| d.ocsp_staple_policy = OcspStaplePolicy::StrictStapling as i32),
                Nack(
                    "transport_socket.typed_config.ocsp_staple_policy: unsupported value STRICT_STAPLING, want LENIENT_STAPLING",
                ),
            ),
            (
                // A29: require_sni NACKs.
                "require_sni",
                downstream_with(|d| d.require_sni = Some(BoolValue { value: true })),
                Nack("transport_socket.typed_config.require_sni: must not be true"),
            ),
            (
                // grpc-go: SAN matchers are not supported on servers.
                "server san matchers",
                downstream_with(|d| {
                    d.common_tls_context = Some(istio_common(vec![exact(SPIFFE_ID)]))
                }),
                Nack(
                    "default_validation_context.match_subject_alt_names: unsupported on the server",
                ),
            ),
            (
                // A29: the server's identity instance must be in the bootstrap.
                "unknown server identity instance",
                server_common_with(|c| {
                    c.tls_certificate_certificate_provider_instance = None;
                    c.tls_certificate_provider_instance = Some(plugin("vault", "x"));
                }),
                Nack(
                    "common_tls_context.tls_certificate_provider_instance.instance_name: unknown certificate provider instance \"vault\"",
                ),
            ),
            (
                // A29: common_tls_context is required on the server too.
                "server no common_tls_context",
                downstream_with(|d| d.common_tls_context = None),
                Nack("filter_chains[0].transport_socket.typed_config.common_tls_context: missing"),
            ),
            (
                // A29: tls_params NACKs on the server too.
                "server tls_params",
                server_common_with(|c| c.tls_params = Some(TlsParameters::default())),
                Nack("common_tls_context.tls_params: unsupported"),
            ),
            (
                // grpc-go: the TLS transport socket's name is checked on servers too.
                "server wrong name",
                {
                    let mut l = super::super::server_listener::tests::istio();
                    if let Some(ts) = l
                        .filter_chains
                        .first_mut()
                        .and_then(|c| c.transport_socket.as_mut())
                    {
                        ts.name = "tls".into();
                    }
                    pack(&l)
                },
                Nack("filter_chains[0].transport_socket.name: \"tls\" is not"),
            ),
        ]
    }

    #[test]
    fn downstream_tls_table() {
        run_with(
            ResourceType::Listener,
            &ValidationContext::with_cert_provider_instances(["default"]),
            server_rows(),
            |r| match r {
                Resource::ServerListener(l) => Some(l),
                _ => None,
            },
        );
    }

    #[test]
    fn unknown_instances_pass_without_a_bootstrap_check() {
        // `decode` (no ValidationContext) does not look instances up; `decode_with` does.
        let any = common_with(|c| c.tls_certificate_provider_instance = Some(plugin("vault", "")));
        run(
            ResourceType::Cluster,
            vec![(
                "unchecked",
                any.clone(),
                Accepted(|c: &Cluster| {
                    c.tls
                        .as_ref()
                        .and_then(|t| t.identity.as_ref())
                        .is_some_and(|i| i.instance_name == "vault")
                }),
            )],
            |r| match r {
                Resource::Cluster(c) => Some(c),
                _ => None,
            },
        );
        // An empty bootstrap map knows no instance at all.
        let empty = ValidationContext::with_cert_provider_instances(Vec::<String>::new());
        let err = crate::xds::resource::decode_with(ResourceType::Cluster, &any, &empty)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("unknown certificate provider instance \"vault\""),
            "{err}"
        );
    }
}
