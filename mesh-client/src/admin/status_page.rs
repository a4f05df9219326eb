//! A short plain-text status page: each xDS client, its server, and every resource with its
//! CSDS status (gRFC A40), version, age and last error, for `curl` when grpcdebug is not
//! at hand. Served over HTTP/1.1 on a port of its own by [`serve_status_page`].

use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::xds::{XdsClient, live_clients};

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head accepted (the page takes no input).
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// The status of every shared xDS client of this process (see [`status_text_for`]).
pub fn status_text() -> String {
    status_text_for(&live_clients())
}

/// The status of these clients, one block per client, one line per resource:
///
/// ```text
/// xDS client node "node-1" server 127.0.0.1:18000: 2 resources
///   LDS greeter.default:8080 ACKED version "1" updated 3s ago
///   RDS route-1 NACKED version "1" updated 3s ago; rejected version "2" 1s ago: <why>
/// ```
pub fn status_text_for(clients: &[XdsClient]) -> String {
    let now = SystemTime::now();
    let mut out = String::new();
    if clients.is_empty() {
        out.push_str("no xDS client in this process\n");
    }
    for client in clients {
        let dump = client.config_dump();
        let _ = writeln!(
            out,
            "xDS client node {:?} server {}: {} resources",
            client.node_id(),
            client.server_uri(),
            dump.len()
        );
        for r in dump {
            let _ = write!(
                out,
                "  {} {} {}",
                r.resource_type.short_name(),
                r.name,
                r.status.as_str()
            );
            if let Some(at) = r.last_updated {
                let _ = write!(out, " version {:?} updated {}", r.version, ago(now, at));
            }
            if let Some(e) = &r.error {
                let _ = write!(
                    out,
                    "; rejected version {:?} {}: {}",
                    e.version,
                    ago(now, e.time),
                    e.details
                );
            }
            out.push('\n');
        }
    }
    out
}

fn ago(now: SystemTime, then: SystemTime) -> String {
    match now.duration_since(then) {
        Ok(d) => format!("{}s ago", d.as_secs()),
        Err(_) => "just now".to_string(),
    }
}

/// Serves [`status_text`] as `text/plain` at `/` and `/status` (404 elsewhere) over
/// HTTP/1.1 until `shutdown` resolves; open connections are then closed.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
/// mesh_client::admin::serve_status_page(listener, std::future::pending()).await
/// # }
/// ```
pub async fn serve_status_page(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connections so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Per-connection failures (e.g. too many open files) must not end
                    // the page; back off briefly instead of spinning.
                    tracing::debug!(error = %e, "status page: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        connections.spawn(async move {
            let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                Ok::<_, std::convert::Infallible>(respond(req.method(), req.uri().path()))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_REQUEST_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "status page: connection ended with an error");
            }
        });
    }
    connections.shutdown().await;
    Ok(())
}

fn respond(method: &http::Method, path: &str) -> http::Response<Full<Bytes>> {
    let (status, body) = match (method, path) {
        (&http::Method::GET, "/" | "/status") => (http::StatusCode::OK, status_text()),
        (&http::Method::GET, _) => (http::StatusCode::NOT_FOUND, "not found\n".to_string()),
        _ => (
            http::StatusCode::METHOD_NOT_ALLOWED,
            "only GET\n".to_string(),
        ),
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
