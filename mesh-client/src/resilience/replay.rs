//! A bounded replay buffer for request bodies, so a request the server never processed can
//! be sent again (gRFC A6 "transparent retry": the stream was refused, or it was above the
//! last stream id of a graceful GOAWAY).
//!
//! The body is recorded as it is sent, up to [`ReplayBody::LIMIT`] bytes; once the limit is
//! passed or trailers are sent, the request can no longer be replayed and recording stops.
//! Data frames are `Bytes`, so recording is a reference-count bump per frame.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::transport::RequestBody;

#[derive(Debug, Default)]
struct Recording {
    frames: Vec<Bytes>,
    size: usize,
    /// Past the limit, or carried trailers: not replayable.
    spoiled: bool,
    finished: bool,
}

/// A request body that records what it yields; see the module docs.
pub struct ReplayBody {
    inner: Option<RequestBody>,
    replay: Option<std::vec::IntoIter<Bytes>>,
    rec: Arc<Mutex<Recording>>,
}

impl std::fmt::Debug for ReplayBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayBody").finish_non_exhaustive()
    }
}

/// A handle that can rebuild the body after the original was consumed.
#[derive(Debug, Clone)]
pub struct Replay {
    rec: Arc<Mutex<Recording>>,
}

impl ReplayBody {
    /// The most bytes recorded for one request (gRPC's default per-RPC retry buffer is
    /// 256 KiB; gRFC A6).
    pub const LIMIT: usize = 256 * 1024;

    /// Wraps `body`, returning the recording body and its replay handle.
    pub fn new(body: RequestBody) -> (ReplayBody, Replay) {
        let rec = Arc::new(Mutex::new(Recording::default()));
        (
            ReplayBody {
                inner: Some(body),
                replay: None,
                rec: rec.clone(),
            },
            Replay { rec },
        )
    }
}

impl Replay {
    /// Whether the whole body was recorded, so [`Replay::body`] would succeed (without
    /// copying the frames to find out).
    pub fn is_replayable(&self) -> bool {
        self.rec
            .lock()
            .map(|rec| rec.finished && !rec.spoiled)
            .unwrap_or(false)
    }

    /// A fresh body with the recorded frames, if the whole body was recorded. The new body
    /// shares the recording, so it can be replayed again.
    pub fn body(&self) -> Option<ReplayBody> {
        let rec = self.rec.lock().ok()?;
        if rec.spoiled || !rec.finished {
            return None;
        }
        Some(ReplayBody {
            inner: None,
            replay: Some(rec.frames.clone().into_iter()),
            rec: self.rec.clone(),
        })
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(frames) = self.replay.as_mut() {
            return Poll::Ready(frames.next().map(|b| Ok(Frame::data(b))));
        }
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(r) = &polled
            && let Ok(mut rec) = self.rec.lock()
        {
            match r {
                None => rec.finished = true,
                Some(Ok(frame)) => match frame.data_ref() {
                    Some(data) if !rec.spoiled => {
                        if rec.size + data.len() > Self::LIMIT {
                            rec.spoiled = true;
                            rec.frames = Vec::new();
                        } else {
                            rec.size += data.len();
                            rec.frames.push(data.clone());
                        }
                    }
                    Some(_) => {}
                    None => rec.spoiled = true,
                },
                Some(Err(_)) => rec.spoiled = true,
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match (&self.replay, &self.inner) {
            (Some(frames), _) => frames.len() == 0,
            (None, Some(inner)) => inner.is_end_stream(),
            (None, None) => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.replay, &self.inner) {
            (Some(frames), _) => {
                SizeHint::with_exact(frames.as_slice().iter().map(|b| b.len() as u64).sum())
            }
            (None, Some(inner)) => inner.size_hint(),
            (None, None) => SizeHint::with_exact(0),
        }
    }
}

/// Whether a failed send is safe to replay: the server did not process the stream
/// (REFUSED_STREAM, or a graceful GOAWAY the stream was above).
pub fn never_processed(err: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    for _ in 0..8 {
        let Some(s) = source else { return false };
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return match h2.reason() {
                Some(h2::Reason::REFUSED_STREAM) => true,
                Some(h2::Reason::NO_ERROR) => h2.is_go_away() && h2.is_remote(),
                _ => false,
            };
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(chunks: &[&'static [u8]]) -> RequestBody {
        let frames: Vec<Result<Frame<Bytes>, tonic::Status>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        RequestBody::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
    }

    #[tokio::test]
    async fn a_fully_sent_body_replays_identically_and_repeatedly() {
        let (b, replay) = ReplayBody::new(body(&[b"hello ", b"world"]));
        assert!(
            replay.body().is_none(),
            "not replayable before it is fully sent"
        );
        let sent = b.collect().await.unwrap().to_bytes();
        assert_eq!(&sent[..], b"hello world");
        for _ in 0..2 {
            let again = replay.body().unwrap().collect().await.unwrap().to_bytes();
            assert_eq!(again, sent);
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_not_replayable() {
        static BIG: [u8; ReplayBody::LIMIT + 1] = [7; ReplayBody::LIMIT + 1];
        let (b, replay) = ReplayBody::new(body(&[&BIG]));
        let sent = b.collect().await.unwrap().to_bytes();
        assert_eq!(sent.len(), ReplayBody::LIMIT + 1);
        assert!(replay.body().is_none());
    }
}
