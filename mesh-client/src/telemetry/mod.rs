//! Telemetry: W3C trace-context propagation, `tracing` spans per call and per attempt, and
//! OpenTelemetry metrics: the per-call instruments of gRFC A66, the xDS client instruments
//! of gRFC A78, and the mesh's own signals (staleness, certificate expiry, RBAC shadow
//! decisions, retry-budget exhaustion, outlier ejections, circuit-breaker drops).
//!
//! Everything goes through the OpenTelemetry *API*: a [`Telemetry`] is built from a
//! `MeterProvider` ([`Telemetry::global`] by default, [`Telemetry::new`] to pick one,
//! [`Telemetry::disabled`] to turn it off) and handed to `MeshChannel` and `MeshServer`
//! builders. Spans are `tracing` spans carrying OpenTelemetry's RPC attributes; with a
//! `tracing-opentelemetry` layer installed they become OpenTelemetry spans, the
//! application's span is the parent of the client call span, and the server's span is a
//! child of the remote client attempt span. A trace that is not sampled gets no mesh spans
//! on either side (parent-based samplers would drop them anyway), only its propagated
//! context.
//!
//! The hot path is small: [`ClientCall`] / [`ClientAttempt`] on the client,
//! [`ServerCall`] on the server, and [`ObservedBody`], a response body wrapper that counts
//! gRPC message bytes and reads the final `grpc-status`.
//!
//! ```
//! use mesh_client::telemetry::Telemetry;
//! // The process-wide OpenTelemetry MeterProvider (a no-op until the application sets one).
//! let telemetry = Telemetry::global();
//! telemetry.record_retry_budget_exhausted("xds:///greeter:8080", "greeter-cluster");
//! ```

mod body;
mod client;
mod framing;
mod metrics;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod propagation;
mod server;
mod xds;

pub use body::{BodyOutcome, CountedBody, ObservedBody};
pub use client::{ClientAttempt, ClientCall};
pub use metrics::{Telemetry, labels, names};
pub use server::{CallScope, InCall, ServerCall};
pub use xds::XdsClientStats;

/// The response body type of a [`crate::MeshChannel`]: the connection's body, observed for
/// the A66 message-size and status instruments.
pub type ClientBody = ObservedBody<hyper::body::Incoming>;

/// The gRPC status code name as A66's `grpc.status` attribute spells it (`OK`,
/// `CANCELLED`, `DEADLINE_EXCEEDED`, ...).
pub fn status_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Splits a gRPC path `/pkg.Service/Method` into (`pkg.Service`, `Method`); `None` for
/// anything else.
pub(crate) fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

#[cfg(test)]
mod tests;
