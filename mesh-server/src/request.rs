//! The per-request path of an xDS-managed server (gRFC A36, A41): canonical path and
//! authority checks → server-side route match (`non_forwarding_action` only) → RBAC
//! filters in listener order (with `RBACPerRoute` overrides, and shadow rules as a dry run)
//! → the caller's [`PeerIdentity`] → telemetry (gRFC A66 server instruments, the handler
//! span as a child of the caller's trace context) → the application's services.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use mesh_client::config::{
    FilterChain, FilterOverride, HttpFilterConfig, PeerCertInfo, PeerSecurity, Rbac, RequestInfo,
    RouteAction, RouteConfig,
};
use mesh_client::telemetry::{ServerCall, Telemetry};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::identity::PeerIdentity;
use crate::path::check_canonical_path;
use crate::stats::ServerStats;

/// The application's services, boxed once at the stage boundary.
pub(crate) type AppService =
    BoxCloneSyncService<Request<tonic::body::Body>, Response<tonic::body::Body>, Infallible>;

/// The server's telemetry and the names of its services.
#[derive(Clone)]
pub(crate) struct CallTelemetry {
    pub telemetry: Telemetry,
    /// Services added to the server (A66: calls to others are recorded as `other`).
    pub services: Arc<[&'static str]>,
}

impl CallTelemetry {
    fn registered(&self, path: &str) -> bool {
        path.strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .is_some_and(|(svc, _)| self.services.contains(&svc))
    }
}

impl Default for CallTelemetry {
    fn default() -> Self {
        CallTelemetry {
            telemetry: Telemetry::disabled(),
            services: Arc::new([]),
        }
    }
}

/// Ends the call's telemetry with the response (its body reports the final status).
fn observed(call: ServerCall, resp: Response<tonic::body::Body>) -> Response<tonic::body::Body> {
    if call.is_enabled() {
        call.observe(resp).map(tonic::body::Body::new)
    } else {
        resp
    }
}

/// Everything one connection needs to serve requests; fixed for the connection's life
/// (new configuration applies to new connections, gRFC A36).
pub(crate) struct ConnContext {
    pub routes: Result<Arc<RouteConfig>, String>,
    /// `(filter instance name, config)` of each RBAC filter, in HCM order.
    pub rbac: Vec<(String, Arc<Rbac>)>,
    pub app: AppService,
    pub peer: PeerIdentity,
    pub stats: Arc<ServerStats>,
    pub node_id: Arc<str>,
    /// The HCM's `max_stream_duration` (gRFC A31 on the server): a call still waiting for
    /// its response headers after this long fails with DEADLINE_EXCEEDED.
    pub max_stream_duration: Option<std::time::Duration>,
    /// `Some` on TLS connections: the peer's verified certificate, if it sent one.
    pub tls_peer: Option<Option<PeerCertInfo>>,
    pub telemetry: CallTelemetry,
}

impl ConnContext {
    pub(crate) fn new(
        chain: &FilterChain,
        routes: Result<Arc<RouteConfig>, String>,
        app: AppService,
        peer: PeerIdentity,
        stats: Arc<ServerStats>,
        node_id: Arc<str>,
    ) -> Self {
        let rbac = chain
            .http
            .http_filters
            .iter()
            .filter_map(|f| match &f.config {
                HttpFilterConfig::Rbac(r) => Some((f.name.clone(), r.clone())),
                // Fault filters are dropped or NACKed on server listeners (gRFC A33).
                HttpFilterConfig::Router | HttpFilterConfig::Fault(_) => None,
            })
            .collect();
        ConnContext {
            routes,
            rbac,
            app,
            peer,
            stats,
            node_id,
            max_stream_duration: chain.http.max_stream_duration,
            tls_peer: None,
            telemetry: CallTelemetry::default(),
        }
    }

    fn status(&self, status: tonic::Status) -> Box<Response<tonic::body::Body>> {
        Box::new(status.into_http())
    }

    fn unavailable(&self, what: impl std::fmt::Display) -> Box<Response<tonic::body::Body>> {
        self.status(tonic::Status::unavailable(format!(
            "{what} (xDS node \"{}\")",
            self.node_id
        )))
    }

    /// Decides a request; `Ok` carries the request on to the application.
    fn admit(
        &self,
        mut req: Request<tonic::body::Body>,
    ) -> Result<Request<tonic::body::Body>, Box<Response<tonic::body::Body>>> {
        // The query is part of what is checked: gRPC paths never carry one.
        let full = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
        if let Err(e) = check_canonical_path(full) {
            ServerStats::inc(&self.stats.bad_paths);
            return Err(self.status(tonic::Status::invalid_argument(e.to_string())));
        }
        let authority = match authority_of(&req) {
            Ok(a) => a,
            Err(e) => {
                ServerStats::inc(&self.stats.bad_paths);
                return Err(self.status(tonic::Status::invalid_argument(e)));
            }
        };
        let path = req.uri().path();
        let routes = match &self.routes {
            Ok(r) => r,
            Err(e) => {
                ServerStats::inc(&self.stats.no_route);
                return Err(self.unavailable(e));
            }
        };
        let Some(vhost) = routes.find_virtual_host(&authority) else {
            ServerStats::inc(&self.stats.no_route);
            return Err(self.unavailable(format!(
                "route_config \"{}\": no virtual host matches \"{authority}\"",
                routes.name
            )));
        };
        let Some(route) = vhost
            .routes
            .iter()
            .find(|r| r.matcher.matches(path, req.headers(), 0))
        else {
            ServerStats::inc(&self.stats.no_route);
            return Err(self.unavailable(format!(
                "route_config \"{}\": no route matches {path}",
                routes.name
            )));
        };
        if route.action != RouteAction::NonForwarding {
            // gRFC A36: only non_forwarding_action is valid on a server.
            ServerStats::inc(&self.stats.no_route);
            return Err(self.unavailable(format!(
                "route_config \"{}\": the matched route is not a non_forwarding_action route",
                routes.name
            )));
        }

        for (filter_name, filter_rbac) in &self.rbac {
            let overridden = route
                .filter_overrides
                .get(filter_name)
                .or_else(|| vhost.filter_overrides.get(filter_name));
            let rbac = match overridden {
                Some(FilterOverride::Rbac(None)) => continue,
                Some(FilterOverride::Rbac(Some(r))) => r,
                // An override of another filter's type under this RBAC filter's name.
                Some(FilterOverride::Fault(_)) | None => filter_rbac,
            };
            let mut info = RequestInfo::new(path, req.headers());
            info.method = req.method().as_str();
            info.authority = Some(&authority);
            info.peer_addr = Some(self.peer.addr);
            info.local_addr = Some(self.peer.local_addr);
            info.security = match &self.tls_peer {
                None => PeerSecurity::Plaintext,
                Some(cert) => PeerSecurity::Tls(cert.as_ref()),
            };
            let decision = rbac.evaluate(&info);
            if let Some(shadow) = &decision.shadow {
                self.telemetry
                    .telemetry
                    .record_rbac_shadow(filter_name, shadow.allowed);
                ServerStats::inc(if shadow.allowed {
                    &self.stats.shadow_allowed
                } else {
                    &self.stats.shadow_denied
                });
                tracing::info!(
                    target: "mesh_server::rbac::shadow",
                    filter = %filter_name,
                    path,
                    peer = %self.peer.addr,
                    would_allow = shadow.allowed,
                    policy = shadow.matched_policy.unwrap_or("<none>"),
                    "RBAC shadow decision (dry run, not enforced)"
                );
            }
            if !decision.allowed {
                ServerStats::inc(&self.stats.rbac_denied);
                tracing::debug!(
                    filter = %filter_name,
                    path,
                    peer = %self.peer.addr,
                    policy = decision.matched_policy.unwrap_or("<none>"),
                    "RBAC denied"
                );
                return Err(self.status(tonic::Status::permission_denied(format!(
                    "RBAC: access denied by filter \"{filter_name}\"{}",
                    decision
                        .matched_policy
                        .map(|p| format!(" (policy \"{p}\")"))
                        .unwrap_or_default()
                ))));
            }
            ServerStats::inc(&self.stats.rbac_allowed);
        }
        req.extensions_mut().insert(self.peer.clone());
        Ok(req)
    }
}

/// The request's authority: `:authority`, else a single `host` header, lower-cased
/// (compared case-insensitively). Duplicate or conflicting `host` headers are refused.
fn authority_of<B>(req: &Request<B>) -> Result<String, String> {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("duplicate host headers".into());
    }
    let host = match host {
        Some(h) => Some(
            h.to_str()
                .map_err(|_| "host header is not visible ASCII".to_string())?
                .to_ascii_lowercase(),
        ),
        None => None,
    };
    match (req.uri().authority(), host) {
        (Some(a), Some(h)) if !a.as_str().eq_ignore_ascii_case(&h) => {
            Err(format!(":authority {:?} and host {h:?} differ", a.as_str()))
        }
        (Some(a), _) => Ok(a.as_str().to_ascii_lowercase()),
        (None, Some(h)) => Ok(h),
        (None, None) => Ok(String::new()),
    }
}

/// The hyper service of one connection.
#[derive(Clone)]
pub(crate) struct ConnService(pub Arc<ConnContext>);

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let ctx = self.0.clone();
        let tele = &ctx.telemetry;
        let call = ServerCall::start_from_peer(
            &tele.telemetry,
            req.uri().path(),
            req.headers(),
            tele.registered(req.uri().path()),
            ctx.peer.spiffe_id.as_deref(),
            ctx.peer.addr,
        );
        let req = req.map(|b| tonic::body::Body::new(call.count_rcvd(b)));
        match ctx.admit(req) {
            Err(resp) => Box::pin(async move { Ok(observed(call, *resp)) }),
            Ok(mut req) => {
                if let Some(cx) = call.remote_context() {
                    // The caller's baggage and trace context, for the handler.
                    req.extensions_mut().insert(cx);
                }
                let app = ctx.app.clone();
                // Inside the server span, or in the caller's unsampled trace context.
                let scope = call.scope();
                let handler = async move {
                    let resp = match ctx.max_stream_duration {
                        None => app.oneshot(req).await,
                        Some(limit) => match tokio::time::timeout(limit, app.oneshot(req)).await {
                            Ok(r) => r,
                            Err(_) => Ok(*ctx.status(tonic::Status::deadline_exceeded(format!(
                                "max_stream_duration of {limit:?} exceeded"
                            )))),
                        },
                    };
                    resp.map(|r| observed(call, r))
                };
                Box::pin(scope.instrument(handler))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(authority: Option<&str>, hosts: &[&str]) -> Request<()> {
        let uri = match authority {
            Some(a) => format!("http://{a}/pkg.Svc/M"),
            None => "/pkg.Svc/M".to_string(),
        };
        let mut b = Request::builder().uri(uri);
        for h in hosts {
            b = b.header(http::header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn authority_is_compared_case_insensitively() {
        assert_eq!(
            authority_of(&req(Some("Greeter.Default:8080"), &[])).unwrap(),
            "greeter.default:8080"
        );
        assert_eq!(
            authority_of(&req(Some("greeter:1"), &["GREETER:1"])).unwrap(),
            "greeter:1"
        );
        assert_eq!(authority_of(&req(None, &["Host:2"])).unwrap(), "host:2");
    }

    #[test]
    fn duplicate_or_conflicting_hosts_are_refused() {
        assert!(
            authority_of(&req(None, &["a", "b"]))
                .unwrap_err()
                .contains("duplicate")
        );
        assert!(
            authority_of(&req(None, &["a", "a"]))
                .unwrap_err()
                .contains("duplicate")
        );
        assert!(
            authority_of(&req(Some("a:1"), &["b:1"]))
                .unwrap_err()
                .contains("differ")
        );
    }
}
