//! The floor row: a raw TCP ping-pong with the same payload sizes as the gRPC workloads and
//! no HTTP/2, no protobuf, no TLS. A request is a 12-byte header (request length, response
//! length, response count, big-endian u32) plus the request bytes; the reply is that many
//! length-prefixed messages, written at once. One connection per concurrent caller.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::workload::{Caller, Workload};

/// Largest request or response the echo server accepts (bytes).
const MAX_BYTES: u32 = 1 << 20;
/// Most response messages per request.
const MAX_COUNT: u32 = 1000;

/// Serves ping-pong on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let _ = echo(socket).await;
        });
    }
}

async fn echo(mut socket: TcpStream) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut reply = Vec::new();
    loop {
        let mut header = [0u8; 12];
        if socket.read_exact(&mut header).await.is_err() {
            return Ok(()); // the client went away
        }
        let field = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(header.get(i..i + 4).unwrap_or(&[0; 4]));
            u32::from_be_bytes(b)
        };
        let (req_len, resp_len, count) = (field(0), field(4), field(8));
        if req_len > MAX_BYTES || resp_len > MAX_BYTES || count > MAX_COUNT {
            return Err(std::io::Error::other(
                "request over the echo server's limits",
            ));
        }
        request.resize(req_len as usize, 0);
        socket.read_exact(&mut request).await?;
        reply.clear();
        for _ in 0..count {
            reply.extend_from_slice(&resp_len.to_be_bytes());
            reply.resize(reply.len() + resp_len as usize, 0);
        }
        socket.write_all(&reply).await?;
    }
}

/// One worker's connection and calls.
#[derive(Debug)]
pub struct TcpCaller {
    socket: TcpStream,
    request: Vec<u8>,
    reply: Vec<u8>,
    workload: Workload,
}

impl TcpCaller {
    /// Connects to the echo server at `addr`.
    pub async fn connect(addr: SocketAddr, workload: Workload) -> std::io::Result<Self> {
        let socket = TcpStream::connect(addr).await?;
        socket.set_nodelay(true)?;
        let mut request = Vec::with_capacity(12 + workload.request_size());
        for v in [
            workload.request_size(),
            workload.response_size(),
            workload.response_count(),
        ] {
            request.extend_from_slice(&(v as u32).to_be_bytes());
        }
        request.resize(12 + workload.request_size(), 0);
        Ok(TcpCaller {
            socket,
            request,
            reply: vec![0; 4 + workload.response_size()],
            workload,
        })
    }
}

impl Caller for TcpCaller {
    async fn call(&mut self) -> Result<(), String> {
        self.socket
            .write_all(&self.request)
            .await
            .map_err(|e| e.to_string())?;
        for _ in 0..self.workload.response_count() {
            self.socket
                .read_exact(&mut self.reply)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
