//! Unit tests of the telemetry module: propagation (W3C round trip, B3), spans per call and
//! per attempt under tracing-opentelemetry, and body observation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use opentelemetry::trace::{SpanKind, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;

use super::*;

#[test]
fn paths_split_into_service_and_method() {
    assert_eq!(split_path("/a.B/C"), Some(("a.B", "C")));
    assert_eq!(split_path("/a.B/C/D"), None);
    assert_eq!(split_path("a.B/C"), None);
    assert_eq!(split_path("//C"), None);
}

#[test]
fn w3c_traceparent_and_baggage_are_extracted() {
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            .parse()
            .unwrap(),
    );
    h.insert("baggage", "tenant=blue".parse().unwrap());
    let cx = propagation::extract(&h);
    let sc = cx.span().span_context().clone();
    assert!(sc.is_remote() && sc.is_sampled());
    assert_eq!(
        sc.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    use opentelemetry::baggage::BaggageExt;
    assert_eq!(
        cx.baggage().get("tenant").map(|v| v.to_string()),
        Some("blue".to_string())
    );
    // And back out.
    let mut out = HeaderMap::new();
    propagation::inject(&cx, &mut out);
    assert_eq!(
        out["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(out["baggage"], "tenant=blue");
}

#[test]
fn injection_writes_what_the_sdk_propagators_write() {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry::{Context, KeyValue, baggage::BaggageExt};
    let state = TraceState::from_key_value([("vendor", "x1"), ("other", "y")]).unwrap();
    for (flags, state) in [
        (TraceFlags::SAMPLED, TraceState::NONE),
        (TraceFlags::NOT_SAMPLED, state.clone()),
        (TraceFlags::new(0xff), state),
    ] {
        let sc = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            flags,
            true,
            state,
        );
        let cx = Context::new()
            .with_remote_span_context(sc)
            .with_baggage([KeyValue::new("tenant", "blue green")]);
        let mut ours = HeaderMap::new();
        propagation::inject(&cx, &mut ours);
        let mut sdk = HeaderMap::new();
        let composite = opentelemetry::propagation::TextMapCompositePropagator::new(vec![
            Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
            Box::new(opentelemetry_sdk::propagation::BaggagePropagator::new()),
        ]);
        composite.inject_context(&cx, &mut propagation::HeaderInjector(&mut sdk));
        assert_eq!(ours, sdk, "{flags:?}");
    }
    // Nothing to propagate: no header at all.
    let mut none = HeaderMap::new();
    propagation::inject(&Context::new(), &mut none);
    assert!(none.is_empty());
}

#[test]
fn a_request_without_trace_headers_has_no_remote_context() {
    let telemetry = Telemetry::new(&opentelemetry::metrics::noop::NoopMeterProvider::new());
    let empty = HeaderMap::new();
    let call = ServerCall::start(&telemetry, "/pkg.Svc/Do", &empty, true);
    assert!(call.remote_context().is_none());
    assert!(!propagation::extract(&empty).has_active_span());
    let mut h = HeaderMap::new();
    h.insert("baggage", "tenant=blue".parse().unwrap());
    let call = ServerCall::start(&telemetry, "/pkg.Svc/Do", &h, true);
    assert!(
        call.remote_context().is_some(),
        "baggage alone is handed on"
    );
}

#[test]
fn b3_single_and_multi_headers_are_accepted() {
    let mut h = HeaderMap::new();
    h.insert(
        "b3",
        "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"
            .parse()
            .unwrap(),
    );
    let sc = propagation::extract(&h).span().span_context().clone();
    assert_eq!(
        sc.trace_id().to_string(),
        "80f198ee56343ba864fe8b2a57d3eff7"
    );
    assert_eq!(sc.span_id().to_string(), "e457b5a2e4d86bd1");
    assert!(sc.is_sampled());

    let mut h = HeaderMap::new();
    h.insert("x-b3-traceid", "64fe8b2a57d3eff7".parse().unwrap());
    h.insert("x-b3-spanid", "e457b5a2e4d86bd1".parse().unwrap());
    h.insert("x-b3-sampled", "0".parse().unwrap());
    let sc = propagation::extract(&h).span().span_context().clone();
    assert_eq!(
        sc.trace_id().to_string(),
        "000000000000000064fe8b2a57d3eff7"
    );
    assert!(!sc.is_sampled());

    // Garbage is ignored, never a panic.
    for bad in [
        "",
        "-",
        "zz-zz",
        "80f198ee56343ba864fe8b2a57d3eff7-",
        "1-2-3-4-5",
    ] {
        let mut h = HeaderMap::new();
        h.insert("b3", bad.parse().unwrap());
        assert!(!propagation::extract(&h).span().span_context().is_valid());
    }
}

#[tokio::test]
async fn each_attempt_is_a_child_span_of_the_call_and_is_propagated() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let telemetry = Telemetry::new(&opentelemetry::metrics::noop::NoopMeterProvider::new());
    let mut injected = Vec::new();
    {
        let app = tracing::info_span!("app");
        let _entered = app.enter();
        let call = ClientCall::start(&telemetry, "xds:///t", "/pkg.Svc/Do");
        for code in [tonic::Code::Unavailable, tonic::Code::Ok] {
            let mut headers = HeaderMap::new();
            let attempt = call.attempt(&mut headers);
            attempt.set_endpoint(([127, 0, 0, 1], 8080).into());
            attempt.finish(code, 0);
            injected.push(headers["traceparent"].to_str().unwrap().to_string());
        }
        call.finish(tonic::Code::Ok);
    }
    let spans = exporter.get_finished_spans().unwrap();
    let app = spans.iter().find(|s| s.name == "app").unwrap();
    let call = spans
        .iter()
        .filter(|s| s.name == "pkg.Svc/Do")
        .find(|s| s.span_kind == SpanKind::Client && s.parent_span_id == app.span_context.span_id())
        .expect("call span under the app span");
    let attempts: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id == call.span_context.span_id())
        .collect();
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    for (a, tp) in attempts.iter().zip(&injected) {
        assert_eq!(a.span_context.trace_id(), app.span_context.trace_id());
        assert!(tp.contains(&a.span_context.span_id().to_string()), "{tp}");
        let attr = |k: &str| {
            a.attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(attr("rpc.system").as_deref(), Some("grpc"));
        assert_eq!(attr("server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(attr("server.port").as_deref(), Some("8080"));
    }
    let numbers: Vec<_> = attempts
        .iter()
        .filter_map(|a| {
            a.attributes
                .iter()
                .find(|kv| kv.key.as_str() == "mesh.attempt")
                .map(|kv| kv.value.to_string())
        })
        .collect();
    assert!(numbers.contains(&"1".to_string()) && numbers.contains(&"2".to_string()));
}

#[tokio::test]
async fn under_an_unsampled_parent_the_call_has_no_spans_and_propagates_the_parent() {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);
    let telemetry = Telemetry::new(&opentelemetry::metrics::noop::NoopMeterProvider::new());
    let app = tracing::info_span!("app");
    let app_cx = app.context();
    let _entered = app.enter();
    let call = ClientCall::start(&telemetry, "xds:///t", "/pkg.Svc/Do");
    assert!(call.span().is_disabled());
    let mut headers = HeaderMap::new();
    let attempt = call.attempt(&mut headers);
    assert!(attempt.span().is_disabled());
    let sc = app_cx.span().span_context().clone();
    assert!(sc.is_valid() && !sc.is_sampled());
    assert_eq!(
        headers["traceparent"].to_str().unwrap(),
        format!("00-{}-{}-00", sc.trace_id(), sc.span_id())
    );
    attempt.finish(tonic::Code::Ok, 0);
    call.finish(tonic::Code::Ok);
}

fn grpc_frame(payload: &[u8]) -> Bytes {
    let mut v = vec![0u8];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v.into()
}

#[tokio::test]
async fn observed_body_reports_trailers_status_and_bytes_once() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "5".parse().unwrap());
    let inner = http_body_util::StreamBody::new(futures::stream::iter(vec![
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(grpc_frame(b"hello"))),
        Ok(http_body::Frame::trailers(trailers)),
    ]));
    let body = ObservedBody::new(
        Box::pin(inner),
        http::StatusCode::OK,
        &HeaderMap::new(),
        move |o| s.lock().unwrap().push(o),
    );
    let collected = body.collect().await.unwrap();
    assert_eq!(collected.to_bytes().len(), 10);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![BodyOutcome {
            code: tonic::Code::NotFound,
            message_bytes: 5
        }]
    );
}

#[test]
fn observed_body_dropped_early_is_cancelled_and_trailers_only_keeps_its_status() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    drop(ObservedBody::new(
        http_body_util::Empty::<Bytes>::new(),
        http::StatusCode::OK,
        &HeaderMap::new(),
        move |o| s.lock().unwrap().push(o.code),
    ));
    let mut head = HeaderMap::new();
    head.insert("grpc-status", "7".parse().unwrap());
    let s = seen.clone();
    drop(ObservedBody::new(
        http_body_util::Empty::<Bytes>::new(),
        http::StatusCode::OK,
        &head,
        move |o| s.lock().unwrap().push(o.code),
    ));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![tonic::Code::Cancelled, tonic::Code::PermissionDenied]
    );
}

#[tokio::test]
async fn counted_body_counts_message_payloads() {
    let total = Arc::new(AtomicU64::new(0));
    let inner = http_body_util::Full::new(grpc_frame(b"abcdef"));
    let body = CountedBody::new(inner, Some(total.clone()));
    let _ = body.collect().await.unwrap();
    assert_eq!(total.load(Ordering::Relaxed), 6);
}

#[tokio::test]
async fn an_unsampled_caller_gets_no_server_span_and_the_handler_joins_its_trace() {
    use opentelemetry::baggage::BaggageExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let exporter = InMemorySpanExporter::default();
    // The SDK's default sampler: ParentBased(AlwaysOn).
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);
    let telemetry = Telemetry::new(&opentelemetry::metrics::noop::NoopMeterProvider::new());
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        format!("00-{trace}-b7ad6b7169203331-00").parse().unwrap(),
    );
    h.insert("baggage", "tenant=blue".parse().unwrap());
    let call = ServerCall::start(&telemetry, "/pkg.Svc/Do", &h, true);
    assert!(
        call.span().is_none(),
        "no server span for an unsampled caller"
    );
    let remote = call
        .remote_context()
        .expect("the caller's context is handed on");
    assert_eq!(
        remote.baggage().get("tenant").map(|v| v.to_string()),
        Some("blue".to_string())
    );
    let (handler_trace, handler_sampled) = call
        .scope()
        .instrument(async {
            let span = tracing::info_span!("handler");
            let sc = span.context().span().span_context().clone();
            (sc.trace_id().to_string(), sc.is_sampled())
        })
        .await;
    assert_eq!(handler_trace, trace);
    assert!(!handler_sampled);
    drop(call);
    // Nothing of the unsampled trace is exported. (The sampled case, server span parent of
    // the handler's, is e2e_telemetry's: the shared `grpc.server` callsite needs the
    // global subscriber there, thread-local ones race on its interest.)
    let spans = exporter.get_finished_spans().unwrap();
    assert!(spans.is_empty(), "{spans:#?}");
}
