//! Trace-context propagation over gRPC metadata: W3C `traceparent`/`tracestate` and W3C
//! `baggage` through OpenTelemetry propagators; a server also accepts Zipkin B3 (single
//! `b3` header or the `X-B3-*` headers) from callers that send no `traceparent`.

use std::sync::OnceLock;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

/// Writes into an `http::HeaderMap` (replacing any value already there).
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Reads from an `http::HeaderMap` (values that are not visible ASCII are ignored).
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

fn w3c() -> &'static TextMapCompositePropagator {
    static P: OnceLock<TextMapCompositePropagator> = OnceLock::new();
    P.get_or_init(|| {
        TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ])
    })
}

/// Injects `cx`'s span context (`traceparent`, `tracestate`) and baggage into `headers`.
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    w3c().inject_context(cx, &mut HeaderInjector(headers));
}

/// The remote parent and baggage of an incoming request: W3C first, B3 when the caller
/// sent no valid `traceparent`.
pub fn extract(headers: &HeaderMap) -> Context {
    let extractor = HeaderExtractor(headers);
    let cx = w3c().extract(&extractor);
    if cx.span().span_context().is_valid() {
        return cx;
    }
    B3Propagator.extract_with_context(&cx, &extractor)
}

/// Extract-only Zipkin B3 propagator (`b3: {trace}-{span}[-{sampled}[-{parent}]]`, or
/// `X-B3-TraceId` / `X-B3-SpanId` / `X-B3-Sampled` / `X-B3-Flags`). Injection is a no-op:
/// the mesh always sends W3C.
#[derive(Debug, Default, Clone, Copy)]
pub struct B3Propagator;

fn b3_fields() -> &'static [String] {
    static F: OnceLock<Vec<String>> = OnceLock::new();
    F.get_or_init(|| {
        [
            "b3",
            "x-b3-traceid",
            "x-b3-spanid",
            "x-b3-sampled",
            "x-b3-flags",
        ]
        .map(String::from)
        .to_vec()
    })
}

fn b3_trace_id(s: &str) -> Option<TraceId> {
    // 64-bit ids are left-padded to 128 bits.
    if (s.len() != 16 && s.len() != 32) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    TraceId::from_hex(s).ok().filter(|t| *t != TraceId::INVALID)
}

fn b3_span_id(s: &str) -> Option<SpanId> {
    if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    SpanId::from_hex(s).ok().filter(|s| *s != SpanId::INVALID)
}

fn b3_flags(sampled: Option<&str>, debug: Option<&str>) -> TraceFlags {
    match (sampled, debug) {
        (_, Some("1")) | (Some("1" | "d" | "true"), _) => TraceFlags::SAMPLED,
        _ => TraceFlags::NOT_SAMPLED,
    }
}

impl B3Propagator {
    fn span_context(extractor: &dyn Extractor) -> Option<SpanContext> {
        if let Some(single) = extractor.get("b3") {
            let mut parts = single.trim().split('-');
            let trace = b3_trace_id(parts.next()?)?;
            let span = b3_span_id(parts.next()?)?;
            let flags = b3_flags(parts.next(), None);
            return Some(SpanContext::new(trace, span, flags, true, TraceState::NONE));
        }
        let trace = b3_trace_id(extractor.get("x-b3-traceid")?.trim())?;
        let span = b3_span_id(extractor.get("x-b3-spanid")?.trim())?;
        let flags = b3_flags(extractor.get("x-b3-sampled"), extractor.get("x-b3-flags"));
        Some(SpanContext::new(trace, span, flags, true, TraceState::NONE))
    }
}

impl TextMapPropagator for B3Propagator {
    fn inject_context(&self, _cx: &Context, _injector: &mut dyn Injector) {}

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match Self::span_context(extractor) {
            Some(sc) => cx.with_remote_span_context(sc),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(b3_fields())
    }
}
