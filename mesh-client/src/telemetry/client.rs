//! Client-side call and attempt tracers (gRFC A66's `CallTracer` / `CallAttemptTracer`):
//! one `tracing` span per call and per attempt with OpenTelemetry's RPC attributes, W3C
//! trace context injected per attempt, and the `grpc.client.*` instruments.
//!
//! The channel calls, in order: [`ClientCall::start`] (before anything else),
//! [`ClientCall::count_sent`] on the request body, [`ClientCall::attempt_to`] for each
//! attempt once its endpoint is picked (it injects `traceparent`), then
//! either [`ClientAttempt::observe`] on the response (its body reports the status and
//! finishes attempt and call) or [`ClientAttempt::finish`] on failure; the
//! [`ClientCall::instrument`]ed future finishes the call with the error's status.
//!
//! Per call, the hot path builds no label vector (the attribute sets of each method and
//! status are built once, [`super::metrics`]), formats nothing unless a span records it, and
//! runs no propagator for a request without trace headers. Under an application span that
//! OpenTelemetry did not sample the call creates no spans and propagates the unsampled
//! parent; an unsampled attempt span records no attributes.
//!
//! Known gaps: the first attempt starts after the channel's first pick (A66 counts the pick
//! in the attempt), a call that fails its pick records no attempt, and a replayed request
//! body is counted once (a transparent retry's attempt reports 0 sent bytes).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use http::{HeaderMap, Response};
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::body::{BodyOutcome, CountedBody, ObservedBody};
use super::metrics::{Instruments, LabelSet, Telemetry};
use super::{propagation, split_path};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct CallInner {
    instruments: Arc<Instruments>,
    span: tracing::Span,
    start: Instant,
    /// `grpc.method`, `grpc.target` (and `grpc.status`), built once per method and target.
    labels: Arc<LabelSet>,
    /// Request message bytes read from the body so far (all attempts).
    sent: Arc<AtomicU64>,
    /// The application's OpenTelemetry context when its span was not sampled: the call
    /// then has no spans of its own and propagates this context.
    unsampled_parent: Option<opentelemetry::Context>,
    attempts: AtomicU32,
    finished: AtomicBool,
}

/// The telemetry of one client call. Cheap to clone (clones share the call); a no-op when
/// telemetry is disabled.
#[derive(Clone, Default)]
pub struct ClientCall {
    inner: Option<Arc<CallInner>>,
}

impl std::fmt::Debug for ClientCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCall")
            .field("enabled", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

/// OpenTelemetry span status for a client: every non-OK code is an error.
fn client_error(code: tonic::Code) -> bool {
    code != tonic::Code::Ok
}

fn status_of(e: &BoxError) -> tonic::Code {
    e.downcast_ref::<tonic::Status>()
        .map(tonic::Status::code)
        .unwrap_or(tonic::Code::Unknown)
}

/// The OpenTelemetry context of the current `tracing` span if it is an OpenTelemetry span
/// that was not sampled. Its children would not be sampled either (the same sampler decides
/// on the same trace: parent-based, ratio-based by trace id, or always-off), so the call
/// skips creating them: an unsampled trace costs almost nothing.
fn unsampled_parent() -> Option<opentelemetry::Context> {
    let current = tracing::Span::current();
    if current.is_disabled() {
        return None;
    }
    let cx = current.context();
    let unsampled = {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid() && !sc.is_sampled()
    };
    unsampled.then_some(cx)
}

/// The address of a formatted socket address: `1.2.3.4:80` → `1.2.3.4`, `[::1]:80` → `::1`
/// (what precedes the last colon, without brackets).
fn host_of(endpoint: &str) -> &str {
    let ip = endpoint.rsplit_once(':').map_or(endpoint, |(ip, _)| ip);
    ip.strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip)
}

impl ClientCall {
    /// Starts a call to `path` (`/pkg.Service/Method`) on the channel to `target`. The call
    /// span's parent is the current `tracing` span (the application's).
    pub fn start(telemetry: &Telemetry, target: &str, path: &str) -> ClientCall {
        let Some(instruments) = &telemetry.inner else {
            return ClientCall::default();
        };
        let (service, method) = split_path(path).unwrap_or(("", ""));
        let full = path.strip_prefix('/').unwrap_or(path);
        let unsampled_parent = unsampled_parent();
        let span = if unsampled_parent.is_some() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "grpc.client",
                otel.name = full,
                otel.kind = "client",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
                rpc.grpc.status_code = Empty,
                grpc.target = target,
            )
        };
        let method_label = if service.is_empty() { "other" } else { full };
        ClientCall {
            inner: Some(Arc::new(CallInner {
                instruments: instruments.clone(),
                span,
                start: Instant::now(),
                labels: instruments.client_labels(target, method_label),
                sent: Arc::new(AtomicU64::new(0)),
                unsampled_parent,
                attempts: AtomicU32::new(0),
                finished: AtomicBool::new(false),
            })),
        }
    }

    /// The call's span (disabled when telemetry is).
    pub fn span(&self) -> tracing::Span {
        self.inner
            .as_ref()
            .map(|i| i.span.clone())
            .unwrap_or_else(tracing::Span::none)
    }

    /// Wraps the request body to count its message bytes (A66 `sent_total_...`).
    pub fn count_sent<B>(&self, body: B) -> CountedBody<B> {
        CountedBody::new(body, self.inner.as_ref().map(|i| i.sent.clone()))
    }

    /// Starts an attempt: counts `grpc.client.attempt.started`, opens the attempt span
    /// (child of the call span) and injects its trace context into `headers`. The endpoint
    /// and cluster can follow ([`ClientAttempt::set_endpoint`], [`ClientAttempt::set_route`]);
    /// [`ClientCall::attempt_to`] is cheaper when they are known.
    pub fn attempt(&self, headers: &mut HeaderMap) -> ClientAttempt {
        self.start_attempt(headers, None)
    }

    /// [`ClientCall::attempt`] to an endpoint already picked in `cluster`, over a
    /// connection whose server proved `peer_identity` (its SPIFFE ID, under mTLS): the span
    /// gets `server.address`, `server.port`, `mesh.endpoint`, `mesh.cluster` and
    /// `mesh.peer_identity` when it is created rather than recorded one by one afterwards
    /// (each later record takes the span's lock in tracing-opentelemetry and the SDK).
    pub fn attempt_to(
        &self,
        headers: &mut HeaderMap,
        endpoint: SocketAddr,
        cluster: &str,
        peer_identity: Option<&str>,
    ) -> ClientAttempt {
        self.start_attempt(headers, Some((endpoint, cluster, peer_identity)))
    }

    fn start_attempt(
        &self,
        headers: &mut HeaderMap,
        target: Option<(SocketAddr, &str, Option<&str>)>,
    ) -> ClientAttempt {
        let Some(call) = &self.inner else {
            return ClientAttempt { inner: None };
        };
        let n = call.attempts.fetch_add(1, Ordering::Relaxed) + 1;
        call.instruments
            .client_attempt_started
            .add(1, call.labels.base());
        if let Some(parent) = &call.unsampled_parent {
            propagation::inject(parent, headers);
            return ClientAttempt {
                inner: Some(AttemptInner {
                    call: call.clone(),
                    span: tracing::Span::none(),
                    recording: false,
                    start: Instant::now(),
                    sent_before: call.sent.load(Ordering::Relaxed),
                }),
            };
        }
        // Formatting only for a span someone records; a `None` field stays empty (to be
        // recorded by `set_endpoint` and friends).
        let target = target.filter(|_| !call.span.is_disabled());
        let endpoint = target.map(|(addr, ..)| addr.to_string());
        let span = tracing::info_span!(
            parent: &call.span,
            "grpc.client.attempt",
            otel.name = call.labels.method(),
            otel.kind = "client",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.grpc.status_code = Empty,
            server.address = endpoint.as_deref().map(host_of),
            server.port = target.map(|(addr, ..)| addr.port()),
            mesh.attempt = n,
            mesh.route = Empty,
            mesh.cluster = target.map(|(_, cluster, _)| cluster),
            mesh.endpoint = endpoint.as_deref(),
            mesh.peer_identity = target.and_then(|(.., peer)| peer),
        );
        let mut recording = !span.is_disabled();
        let mut cx = span.context();
        let (valid, sampled) = {
            let span = cx.span();
            let sc = span.span_context();
            (sc.is_valid(), sc.is_sampled())
        };
        if valid {
            // An OpenTelemetry span that is not sampled is never exported: skip its
            // attributes.
            recording &= sampled;
        } else {
            // No tracing-opentelemetry layer: propagate the application's own OTel context.
            cx = opentelemetry::Context::current();
        }
        propagation::inject(&cx, headers);
        ClientAttempt {
            inner: Some(AttemptInner {
                call: call.clone(),
                span,
                recording,
                start: Instant::now(),
                sent_before: call.sent.load(Ordering::Relaxed),
            }),
        }
    }

    /// Ends the call with `code` (`grpc.client.call.duration`); later calls are ignored.
    pub fn finish(&self, code: tonic::Code) {
        self.finish_at(code, Instant::now());
    }

    /// [`ClientCall::finish`] at `now` (one clock read ends both the attempt and the call).
    fn finish_at(&self, code: tonic::Code, now: Instant) {
        let Some(call) = &self.inner else { return };
        if call.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        call.instruments.client_call_duration.record(
            now.saturating_duration_since(call.start).as_secs_f64(),
            call.labels.with_status(code),
        );
        call.span.record("rpc.grpc.status_code", code as i64);
        if client_error(code) {
            call.span.record("otel.status_code", "ERROR");
        }
    }

    /// Runs the call's future inside its span; an error ends the call with its status (a
    /// response ends it when its body does).
    pub fn instrument<T: Send + 'static>(
        self,
        fut: Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>,
    ) -> Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>> {
        let Some(span) = self.inner.as_ref().map(|i| i.span.clone()) else {
            return fut;
        };
        Box::pin(
            async move {
                let out = fut.await;
                if let Err(e) = &out {
                    self.finish(status_of(e));
                }
                out
            }
            .instrument(span),
        )
    }
}

struct AttemptInner {
    call: Arc<CallInner>,
    span: tracing::Span,
    /// Whether the span's attributes go anywhere (a subscriber is interested and, under
    /// OpenTelemetry, the span is sampled).
    recording: bool,
    start: Instant,
    sent_before: u64,
}

/// The telemetry of one attempt of a call. Dropped unfinished, it records `CANCELLED`.
#[derive(Default)]
pub struct ClientAttempt {
    inner: Option<AttemptInner>,
}

impl std::fmt::Debug for ClientAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAttempt")
            .field("enabled", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientAttempt {
    /// The endpoint picked for this attempt (`server.address`, `server.port`,
    /// `mesh.endpoint`).
    pub fn set_endpoint(&self, addr: SocketAddr) {
        // Formatting costs: only for a span someone records, and only once.
        if let Some(a) = self.recording() {
            let endpoint = addr.to_string();
            a.span.record("server.address", host_of(&endpoint));
            a.span.record("server.port", addr.port());
            a.span.record("mesh.endpoint", endpoint.as_str());
        }
    }

    /// The route and cluster chosen for this attempt (`mesh.route`, `mesh.cluster`); an
    /// empty route name is not recorded.
    pub fn set_route(&self, route: &str, cluster: &str) {
        if let Some(a) = self.recording() {
            if !route.is_empty() {
                a.span.record("mesh.route", route);
            }
            a.span.record("mesh.cluster", cluster);
        }
    }

    /// The verified identity (SPIFFE ID) of the server (`mesh.peer_identity`).
    pub fn set_peer_identity(&self, identity: &str) {
        if let Some(a) = self.recording() {
            a.span.record("mesh.peer_identity", identity);
        }
    }

    fn recording(&self) -> Option<&AttemptInner> {
        self.inner.as_ref().filter(|a| a.recording)
    }

    /// The attempt's span (disabled when telemetry is).
    pub fn span(&self) -> tracing::Span {
        self.inner
            .as_ref()
            .map(|a| a.span.clone())
            .unwrap_or_else(tracing::Span::none)
    }

    /// Ends the attempt: `grpc.client.attempt.duration` and the two size histograms.
    pub fn finish(mut self, code: tonic::Code, rcvd_bytes: u64) {
        self.end(code, rcvd_bytes, Instant::now());
    }

    fn end(&mut self, code: tonic::Code, rcvd_bytes: u64, now: Instant) {
        let Some(a) = self.inner.take() else { return };
        let attrs = a.call.labels.with_status(code);
        let i = &a.call.instruments;
        i.client_attempt_duration
            .record(now.saturating_duration_since(a.start).as_secs_f64(), attrs);
        let sent = a
            .call
            .sent
            .load(Ordering::Relaxed)
            .saturating_sub(a.sent_before);
        i.client_attempt_sent.record(sent, attrs);
        i.client_attempt_rcvd.record(rcvd_bytes, attrs);
        if a.recording {
            a.span.record("rpc.grpc.status_code", code as i64);
            if client_error(code) {
                a.span.record("otel.status_code", "ERROR");
            }
        }
    }

    /// Observes the response: when its body ends (or is dropped) the attempt and `call`
    /// finish with its status.
    pub fn observe<B>(self, call: &ClientCall, resp: Response<B>) -> Response<ObservedBody<B>> {
        if self.inner.is_none() {
            return resp.map(ObservedBody::unobserved);
        }
        let (parts, body) = resp.into_parts();
        let call = call.clone();
        let mut attempt = self;
        let body = ObservedBody::new(body, parts.status, &parts.headers, move |o: BodyOutcome| {
            let now = Instant::now();
            attempt.end(o.code, o.message_bytes, now);
            call.finish_at(o.code, now);
        });
        Response::from_parts(parts, body)
    }
}

impl Drop for ClientAttempt {
    fn drop(&mut self) {
        if self.inner.is_some() {
            self.end(tonic::Code::Cancelled, 0, Instant::now());
        }
    }
}
