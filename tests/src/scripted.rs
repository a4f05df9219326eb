//! Scripted gRPC backends (hyper HTTP/2) for resilience and load-balancing tests: each
//! answers `helloworld.Greeter/SayHello` as its [`Behaviour`] says, failing with a
//! Trailers-Only status or after the response headers, sleeping, or attaching an ORCA load
//! report (gRFC A51) to its trailers; it counts calls, calls in flight, and the headers
//! each call carried.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tonic::Code;
use xds_proto::helloworld::HelloReply;
use xds_proto::orca::OrcaLoadReport;

/// How a scripted backend answers.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    Ok,
    /// Trailers-Only with this code.
    Fail(Code),
    /// Response headers first, then this code in the trailers.
    FailAfterHeaders(Code),
    /// Fail the first `n` calls with this code, then answer OK.
    FailFirst(u64, Code),
    /// Answer OK after this long.
    Sleep(Duration),
}

/// A running scripted backend; dropping it stops accepting connections.
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it does and what it saw.
    pub state: Arc<BackendState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A scripted backend's behaviour and observations.
pub struct BackendState {
    /// How it answers; may be changed while it runs.
    pub behaviour: Mutex<Behaviour>,
    /// The ORCA report attached to the trailers of OK answers, if any.
    pub orca: Mutex<Option<OrcaLoadReport>>,
    /// Calls received.
    pub calls: AtomicU64,
    /// Calls being answered now.
    pub in_flight: AtomicI64,
    /// The most calls answered at once.
    pub max_in_flight: AtomicI64,
    /// `grpc-previous-rpc-attempts` and `grpc-timeout` of every call, in order.
    pub seen: Mutex<Vec<(Option<String>, Option<String>)>>,
}

impl Backend {
    /// Starts a backend on an ephemeral 127.0.0.1 port.
    pub async fn start(behaviour: Behaviour) -> Backend {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), behaviour).await
    }

    /// Starts a backend on `addr`.
    pub async fn start_on(addr: SocketAddr, behaviour: Behaviour) -> Backend {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(BackendState {
            behaviour: Mutex::new(behaviour),
            orca: Mutex::new(None),
            calls: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            max_in_flight: AtomicI64::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((io, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(s.clone(), req));
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        Backend { addr, state, task }
    }

    /// Calls received so far.
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::SeqCst)
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn grpc_response(status: Option<Code>, body: Body) -> http::Response<Body> {
    let mut b = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc");
    if let Some(code) = status {
        b = b.header("grpc-status", (code as i32).to_string());
    }
    b.body(body).unwrap()
}

fn frames(frames: Vec<Frame<Bytes>>) -> Body {
    let stream = tokio_stream::iter(frames.into_iter().map(Ok::<_, Infallible>));
    BodyExt::boxed(StreamBody::new(stream))
}

fn trailers(code: Code) -> Frame<Bytes> {
    let mut t = http::HeaderMap::new();
    t.insert("grpc-status", (code as i32).to_string().parse().unwrap());
    Frame::trailers(t)
}

async fn answer(
    s: Arc<BackendState>,
    req: http::Request<Incoming>,
) -> Result<http::Response<Body>, Infallible> {
    let n = s.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let seen = (header("grpc-previous-rpc-attempts"), header("grpc-timeout"));
    s.seen.lock().unwrap().push(seen);
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _ = req.into_body().collect().await;
    let behaviour = *s.behaviour.lock().unwrap();
    let orca = s.orca.lock().unwrap().clone();
    let ok = || {
        let reply = HelloReply {
            message: "Hello from scripted".into(),
        }
        .encode_to_vec();
        let mut msg = vec![0u8];
        msg.extend_from_slice(&(reply.len() as u32).to_be_bytes());
        msg.extend_from_slice(&reply);
        let mut end = trailers(Code::Ok);
        if let (Some(report), Some(t)) = (orca.as_ref(), end.trailers_mut()) {
            use base64::Engine;
            let v = base64::engine::general_purpose::STANDARD_NO_PAD.encode(report.encode_to_vec());
            if let Ok(v) = v.parse() {
                t.insert(xds_proto::orca::ORCA_TRAILER, v);
            }
        }
        grpc_response(None, frames(vec![Frame::data(Bytes::from(msg)), end]))
    };
    let resp = match behaviour {
        Behaviour::Ok => ok(),
        Behaviour::Fail(code) => grpc_response(Some(code), BodyExt::boxed(Empty::new())),
        Behaviour::FailAfterHeaders(code) => grpc_response(None, frames(vec![trailers(code)])),
        Behaviour::FailFirst(k, code) if n <= k => {
            grpc_response(Some(code), BodyExt::boxed(Empty::new()))
        }
        Behaviour::FailFirst(..) => ok(),
        Behaviour::Sleep(d) => {
            tokio::time::sleep(d).await;
            ok()
        }
    };
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    Ok(resp)
}
