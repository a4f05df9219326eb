//! Trace-context propagation over gRPC metadata: W3C `traceparent`/`tracestate` and W3C
//! `baggage` through OpenTelemetry propagators; a server also accepts Zipkin B3 (single
//! `b3` header or the `X-B3-*` headers) from callers that send no `traceparent`.

use std::sync::OnceLock;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
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

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");
const B3: HeaderName = HeaderName::from_static("b3");
const X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");

/// Lower-case hex of `bytes` into `out` (twice as long).
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        if let [hi, lo] = pair {
            *hi = HEX[usize::from(b >> 4)];
            *lo = HEX[usize::from(b & 0xf)];
        }
    }
}

/// The W3C `traceparent` of `sc`: `00-{trace id}-{span id}-{flags}`, written without the
/// formatting machinery (it is on every request).
fn traceparent(sc: &SpanContext) -> Option<HeaderValue> {
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
    let flags = (sc.trace_flags() & TraceFlags::SAMPLED).to_u8();
    hex_into(buf.get_mut(3..35)?, &sc.trace_id().to_bytes());
    hex_into(buf.get_mut(36..52)?, &sc.span_id().to_bytes());
    hex_into(buf.get_mut(53..55)?, &[flags]);
    HeaderValue::from_bytes(&buf).ok()
}

/// Injects `cx`'s span context (`traceparent`, `tracestate`) and baggage into `headers`,
/// exactly as OpenTelemetry's W3C `TraceContextPropagator` and `BaggagePropagator` do, with
/// the trace-context headers written directly.
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    let span = cx.span();
    let sc = span.span_context();
    if sc.is_valid()
        && let Some(parent) = traceparent(sc)
    {
        headers.insert(TRACEPARENT, parent);
        let state = sc.trace_state().header();
        if let Ok(v) = HeaderValue::from_str(&state) {
            headers.insert(TRACESTATE, v);
        }
    }
    if !cx.baggage().is_empty() {
        BaggagePropagator::new().inject_context(cx, &mut HeaderInjector(headers));
    }
}

/// The remote parent and baggage of an incoming request: W3C first, B3 when the caller
/// sent no valid `traceparent`. An empty context when the request carries none of their
/// headers (the common case without tracing: no propagator runs).
pub fn extract(headers: &HeaderMap) -> Context {
    if ![TRACEPARENT, BAGGAGE, B3, X_B3_TRACEID]
        .iter()
        .any(|h| headers.contains_key(h))
    {
        return Context::new();
    }
    let extractor = HeaderExtractor(headers);
    let cx = w3c().extract_with_context(&Context::new(), &extractor);
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
