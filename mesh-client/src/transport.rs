//! Endpoint connections: one HTTP/2 connection per endpoint address, kept warm and
//! reconnected with backoff (gRFC A6 connection backoff: 1 s base, ×1.6, ±20 % jitter,
//! 120 s cap).
//!
//! A [`ConnectionSet`] owns every connection of one channel, keyed by address, so a config
//! update that keeps an address keeps its connection (no reconnect storms). Removing an
//! address stops reconnecting, but the existing connection is driven until its in-flight
//! streams finish (bounded by a grace period), so a removed endpoint finishes its RPCs.
//!
//! A TLS connection lives no longer than the certificates it was authenticated with: at
//! the earlier `notAfter` of our identity leaf and the peer's, it is closed (in-flight
//! streams finish), and while our own certificate stays expired no handshake is attempted;
//! the connection fails with an error naming the certificate, which RPCs then report.
//!
//! The request path only ever reads: [`EndpointConnection::sender`] is one `ArcSwap` load
//! and a clone of hyper's `SendRequest` (a reference-count bump).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::Notify;

use crate::balance::{EndpointLoad, InFlightGuard};

/// The request body type every endpoint connection carries.
pub type RequestBody = tonic::body::Body;

/// The HTTP/2 sender of one connection.
pub type Sender = SendRequest<RequestBody>;

/// Connectivity of one endpoint (gRPC's subchannel states, minus SHUTDOWN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnectivityState {
    /// Not connected yet.
    Idle = 0,
    /// A connection attempt is in progress.
    Connecting = 1,
    /// Connected; requests can be sent.
    Ready = 2,
    /// The last attempt failed; waiting for the backoff to retry.
    TransientFailure = 3,
}

impl ConnectivityState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => ConnectivityState::Connecting,
            2 => ConnectivityState::Ready,
            3 => ConnectivityState::TransientFailure,
            _ => ConnectivityState::Idle,
        }
    }
}

/// Connection settings shared by every endpoint of a channel.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// Time allowed for TCP connect plus the HTTP/2 handshake.
    pub connect_timeout: Duration,
    /// First reconnect delay.
    pub backoff_base: Duration,
    /// Backoff multiplier.
    pub backoff_multiplier: f64,
    /// Jitter, as a fraction of the delay (0.2 = ±20 %).
    pub backoff_jitter: f64,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// How long a removed endpoint's connection is driven to let in-flight RPCs finish.
    pub drain_grace: Duration,
    /// HTTP/2 keepalive ping interval (`None`: off).
    pub keepalive_interval: Option<Duration>,
    /// HTTP/2 keepalive ping timeout.
    pub keepalive_timeout: Duration,
    /// Largest header list accepted from the server.
    pub max_header_list_size: u32,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        ConnectSettings {
            connect_timeout: Duration::from_secs(20),
            backoff_base: Duration::from_secs(1),
            backoff_multiplier: 1.6,
            backoff_jitter: 0.2,
            backoff_max: Duration::from_secs(120),
            drain_grace: Duration::from_secs(30),
            keepalive_interval: Some(Duration::from_secs(60)),
            keepalive_timeout: Duration::from_secs(20),
            max_header_list_size: 16 * 1024,
        }
    }
}

impl ConnectSettings {
    /// The reconnect delay after `attempt` consecutive failures (0-based), with jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base =
            self.backoff_base.as_secs_f64() * self.backoff_multiplier.powi(attempt.min(64) as i32);
        let capped = base.min(self.backoff_max.as_secs_f64());
        let jitter = 1.0 + self.backoff_jitter * (rand::random::<f64>() * 2.0 - 1.0);
        Duration::from_secs_f64((capped * jitter).max(0.0))
    }
}

struct ConnInner {
    addr: SocketAddr,
    /// TLS for this connection (mTLS with SPIFFE identities), or plaintext. Boxed: most
    /// endpoints are plaintext, and this struct exists once per endpoint.
    tls: Option<Box<TlsClient>>,
    /// Signalled when a request found the connection unusable: reconnect now and let the
    /// old connection drain.
    unusable: Notify,
    sender: ArcSwapOption<Sender>,
    /// The verified SPIFFE ID of the server on the live TLS connection, if it has one.
    peer_identity: ArcSwapOption<String>,
    state: AtomicU8,
    last_error: Mutex<Option<String>>,
    changed: Arc<Notify>,
    /// In-flight count and RTT estimate, read by the load-aware pickers.
    load: Arc<EndpointLoad>,
    /// Set (then `stop` notified) when the last [`EndpointConnection`] clone is dropped.
    stop_flag: AtomicBool,
    stop: Notify,
}

impl ConnInner {
    fn new(addr: SocketAddr, tls: Option<TlsClient>, changed: Arc<Notify>) -> Self {
        ConnInner {
            addr,
            tls: tls.map(Box::new),
            unusable: Notify::new(),
            sender: ArcSwapOption::empty(),
            peer_identity: ArcSwapOption::empty(),
            state: AtomicU8::new(ConnectivityState::Idle as u8),
            last_error: Mutex::new(None),
            changed,
            load: Default::default(),
            stop_flag: AtomicBool::new(false),
            stop: Notify::new(),
        }
    }

    fn set_state(&self, s: ConnectivityState) {
        self.state.store(s as u8, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Resolves once the endpoint has been removed (its last handle dropped).
    async fn stopped(&self) {
        loop {
            // Created before the check: `notify_waiters` wakes it even if not yet polled.
            let notified = self.stop.notified();
            if self.stop_flag.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// Tells the connection task to stop when the last [`EndpointConnection`] clone drops it.
/// (A flag and a `Notify` in [`ConnInner`] rather than a `watch` channel: tokio's `watch`
/// shares a few hundred bytes of state, once per endpoint.)
struct StopOnDrop(Arc<ConnInner>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop_flag.store(true, Ordering::Release);
        self.0.stop.notify_waiters();
    }
}

/// One endpoint's connection. Cloning shares it; dropping the last clone stops reconnecting
/// and lets the live connection drain.
#[derive(Clone)]
pub struct EndpointConnection {
    inner: Arc<ConnInner>,
    _stop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for EndpointConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConnection")
            .field("addr", &self.inner.addr)
            .field("state", &self.state())
            .finish()
    }
}

impl EndpointConnection {
    /// Starts connecting to `addr` in the background (must be called in a tokio runtime).
    /// `changed` is notified on every state change.
    pub fn spawn(
        addr: SocketAddr,
        settings: impl Into<Arc<ConnectSettings>>,
        changed: Arc<Notify>,
        tls: Option<TlsClient>,
    ) -> Self {
        let inner = Arc::new(ConnInner::new(addr, tls, changed));
        tokio::spawn(run_connection(inner.clone(), settings.into()));
        EndpointConnection {
            _stop: Arc::new(StopOnDrop(inner.clone())),
            inner,
        }
    }

    /// The endpoint address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Current connectivity.
    pub fn state(&self) -> ConnectivityState {
        ConnectivityState::from_u8(self.inner.state.load(Ordering::Acquire))
    }

    /// Whether a request can be sent now.
    pub fn is_ready(&self) -> bool {
        self.state() == ConnectivityState::Ready
    }

    /// A sender for the live connection, if connected.
    pub fn sender(&self) -> Option<Sender> {
        let guard = self.inner.sender.load();
        guard.as_ref().map(|s| Sender::clone(s))
    }

    /// Reports that a request could not be sent on the live connection (GOAWAY received or
    /// closed): the connection stops being picked and a new one is made at once, while the
    /// old one finishes its in-flight streams.
    pub fn mark_unusable(&self) {
        if self.inner.sender.swap(None).is_some() {
            self.inner.set_state(ConnectivityState::Connecting);
            self.inner.unusable.notify_one();
        }
    }

    /// The verified SPIFFE ID of the server on the live TLS connection (`None` for
    /// plaintext, a peer without one, or no connection).
    pub fn peer_identity(&self) -> Option<Arc<String>> {
        self.inner.peer_identity.load_full()
    }

    /// The error of the last failed connection attempt, if any.
    pub fn last_error(&self) -> Option<String> {
        self.inner.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// The endpoint's load signals (in-flight requests, RTT estimate).
    pub fn load(&self) -> &Arc<EndpointLoad> {
        &self.inner.load
    }

    /// Counts a request as in flight until the guard is dropped; completing the guard when
    /// the response headers arrive records the RTT (gRFC A48 outstanding request counter).
    pub fn start_request(&self) -> InFlightGuard {
        self.inner.load.start_at(crate::balance::now_ns())
    }

    /// An endpoint in `state` with no connection behind it, for picker tests (and the
    /// `bench` feature's [`crate::balance::ClusterPool::for_bench`]).
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn test_with_state(addr: SocketAddr, state: ConnectivityState) -> Self {
        let inner = Arc::new(ConnInner::new(addr, None, Arc::new(Notify::new())));
        inner.state.store(state as u8, Ordering::Release);
        EndpointConnection {
            _stop: Arc::new(StopOnDrop(inner.clone())),
            inner,
        }
    }

    /// A ready endpoint with no connection behind it, for picker tests.
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn test_ready(addr: SocketAddr) -> Self {
        Self::test_with_state(addr, ConnectivityState::Ready)
    }

    /// Sets the state of a test endpoint.
    #[cfg(test)]
    pub(crate) fn test_set_state(&self, state: ConnectivityState) {
        self.inner.state.store(state as u8, Ordering::Release);
    }
}

/// The endpoint was removed while a phase of [`run_connection`] ran.
struct Stopped;

/// How a live connection's service ended.
enum Served {
    /// The connection closed or failed.
    Ended,
    /// A request found it unusable (GOAWAY): drain it and connect again.
    Unusable,
    /// The endpoint was removed.
    Stopped,
    /// A certificate the connection was authenticated with expired.
    Expired,
}

/// Connects, serves, and reconnects with backoff until the endpoint is removed.
///
/// Each phase (connect attempt, greeting, service, backoff) is a boxed future that exists
/// only while it runs: inline, the largest of them (the TCP, TLS and HTTP/2 handshakes, a
/// few kilobytes) would size the task of every endpoint, connected or not.
async fn run_connection(inner: Arc<ConnInner>, settings: Arc<ConnectSettings>) {
    let mut failures: u32 = 0;
    loop {
        inner.set_state(ConnectivityState::Connecting);
        let Ok(result) = Box::pin(attempt(&inner, &settings)).await else {
            return;
        };
        match result {
            Ok((
                sender,
                conn,
                spoke,
                TlsPeer {
                    valid_until,
                    identity,
                },
            )) => {
                let mut conn = Box::pin(conn);
                // Ready only once the server has spoken (its SETTINGS come first), as gRPC
                // does: a server that accepts and closes (an xDS server that is not serving,
                // gRFC A36) must not look ready and fail the RPCs sent to it.
                let Ok(greeted) = Box::pin(greeting(&inner, &settings, &spoke, &mut conn)).await
                else {
                    return;
                };
                if let Err(e) = greeted {
                    record_failure(&inner, e);
                    failures = failures.saturating_add(1);
                    if Box::pin(backoff(&inner, settings.backoff(failures - 1)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
                failures = 0;
                if let Ok(mut e) = inner.last_error.lock() {
                    *e = None;
                }
                inner.peer_identity.store(identity);
                inner.sender.store(Some(Arc::new(sender)));
                inner.set_state(ConnectivityState::Ready);
                tracing::debug!(addr = %inner.addr, "endpoint connected");
                let served = Box::pin(serve(&inner, &mut conn, valid_until.as_ref())).await;
                inner.sender.store(None);
                inner.peer_identity.store(None);
                match served {
                    Served::Ended => inner.set_state(ConnectivityState::Idle),
                    Served::Expired => {
                        // A certificate the connection was authenticated with expired: the
                        // connection ends with it (in-flight streams finish), and the next
                        // attempt says why it cannot reconnect until the file is renewed.
                        if let Some(v) = &valid_until {
                            tracing::warn!(addr = %inner.addr, reason = %v.reason, "closing the TLS connection");
                        }
                        let grace = settings.drain_grace;
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(grace, conn).await;
                        });
                        continue;
                    }
                    Served::Unusable => {
                        // Draining (GOAWAY): finish in-flight streams in the background
                        // and connect again now.
                        let grace = settings.drain_grace;
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(grace, conn).await;
                        });
                        continue;
                    }
                    Served::Stopped => {
                        inner.set_state(ConnectivityState::Idle);
                        // Removed from config: no new requests, let in-flight ones finish.
                        let _ = Box::pin(tokio::time::timeout(settings.drain_grace, conn)).await;
                        return;
                    }
                }
            }
            Err(e) => {
                record_failure(&inner, e);
                failures = failures.saturating_add(1);
            }
        }
        let delay = if failures == 0 {
            Duration::ZERO
        } else {
            settings.backoff(failures - 1)
        };
        if Box::pin(backoff(&inner, delay)).await.is_err() {
            return;
        }
    }
}

/// One connection attempt (TCP, TLS, HTTP/2 handshake) within the connect timeout.
async fn attempt(
    inner: &ConnInner,
    settings: &ConnectSettings,
) -> Result<Result<(Sender, Conn, Arc<Spoke>, TlsPeer), String>, Stopped> {
    tokio::select! {
        r = tokio::time::timeout(settings.connect_timeout, connect(inner, settings)) => {
            Ok(r.unwrap_or_else(|_| Err(format!("timed out after {:?}", settings.connect_timeout))))
        }
        _ = inner.stopped() => Err(Stopped),
    }
}

/// Waits for the server's first bytes on a new connection (its HTTP/2 preface).
async fn greeting(
    inner: &ConnInner,
    settings: &ConnectSettings,
    spoke: &Spoke,
    conn: &mut std::pin::Pin<Box<Conn>>,
) -> Result<Result<(), String>, Stopped> {
    tokio::select! {
        _ = spoke.notified() => Ok(Ok(())),
        r = conn => Ok(Err(match r {
            Ok(()) => "the server closed the connection before its HTTP/2 preface (is it serving?)".to_string(),
            Err(e) => format!("connection failed before the server's HTTP/2 preface: {}", error_chain(&e)),
        })),
        _ = tokio::time::sleep(settings.connect_timeout) => Ok(Err(format!(
            "no HTTP/2 preface from the server within {:?}",
            settings.connect_timeout
        ))),
        _ = inner.stopped() => Err(Stopped),
    }
}

/// Drives a live connection until it ends, is found unusable, or the endpoint is removed.
async fn serve(
    inner: &ConnInner,
    conn: &mut std::pin::Pin<Box<Conn>>,
    valid_until: Option<&ValidUntil>,
) -> Served {
    tokio::select! {
        () = until(valid_until) => Served::Expired,
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(addr = %inner.addr, error = %e, "endpoint connection ended");
            }
            Served::Ended
        }
        _ = inner.unusable.notified() => Served::Unusable,
        _ = inner.stopped() => Served::Stopped,
    }
}

/// Sleeps `delay` unless the endpoint is removed first.
async fn backoff(inner: &ConnInner, delay: Duration) -> Result<(), Stopped> {
    tokio::select! {
        _ = tokio::time::sleep(delay) => Ok(()),
        _ = inner.stopped() => Err(Stopped),
    }
}

fn record_failure(inner: &ConnInner, e: String) {
    tracing::debug!(addr = %inner.addr, error = %e, "endpoint connect failed");
    if let Ok(mut slot) = inner.last_error.lock() {
        *slot = Some(e);
    }
    inner.set_state(ConnectivityState::TransientFailure);
}

/// A connection's byte stream: TCP, or TLS over TCP.
pub(crate) trait Io:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

type Conn =
    hyper::client::conn::http2::Connection<TokioIo<Box<dyn Io>>, RequestBody, TokioExecutor>;

/// What a connection needs for mTLS: the current client config (rotated as certificates
/// change: each new handshake uses the latest) and the name to present as SNI.
#[derive(Debug, Clone)]
pub struct TlsClient {
    /// Identifies the security settings; connections are shared only when they match.
    pub key: Arc<str>,
    /// The client configs, `None` until the certificate providers have material.
    pub configs: tokio::sync::watch::Receiver<Option<Arc<rustls::ClientConfig>>>,
    /// SNI (the `UpstreamTlsContext.sni`, else the address, which sends none).
    pub server_name: rustls::pki_types::ServerName<'static>,
    /// The identity provider's material (mTLS), checked for expiry before each handshake.
    pub identity: Option<crate::identity::MaterialWatch>,
}

/// What a TLS handshake established about the connection (nothing for plaintext).
#[derive(Debug, Default)]
struct TlsPeer {
    /// When the connection stops being trusted.
    valid_until: Option<ValidUntil>,
    /// The server's verified SPIFFE ID.
    identity: Option<Arc<String>>,
}

/// When a TLS connection stops being trusted: the earlier `notAfter` of the two leaf
/// certificates it was authenticated with.
#[derive(Debug, Clone)]
struct ValidUntil {
    at: SystemTime,
    reason: String,
}

/// Resolves at `valid_until` (never without one).
async fn until(valid_until: Option<&ValidUntil>) {
    match valid_until {
        Some(v) => {
            let left = v.at.duration_since(SystemTime::now()).unwrap_or_default();
            // notAfter is inclusive: the certificate is still valid during that second.
            tokio::time::sleep(left + Duration::from_millis(1)).await;
        }
        None => std::future::pending().await,
    }
}

/// The peer leaf's `notAfter`, when the handshake gave one that parses.
fn peer_valid_until(conn: &rustls::ClientConnection, addr: SocketAddr) -> Option<ValidUntil> {
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let not_after = cert.validity().not_after;
    let seconds = u64::try_from(not_after.timestamp()).ok()?;
    Some(ValidUntil {
        // Our verifier (webpki) accepts the peer's certificate to the end of its notAfter
        // second: closing earlier would only reconnect to the same certificate for the
        // rest of that second.
        at: SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds.saturating_add(1)))?,
        reason: format!(
            "the peer certificate of {addr} (serial {}) expired at {not_after} (notAfter)",
            cert.raw_serial_as_string().replace(':', "").to_lowercase()
        ),
    })
}

async fn tls_handshake(
    tls: &TlsClient,
    addr: SocketAddr,
    tcp: tokio::net::TcpStream,
) -> Result<(Box<dyn Io>, TlsPeer), String> {
    let mut configs = tls.configs.clone();
    // Bounded by the caller's connect timeout.
    let config = loop {
        if let Some(c) = configs.borrow_and_update().clone() {
            break c;
        }
        if configs.changed().await.is_err() {
            return Err("the certificate provider stopped before it had certificates".into());
        }
    };
    // An expired identity fails here, locally and by name, rather than as the peer's
    // "bad certificate" alert (and never as plaintext).
    let own = tls
        .identity
        .as_ref()
        .and_then(|w| w.borrow().clone())
        .and_then(|m| m.identity().cloned());
    let mut valid_until = None;
    if let Some(id) = own {
        if id.is_expired_at(SystemTime::now()) {
            return Err(format!("TLS to {addr}: {}", id.expired_message()));
        }
        valid_until = Some(ValidUntil {
            at: id.not_after(),
            reason: id.expired_message(),
        });
    }
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(tls.server_name.clone(), tcp)
        .await
        .map_err(|e| {
            let why = crate::identity::IdentityError::from_io(&e)
                .map(|i| i.to_string())
                .unwrap_or_else(|| e.to_string());
            format!("TLS handshake with {addr}: {why}")
        })?;
    let conn = stream.get_ref().1;
    if let Some(peer) = peer_valid_until(conn, addr)
        && valid_until.as_ref().is_none_or(|own| peer.at < own.at)
    {
        valid_until = Some(peer);
    }
    let identity = conn
        .peer_certificates()
        .and_then(crate::identity::peer_identity)
        .and_then(|p| p.spiffe_id)
        .map(|id| Arc::new(id.to_string()));
    Ok((
        Box::new(stream),
        TlsPeer {
            valid_until,
            identity,
        },
    ))
}

/// Signalled by [`Greeted`] when the server's first bytes arrive.
#[derive(Default)]
struct Spoke {
    seen: std::sync::atomic::AtomicBool,
    notify: Notify,
}

impl Spoke {
    async fn notified(&self) {
        loop {
            let n = self.notify.notified();
            if self.seen.load(Ordering::Acquire) {
                return;
            }
            n.await;
        }
    }
}

/// A byte stream that reports when the peer first sends something.
struct Greeted {
    inner: Box<dyn Io>,
    spoke: Arc<Spoke>,
}

impl tokio::io::AsyncRead for Greeted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && !self.spoke.seen.swap(true, Ordering::AcqRel) {
            self.spoke.notify.notify_waiters();
        }
        r
    }
}

impl tokio::io::AsyncWrite for Greeted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

async fn connect(
    inner: &ConnInner,
    settings: &ConnectSettings,
) -> Result<(Sender, Conn, Arc<Spoke>, TlsPeer), String> {
    let tcp = tokio::net::TcpStream::connect(inner.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", inner.addr))?;
    let _ = tcp.set_nodelay(true);
    let (io, tls_peer): (Box<dyn Io>, _) = match &inner.tls {
        None => (Box::new(tcp), TlsPeer::default()),
        Some(tls) => Box::pin(tls_handshake(tls, inner.addr, tcp)).await?,
    };
    let spoke = Arc::new(Spoke::default());
    let io: Box<dyn Io> = Box::new(Greeted {
        inner: io,
        spoke: spoke.clone(),
    });
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(settings.max_header_list_size)
        .keep_alive_interval(settings.keepalive_interval)
        .keep_alive_timeout(settings.keepalive_timeout)
        .adaptive_window(true);
    builder
        .handshake(TokioIo::new(io))
        .await
        .map(|(sender, conn)| (sender, conn, spoke, tls_peer))
        .map_err(|e| format!("HTTP/2 handshake with {}: {e}", inner.addr))
}

type ConnKey = (SocketAddr, Option<Arc<str>>);

/// Every endpoint connection of one channel, keyed by address and security settings.
#[derive(Debug, Clone)]
pub struct ConnectionSet {
    conns: Arc<Mutex<HashMap<ConnKey, EndpointConnection>>>,
    changed: Arc<Notify>,
    settings: Arc<ConnectSettings>,
    identity: Option<Arc<crate::identity::ProviderRegistry>>,
    tls: Arc<Mutex<HashMap<String, TlsClient>>>,
}

impl ConnectionSet {
    /// An empty set.
    pub fn new(settings: ConnectSettings) -> Self {
        ConnectionSet {
            conns: Arc::new(Mutex::new(HashMap::new())),
            changed: Arc::new(Notify::new()),
            settings: Arc::new(settings),
            identity: None,
            tls: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Uses these certificate provider instances for TLS clusters.
    pub fn with_identity(mut self, registry: Arc<crate::identity::ProviderRegistry>) -> Self {
        self.identity = Some(registry);
        self
    }

    /// The TLS settings for a cluster's `UpstreamTlsContext`; an error (no certificate
    /// providers, unknown instance) means the cluster cannot be used: it is never dialled
    /// in plaintext instead.
    pub fn tls_client(&self, tls: &crate::config::UpstreamTls) -> Result<TlsClient, String> {
        let registry = self.identity.as_ref().ok_or_else(|| {
            "the cluster requires TLS, but this channel has no certificate providers".to_string()
        })?;
        let key = format!("{tls:?}");
        let mut cache = match self.tls.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some(t) = cache.get(&key) {
            return Ok(t.clone());
        }
        let configs = registry.client_tls(tls)?;
        let identity = match &tls.identity {
            Some(i) => Some(registry.get(&i.instance_name)?.subscribe()),
            None => None,
        };
        let server_name = match &tls.sni {
            Some(sni) => rustls::pki_types::ServerName::try_from(sni.clone())
                .map_err(|e| format!("sni {sni:?}: {e}"))?,
            // An IP address: rustls sends no SNI for it; identity is checked by SAN.
            None => rustls::pki_types::ServerName::IpAddress(
                std::net::IpAddr::from([127, 0, 0, 1]).into(),
            ),
        };
        let client = TlsClient {
            key: key.as_str().into(),
            configs,
            server_name,
            identity,
        };
        cache.insert(key, client.clone());
        Ok(client)
    }

    /// Notified whenever any connection of the set changes state.
    pub fn changed(&self) -> &Arc<Notify> {
        &self.changed
    }

    /// The plaintext connection for `addr`, created (and started) if it is new.
    pub fn get_or_connect(&self, addr: SocketAddr) -> EndpointConnection {
        self.get_or_connect_with(addr, None)
    }

    /// The connection for `addr` with these TLS settings (or plaintext), created if new.
    pub fn get_or_connect_with(
        &self,
        addr: SocketAddr,
        tls: Option<&TlsClient>,
    ) -> EndpointConnection {
        let mut conns = match self.conns.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        conns
            .entry((addr, tls.map(|t| t.key.clone())))
            .or_insert_with(|| {
                EndpointConnection::spawn(
                    addr,
                    self.settings.clone(),
                    self.changed.clone(),
                    tls.cloned(),
                )
            })
            .clone()
    }

    /// Keeps only the connections whose address is in `keep`; the others drain and close.
    pub fn retain(&self, keep: &std::collections::HashSet<SocketAddr>) {
        let mut conns = match self.conns.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        conns.retain(|(addr, _), _| keep.contains(addr));
    }

    /// Reports that a request could not be sent to `addr` on its current connection.
    pub fn connection_failed(&self, addr: SocketAddr) {
        let conns = match self.conns.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        for ((a, _), c) in conns.iter() {
            if *a == addr {
                c.mark_unusable();
            }
        }
    }

    /// Number of connections held.
    pub fn len(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An error and its sources, `: `-joined (the top-level messages of hyper and tonic errors
/// say little; the cause is in the chain).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    // Error chains are short; the bound only guards against a cyclic `source`.
    for _ in 0..8 {
        let Some(s) = source else { break };
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A server that accepts but never speaks HTTP/2 keeps the client in its greeting phase;
    /// dropping the last handle must end the task, which closes the socket.
    #[tokio::test]
    async fn dropping_the_last_handle_stops_the_connection_task() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conn = EndpointConnection::spawn(
            addr,
            ConnectSettings::default(),
            Arc::new(Notify::new()),
            None,
        );
        let clone = conn.clone();
        let (mut sock, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .unwrap()
            .unwrap();
        drop(conn);
        assert_eq!(
            clone.state(),
            ConnectivityState::Connecting,
            "a clone keeps it"
        );
        drop(clone);
        let mut buf = [0u8; 4096];
        let mut closed = false;
        for _ in 0..100 {
            match tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(_)) => {} // the client's preface and SETTINGS
                Err(_) => break,
            }
        }
        assert!(
            closed,
            "the client's socket was not closed after its last handle dropped"
        );
    }
}
