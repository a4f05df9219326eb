//! Body wrappers for the gRFC A66 size and status instruments: [`ObservedBody`] (a
//! response body: counts message bytes, reads the final `grpc-status`, reports once) and
//! [`CountedBody`] (a request body: counts message bytes into a shared counter).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::framing::MessageCounter;

/// How an observed response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyOutcome {
    /// The `grpc-status` of the trailers (or of Trailers-Only headers); `CANCELLED` when
    /// the body was dropped before its end, `UNKNOWN` when it ended without a status,
    /// `INTERNAL` when the stream failed.
    pub code: tonic::Code,
    /// gRPC message payload bytes (the 5-byte message prefixes excluded).
    pub message_bytes: u64,
}

type OnEnd = Box<dyn FnOnce(BodyOutcome) + Send>;

const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

struct Observe {
    counter: MessageCounter,
    /// The status the response head already carries (Trailers-Only, or an HTTP error).
    head_code: Option<tonic::Code>,
    on_end: OnEnd,
}

/// A response body that counts gRPC message bytes and calls its completion callback
/// exactly once: at the trailers, at the end of the stream, on a stream error, or when
/// dropped early (then with `CANCELLED`). Without a callback it is a plain pass-through.
pub struct ObservedBody<B> {
    inner: B,
    observe: Option<Observe>,
}

impl<B> std::fmt::Debug for ObservedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedBody")
            .field("observed", &self.observe.is_some())
            .finish_non_exhaustive()
    }
}

/// The gRPC status a response head implies: its `grpc-status` (Trailers-Only), or the
/// code for a non-200 HTTP status (gRPC's HTTP-to-gRPC status mapping).
pub(crate) fn head_code(status: http::StatusCode, headers: &HeaderMap) -> Option<tonic::Code> {
    if let Some(v) = headers.get(GRPC_STATUS) {
        return Some(tonic::Code::from_bytes(v.as_bytes()));
    }
    use http::StatusCode as S;
    match status {
        S::OK => None,
        S::BAD_REQUEST => Some(tonic::Code::Internal),
        S::UNAUTHORIZED => Some(tonic::Code::Unauthenticated),
        S::FORBIDDEN => Some(tonic::Code::PermissionDenied),
        S::NOT_FOUND => Some(tonic::Code::Unimplemented),
        S::TOO_MANY_REQUESTS | S::BAD_GATEWAY | S::SERVICE_UNAVAILABLE | S::GATEWAY_TIMEOUT => {
            Some(tonic::Code::Unavailable)
        }
        _ => Some(tonic::Code::Unknown),
    }
}

impl<B> ObservedBody<B> {
    /// Observes `inner`, the body of a response whose head is `status` and `headers`.
    pub fn new(
        inner: B,
        status: http::StatusCode,
        headers: &HeaderMap,
        on_end: impl FnOnce(BodyOutcome) + Send + 'static,
    ) -> Self {
        ObservedBody {
            inner,
            observe: Some(Observe {
                counter: MessageCounter::default(),
                head_code: head_code(status, headers),
                on_end: Box::new(on_end),
            }),
        }
    }

    /// Wraps `inner` without observing it.
    pub fn unobserved(inner: B) -> Self {
        ObservedBody {
            inner,
            observe: None,
        }
    }

    fn finish(&mut self, code: Option<tonic::Code>) {
        if let Some(o) = self.observe.take() {
            let code = code.or(o.head_code).unwrap_or(tonic::Code::Unknown);
            (o.on_end)(BodyOutcome {
                code,
                message_bytes: o.counter.total,
            });
        }
    }
}

impl<B> Drop for ObservedBody<B> {
    fn drop(&mut self) {
        if let Some(o) = &self.observe {
            // A Trailers-Only response may never be polled: its head has the status.
            let code = o.head_code.unwrap_or(tonic::Code::Cancelled);
            self.finish(Some(code));
        }
    }
}

impl<B> Body for ObservedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if this.observe.is_some() {
            match &polled {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if let Some(o) = &mut this.observe {
                            o.counter.feed(data);
                        }
                    } else if let Some(trailers) = frame.trailers_ref() {
                        let code = trailers
                            .get(GRPC_STATUS)
                            .map(|v| tonic::Code::from_bytes(v.as_bytes()));
                        this.finish(code);
                    }
                }
                Some(Err(_)) => this.finish(Some(tonic::Code::Internal)),
                None => this.finish(None),
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A request body that adds its gRPC message payload bytes to a shared counter.
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        counter: Option<(MessageCounter, Arc<AtomicU64>)>,
    }
}

impl<B> std::fmt::Debug for CountedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedBody").finish_non_exhaustive()
    }
}

impl<B> CountedBody<B> {
    /// Counts `inner`'s message bytes into `total` (nothing is counted with `None`).
    pub fn new(inner: B, total: Option<Arc<AtomicU64>>) -> Self {
        CountedBody {
            inner,
            counter: total.map(|t| (MessageCounter::default(), t)),
        }
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = ready!(this.inner.poll_frame(cx));
        if let (Some((counter, total)), Some(Ok(frame))) = (this.counter.as_mut(), &polled)
            && let Some(data) = frame.data_ref()
        {
            let before = counter.total;
            counter.feed(data);
            total.fetch_add(counter.total - before, Ordering::Relaxed);
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
