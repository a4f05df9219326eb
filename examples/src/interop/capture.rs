//! A tower wrapper that remembers a response's initial headers in its extensions, so the
//! interop client can tell headers from trailers after tonic has merged them into one
//! `MetadataMap` (needed for `metadatas_by_peer`'s `INITIAL` / `TRAILING` type).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_service::Service;

/// The response headers as received, before trailers were merged in.
#[derive(Debug, Clone)]
pub struct InitialHeaders(pub http::HeaderMap);

/// Wraps a channel; every response carries [`InitialHeaders`] in its extensions.
#[derive(Debug, Clone)]
pub struct CaptureHeaders<S> {
    inner: S,
}

impl<S> CaptureHeaders<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        CaptureHeaders { inner }
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for CaptureHeaders<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let fut = self.inner.call(request);
        Box::pin(async move {
            let mut response = fut.await?;
            let headers = response.headers().clone();
            response.extensions_mut().insert(InitialHeaders(headers));
            Ok(response)
        })
    }
}
