//! The handshake deadline of a connection (RFC 9113 §3.4): a peer must send the HTTP/2
//! client preface and the header of its first frame before a deadline, or its connection
//! fails.
//!
//! hyper waits for the preface without a timer, so a slowloris peer that sends a byte or
//! two would otherwise hold its connection (a task, buffers, a file descriptor) until the
//! connection's maximum age. [`PrefaceDeadline`] wraps the connection's byte stream and,
//! until enough bytes have been read, makes reads fail with `TimedOut` once the deadline
//! passes; hyper then ends the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The client preface (24 bytes, RFC 9113 §3.4) plus one frame header (9 bytes, §4.1).
const PREFACE_AND_FRAME_HEADER: usize = 24 + 9;

/// A byte stream whose reads fail with `TimedOut` if the first
/// [`PREFACE_AND_FRAME_HEADER`] bytes have not arrived by the deadline.
pub(crate) struct PrefaceDeadline<T> {
    inner: T,
    /// `Some` until the preface and a frame header have been read.
    sleep: Option<Pin<Box<Sleep>>>,
    read: usize,
}

impl<T> PrefaceDeadline<T> {
    pub(crate) fn new(inner: T, deadline: Instant) -> Self {
        PrefaceDeadline {
            inner,
            sleep: Some(Box::pin(tokio::time::sleep_until(deadline))),
            read: 0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for PrefaceDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(sleep) = this.sleep.as_mut() else {
            return polled;
        };
        if let Poll::Ready(Ok(())) = &polled {
            this.read = this
                .read
                .saturating_add(buf.filled().len().saturating_sub(before));
            if this.read >= PREFACE_AND_FRAME_HEADER {
                this.sleep = None;
                return polled;
            }
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no HTTP/2 preface within the handshake timeout ({} of {PREFACE_AND_FRAME_HEADER} bytes)",
                    this.read
                ),
            )));
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PrefaceDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_partial_preface_times_out() {
        let (mut peer, ours) = tokio::io::duplex(1024);
        let mut io = PrefaceDeadline::new(ours, Instant::now() + Duration::from_secs(10));
        peer.write_all(b"PRI * HT").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.unwrap(), 8);
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("8 of 33 bytes"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_complete_preface_disarms_the_deadline() {
        let (mut peer, ours) = tokio::io::duplex(1024);
        let mut io = PrefaceDeadline::new(ours, Instant::now() + Duration::from_secs(10));
        peer.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        peer.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < PREFACE_AND_FRAME_HEADER {
            got += io.read(&mut buf).await.unwrap();
        }
        // Long after the deadline, an idle connection still reads normally.
        tokio::time::sleep(Duration::from_secs(60)).await;
        peer.write_all(b"x").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn silence_times_out_even_without_a_byte() {
        let (_peer, ours) = tokio::io::duplex(1024);
        let mut io = PrefaceDeadline::new(ours, Instant::now() + Duration::from_secs(3));
        let mut buf = [0u8; 8];
        let started = Instant::now();
        let err = io.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
