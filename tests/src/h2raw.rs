//! A raw HTTP/2 peer for abuse tests (RFC 9113 frames, RFC 7541 HPACK literals): just
//! enough to write the frames a well-behaved client library never would (floods of
//! CONTINUATION, RST_STREAM right after HEADERS, DATA beyond the flow-control window) and
//! to watch what the server answers.
//!
//! A frame is a 9-byte header (24-bit payload length, 8-bit type, 8-bit flags, 31-bit
//! stream id, RFC 9113 §4.1) followed by its payload. Header blocks are encoded with HPACK
//! "literal header field without indexing — new name" (RFC 7541 §6.2.2), never Huffman, so
//! the encoder is a few lines and keeps no state.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 §6).
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// CONTINUATION.
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (RFC 9113 §6).
pub mod flags {
    /// END_STREAM (DATA, HEADERS).
    pub const END_STREAM: u8 = 0x1;
    /// ACK (SETTINGS, PING).
    pub const ACK: u8 = 0x1;
    /// END_HEADERS (HEADERS, CONTINUATION).
    pub const END_HEADERS: u8 = 0x4;
}

/// Error code CANCEL (RFC 9113 §7).
pub const CANCEL: u32 = 0x8;

/// Appends one frame to `buf`. `payload` must be shorter than 2^24 bytes.
pub fn frame(buf: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    buf.extend_from_slice(&len.to_be_bytes()[1..]);
    buf.push(kind);
    buf.push(flags);
    buf.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    buf.extend_from_slice(payload);
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 §5.1); `high` holds the bits above it.
fn hpack_int(buf: &mut Vec<u8>, n: u32, high: u8, value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        buf.push(high | value as u8);
        return;
    }
    buf.push(high | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        buf.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    buf.push(rest as u8);
}

/// Appends `name: value` as a literal without indexing, new name, no Huffman.
pub fn hpack_literal(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.push(0x00);
    hpack_int(buf, 7, 0, name.len());
    buf.extend_from_slice(name);
    hpack_int(buf, 7, 0, value.len());
    buf.extend_from_slice(value);
}

/// The header block of a gRPC unary request to `path` (plaintext, authority `authority`).
pub fn grpc_request_block(path: &str, authority: &str) -> Vec<u8> {
    let mut b = Vec::new();
    hpack_literal(&mut b, b":method", b"POST");
    hpack_literal(&mut b, b":scheme", b"http");
    hpack_literal(&mut b, b":path", path.as_bytes());
    hpack_literal(&mut b, b":authority", authority.as_bytes());
    hpack_literal(&mut b, b"content-type", b"application/grpc");
    hpack_literal(&mut b, b"te", b"trailers");
    b
}

/// A gRPC length-prefixed message (uncompressed).
pub fn grpc_message(msg: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8];
    b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    b.extend_from_slice(msg);
    b
}

/// What the server has sent on a [`RawConn`] so far.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Frames received.
    pub frames: u64,
    /// HEADERS frames received (responses, 431s, trailers).
    pub headers: u64,
    /// DATA payload bytes received (only an application's response carries any).
    pub data_bytes: u64,
    /// RST_STREAM frames received, and the last one's error code.
    pub rst_streams: u64,
    /// The last RST_STREAM's error code.
    pub last_rst_code: Option<u32>,
    /// `(last stream id, error code)` of a GOAWAY.
    pub goaway: Option<(u32, u32)>,
    /// The server closed the connection (EOF or a read error).
    pub closed: bool,
}

/// One raw HTTP/2 client connection: the write half is the test's, a background task
/// reads and records every frame the server sends (so the server is never blocked on a
/// full socket by us).
pub struct RawConn {
    writer: OwnedWriteHalf,
    observed: Arc<Mutex<Observed>>,
    reader: tokio::task::JoinHandle<()>,
}

impl RawConn {
    /// Connects, sends the preface and an empty SETTINGS, waits (at most 5 s) for the
    /// server's SETTINGS and acknowledges it.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        let _ = stream.set_nodelay(true);
        let mut hello = PREFACE.to_vec();
        frame(&mut hello, kind::SETTINGS, 0, 0, &[]);
        stream.write_all(&hello).await?;
        let settings = async {
            loop {
                let (header, _) = read_frame(&mut stream).await?;
                if header.1 == kind::SETTINGS && header.2 & flags::ACK == 0 {
                    return Ok::<_, std::io::Error>(());
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), settings)
            .await
            .map_err(|_| std::io::Error::other("no server SETTINGS within 5 s"))??;
        let mut ack = Vec::new();
        frame(&mut ack, kind::SETTINGS, flags::ACK, 0, &[]);
        stream.write_all(&ack).await?;
        let (mut read, writer) = stream.into_split();
        let observed = Arc::new(Mutex::new(Observed::default()));
        let seen = observed.clone();
        let reader = tokio::spawn(async move {
            loop {
                let Ok(((len, kind, _flags, _stream), payload)) = read_frame(&mut read).await
                else {
                    seen.lock().unwrap().closed = true;
                    return;
                };
                let mut o = seen.lock().unwrap();
                o.frames += 1;
                match kind {
                    kind::HEADERS => o.headers += 1,
                    kind::DATA => o.data_bytes += u64::from(len),
                    kind::RST_STREAM => {
                        o.rst_streams += 1;
                        o.last_rst_code = u32_at(&payload, 0);
                    }
                    kind::GOAWAY => {
                        if let (Some(last), Some(code)) = (u32_at(&payload, 0), u32_at(&payload, 4))
                        {
                            o.goaway = Some((last & 0x7fff_ffff, code));
                        }
                    }
                    _ => {}
                }
            }
        });
        Ok(RawConn {
            writer,
            observed,
            reader,
        })
    }

    /// Writes `bytes`; a write that does not finish within 2 s (the server stopped
    /// reading) is an error.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        tokio::time::timeout(Duration::from_secs(2), self.writer.write_all(bytes))
            .await
            .map_err(|_| std::io::Error::other("write stalled for 2 s"))?
    }

    /// What the server has sent so far.
    pub fn observed(&self) -> Observed {
        self.observed.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) for the server to close the connection.
    pub async fn wait_closed(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.observed().closed {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.observed().closed
    }
}

impl Drop for RawConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Reads one frame: `((length, type, flags, stream id), payload)`.
async fn read_frame(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<((u32, u8, u8, u32), Vec<u8>)> {
    let mut h = [0u8; 9];
    r.read_exact(&mut h).await?;
    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    Ok(((len, h[3], h[4], stream), payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_layout() {
        let mut b = Vec::new();
        frame(&mut b, kind::RST_STREAM, 0, 3, &CANCEL.to_be_bytes());
        assert_eq!(b, [0, 0, 4, 3, 0, 0, 0, 0, 3, 0, 0, 0, 8]);
    }

    #[test]
    fn hpack_integers_follow_rfc7541_examples() {
        // C.1.2: 1337 with a 5-bit prefix.
        let mut b = Vec::new();
        hpack_int(&mut b, 5, 0, 1337);
        assert_eq!(b, [31, 154, 10]);
        let mut b = Vec::new();
        hpack_literal(&mut b, b"a", b"bc");
        assert_eq!(b, [0, 1, b'a', 2, b'b', b'c']);
    }
}
