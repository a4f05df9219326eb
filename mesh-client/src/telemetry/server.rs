//! Server-side call tracer (gRFC A66's `ServerCallTracer`): the handler span as a child of
//! the caller's remote span (W3C or B3 trace context), the `grpc.server.*` instruments,
//! and baggage handed on to the handler as an `opentelemetry::Context`.
//!
//! A caller whose trace is not sampled (a valid context with W3C flags `00`, or B3
//! `sampled=0`) gets no `grpc.server` span: with the parent-based samplers OpenTelemetry
//! uses by default (`ParentBased(..)`), a child of an unsampled parent is never sampled,
//! so the span would cost its creation and attributes and never be exported. The caller's
//! context is attached as the current OpenTelemetry context around every poll of the
//! handler ([`ServerCall::instrument`]) instead, so spans the handler opens itself still
//! join the caller's trace (unsampled), and it is still in the request's extensions. An
//! application whose sampler does sample children of unsampled parents loses the server
//! span of such calls; the client makes the same choice (`ClientCall`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use http::{HeaderMap, Response};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{FutureExt as _, TraceContextExt, WithContext};
use pin_project_lite::pin_project;
use tracing::field::Empty;
use tracing::instrument::{Instrument as _, Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::body::{BodyOutcome, CountedBody, ObservedBody};
use super::metrics::{Instruments, LabelSet, Telemetry};
use super::{propagation, split_path};

struct ServerInner {
    instruments: Arc<Instruments>,
    span: tracing::Span,
    start: Instant,
    /// `grpc.method` (and `grpc.status`), built once per method.
    labels: Arc<LabelSet>,
    rcvd: Arc<AtomicU64>,
    /// The caller's trace context and baggage; `None` when it sent neither.
    remote: Option<opentelemetry::Context>,
    /// The caller's trace is not sampled: `span` is `Span::none()` and the handler runs
    /// in `remote` instead.
    unsampled: bool,
}

/// The telemetry of one server call; a no-op when telemetry is disabled.
#[derive(Default)]
pub struct ServerCall {
    inner: Option<ServerInner>,
}

impl std::fmt::Debug for ServerCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCall")
            .field("enabled", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

/// OpenTelemetry's RPC conventions: on a server only these codes make the span an error.
fn server_error(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    )
}

impl ServerCall {
    /// Starts a call for a request to `path` with `headers`, counted in
    /// `grpc.server.call.started`. `registered`: whether the server has the service (A66
    /// records other methods as `other`, so arbitrary paths cannot blow up cardinality).
    pub fn start(
        telemetry: &Telemetry,
        path: &str,
        headers: &HeaderMap,
        registered: bool,
    ) -> ServerCall {
        Self::start_inner(telemetry, path, headers, registered, None)
    }

    /// [`ServerCall::start`] for a caller at `addr` with its verified `identity`: the span
    /// gets `client.address` and `mesh.peer_identity` when it is created (cheaper than
    /// [`ServerCall::set_peer`] afterwards, which records them one by one).
    pub fn start_from_peer(
        telemetry: &Telemetry,
        path: &str,
        headers: &HeaderMap,
        registered: bool,
        identity: Option<&str>,
        addr: std::net::SocketAddr,
    ) -> ServerCall {
        Self::start_inner(telemetry, path, headers, registered, Some((identity, addr)))
    }

    fn start_inner(
        telemetry: &Telemetry,
        path: &str,
        headers: &HeaderMap,
        registered: bool,
        peer: Option<(Option<&str>, std::net::SocketAddr)>,
    ) -> ServerCall {
        let Some(instruments) = &telemetry.inner else {
            return ServerCall::default();
        };
        let (service, method) = match split_path(path) {
            Some(sm) if registered => sm,
            _ => ("other", "other"),
        };
        let full = if service == "other" {
            "other"
        } else {
            path.strip_prefix('/').unwrap_or(path)
        };
        let remote = propagation::extract(headers);
        let unsampled = {
            let span = remote.span();
            let sc = span.span_context();
            sc.is_valid() && !sc.is_sampled()
        };
        let remote = (remote.has_active_span() || !remote.baggage().is_empty()).then_some(remote);
        let span = if unsampled {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                parent: None,
                "grpc.server",
                otel.name = full,
                otel.kind = "server",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
                rpc.grpc.status_code = Empty,
                // `None` leaves a field empty (to be recorded by `set_peer`).
                mesh.peer_identity = peer.and_then(|(identity, _)| identity),
                // Formatted only if the span is enabled.
                client.address = peer.map(|(_, addr)| tracing::field::display(addr.ip())),
            )
        };
        if let Some(cx) = remote.as_ref().filter(|_| !span.is_disabled()) {
            // Only fails when no OpenTelemetry layer is installed; then there is nothing to
            // link.
            let _ = span.set_parent(cx.clone());
        }
        let labels = instruments.server_labels(full);
        instruments.server_call_started.add(1, labels.base());
        ServerCall {
            inner: Some(ServerInner {
                instruments: instruments.clone(),
                span,
                start: Instant::now(),
                labels,
                rcvd: Arc::new(AtomicU64::new(0)),
                remote,
                unsampled,
            }),
        }
    }

    /// Whether anything is recorded.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The handler span: disabled when telemetry is, `Span::none()` when the caller's
    /// trace is not sampled. [`ServerCall::instrument`] runs the handler in it.
    pub fn span(&self) -> tracing::Span {
        self.inner
            .as_ref()
            .map(|i| i.span.clone())
            .unwrap_or_else(tracing::Span::none)
    }

    /// The caller's trace context and baggage, for the handler's request extensions;
    /// `None` when telemetry is disabled or the caller sent neither.
    pub fn remote_context(&self) -> Option<opentelemetry::Context> {
        self.inner.as_ref().and_then(|i| i.remote.clone())
    }

    /// Where the handler runs ([`CallScope::instrument`]): inside the `grpc.server` span,
    /// or, for a caller whose trace is not sampled, with the caller's context as the
    /// current OpenTelemetry context (so `tracing` spans the handler opens under
    /// tracing-opentelemetry are children of the remote span, in its unsampled trace).
    pub fn scope(&self) -> CallScope {
        CallScope(match &self.inner {
            None => Scope::Plain,
            Some(ServerInner {
                unsampled: true,
                remote: Some(cx),
                ..
            }) => Scope::Remote(cx.clone()),
            Some(i) => Scope::Span(i.span.clone()),
        })
    }

    /// The caller's verified identity and address on the span.
    pub fn set_peer(&self, identity: Option<&str>, addr: std::net::SocketAddr) {
        if let Some(i) = self.inner.as_ref().filter(|i| !i.span.is_disabled()) {
            if let Some(id) = identity {
                i.span.record("mesh.peer_identity", id);
            }
            i.span.record("client.address", addr.ip().to_string());
        }
    }

    /// Wraps the request body to count its message bytes (A66 `rcvd_total_...`).
    pub fn count_rcvd<B>(&self, body: B) -> CountedBody<B> {
        CountedBody::new(body, self.inner.as_ref().map(|i| i.rcvd.clone()))
    }

    /// Observes the response: when its body ends (or is dropped) the call is recorded
    /// with the status it carried.
    pub fn observe<B>(self, resp: Response<B>) -> Response<ObservedBody<B>> {
        let Some(inner) = self.inner else {
            return resp.map(ObservedBody::unobserved);
        };
        let (parts, body) = resp.into_parts();
        let body = ObservedBody::new(body, parts.status, &parts.headers, move |o: BodyOutcome| {
            let attrs = inner.labels.with_status(o.code);
            let i = &inner.instruments;
            i.server_call_duration
                .record(inner.start.elapsed().as_secs_f64(), attrs);
            i.server_call_sent.record(o.message_bytes, attrs);
            i.server_call_rcvd
                .record(inner.rcvd.load(Ordering::Relaxed), attrs);
            inner.span.record("rpc.grpc.status_code", o.code as i64);
            if server_error(o.code) {
                inner.span.record("otel.status_code", "ERROR");
            }
        });
        Response::from_parts(parts, body)
    }
}

/// The trace context a server call's handler runs in ([`ServerCall::scope`]).
#[derive(Debug, Clone)]
pub struct CallScope(Scope);

#[derive(Debug, Clone)]
enum Scope {
    Plain,
    Span(tracing::Span),
    Remote(opentelemetry::Context),
}

impl CallScope {
    /// Runs `fut` in this scope.
    pub fn instrument<F: Future>(self, fut: F) -> InCall<F> {
        let kind = match self.0 {
            Scope::Plain => Kind::Plain { fut },
            Scope::Span(span) => Kind::Span {
                fut: fut.instrument(span),
            },
            Scope::Remote(cx) => Kind::Remote {
                fut: fut.with_context(cx),
            },
        };
        InCall { kind }
    }
}

pin_project! {
    /// A server handler's future in its call's trace context ([`CallScope::instrument`]).
    pub struct InCall<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Plain { #[pin] fut: F },
        Span { #[pin] fut: Instrumented<F> },
        Remote { #[pin] fut: WithContext<F> },
    }
}

impl<F: Future> Future for InCall<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        match self.project().kind.project() {
            KindProj::Plain { fut } => fut.poll(cx),
            KindProj::Span { fut } => fut.poll(cx),
            KindProj::Remote { fut } => fut.poll(cx),
        }
    }
}

impl<F> std::fmt::Debug for InCall<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InCall").finish_non_exhaustive()
    }
}
