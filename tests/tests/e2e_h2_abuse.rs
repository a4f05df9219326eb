//! End-to-end: HTTP/2 abuse against an xDS-managed MeshServer (RFC 9113, gRFC A36
//! servers): rapid reset (CVE-2023-44487), CONTINUATION flood (CVE-2024-27316 class),
//! header-list flood, slowloris, oversized gRPC messages and DATA beyond the flow-control
//! window.
//!
//! The server is the `greeter-server` example in a child process (default
//! [`mesh_server::Http2Limits`]), managed by an in-process mesh-control over real ADS, so
//! its memory is read cleanly from `/proc/<pid>/status`. While an attacker (raw frames,
//! [`mesh_tests::h2raw`]) runs, a well-behaved tonic client on its own connection makes
//! sequential RPCs; their p50/p99 before and during the attack are printed, never
//! asserted. Asserted: the server stays up, every well-behaved RPC succeeds, the attacker
//! is cut off (GOAWAY, reset streams, closed connection or a gRPC error) and the server's
//! peak RSS grows by less than 200 MiB. Tests run one at a time (a lock) so their numbers
//! do not mix; run with `--nocapture` for the table.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mesh_control::ControlPlane;
use mesh_tests::h2raw::{self, RawConn, flags, frame, kind};
use mesh_tests::server::{direct_hello, inbound_listener, inbound_name};
use prost::Message;
use tonic::transport::Channel;
use xds_proto::helloworld::HelloRequest;
use xds_proto::helloworld::greeter_client::GreeterClient;
use xds_proto::type_url;

/// One attack at a time: the numbers of concurrent attacks would mix.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Well-behaved RPCs measured before and during each attack.
const GOOD_RPCS: usize = 300;
/// Peak RSS growth allowed during an attack (generous: the point is "bounded").
const MAX_GROWTH_KIB: u64 = 200 * 1024;
/// No attack runs longer than this.
const ATTACK_CAP: Duration = Duration::from_secs(30);
const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";

/// The server under attack: a `greeter-server` child under an in-process control plane.
struct Target {
    _cp: mesh_control::RunningControlPlane,
    child: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
}

async fn start_target() -> Target {
    let bin = mesh_tests::binaries::greeter_server_bin().unwrap();
    let cp = ControlPlane::empty()
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    // A free port for the child (it binds it itself; the Listener must name it first).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    cp.control().set_resources(
        type_url::LISTENER,
        vec![(inbound_name(addr), inbound_listener(addr, "r", vec![]))],
    );
    let bootstrap = serde_json::json!({
        "xds_servers": [{
            "server_uri": cp.local_addr().to_string(),
            "channel_creds": [{"type": "insecure"}],
            "server_features": ["xds_v3"],
        }],
        "node": {"id": format!("abuse-{port}"), "cluster": "mesh-tests"},
        "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s"
    });
    let child = tokio::process::Command::new(bin)
        .args(["--port", &port.to_string(), "--id", "abuse"])
        .env_remove("GRPC_XDS_BOOTSTRAP")
        .env("GRPC_XDS_BOOTSTRAP_CONFIG", bootstrap.to_string())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if direct_hello(addr).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "greeter-server never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Target {
        _cp: cp,
        child,
        pid,
        addr,
    }
}

/// `(VmRSS, VmHWM)` of `pid` in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[derive(Clone, Copy)]
struct Latency {
    p50: Duration,
    p99: Duration,
}

async fn good_client(addr: SocketAddr) -> GreeterClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    GreeterClient::new(channel)
}

/// `n` sequential SayHellos; every one must succeed.
async fn measure(client: &mut GreeterClient<Channel>, n: usize, phase: &str) -> Latency {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let reply = client
            .say_hello(HelloRequest {
                name: "good".into(),
            })
            .await;
        took.push(started.elapsed());
        if let Err(status) = reply {
            panic!("well-behaved RPC {i} {phase} the attack failed: {status:?}");
        }
    }
    took.sort();
    Latency {
        p50: took[n / 2],
        p99: took[(n * 99 / 100).min(n - 1)],
    }
}

/// What an attack did and how the server answered it.
struct Outcome {
    /// One line for the table.
    summary: String,
    /// Attacker connections (or attempts) the server cut off: GOAWAY, closed, every
    /// stream refused, or the abusive RPC failed.
    cut_off: u64,
    /// Attacker connections (or attempts) in all.
    attempts: u64,
}

/// Starts a server, measures the good client, runs `attack` while measuring again, and
/// prints one table row. Returns the attack's outcome for the test's own assertions.
async fn run_attack<F, Fut>(name: &str, attack: F) -> Outcome
where
    F: FnOnce(SocketAddr, Arc<AtomicBool>) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let _serial = SERIAL.lock().await;
    mesh_tests::init_tracing();
    let mut target = start_target().await;
    let mut good = good_client(target.addr).await;
    measure(&mut good, 50, "warming up before").await;
    let before = measure(&mut good, GOOD_RPCS, "before").await;
    let (rss_before, _) = memory(target.pid);

    let stop = Arc::new(AtomicBool::new(false));
    let attack = tokio::spawn(attack(target.addr, stop.clone()));
    // Let the attack get going before measuring under it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = measure(&mut good, GOOD_RPCS, "during").await;
    stop.store(true, Ordering::Relaxed);
    let outcome = tokio::time::timeout(ATTACK_CAP + Duration::from_secs(30), attack)
        .await
        .expect("the attack ends within its cap")
        .expect("the attack task does not panic");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_after, hwm) = memory(target.pid);

    assert!(
        target.child.try_wait().unwrap().is_none(),
        "{name}: the server process died"
    );
    // The server still serves the good client and brand-new connections.
    measure(&mut good, 10, "after").await;
    direct_hello(target.addr)
        .await
        .expect("a new connection is served after the attack");

    let growth = hwm.saturating_sub(rss_before);
    print_row(
        name,
        rss_before,
        hwm,
        rss_after,
        before,
        during,
        &outcome.summary,
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "{name}: peak RSS grew by {growth} KiB (before {rss_before} KiB, peak {hwm} KiB)"
    );
    let _ = target.child.kill().await;
    outcome
}

fn print_row(
    name: &str,
    before_kib: u64,
    peak_kib: u64,
    after_kib: u64,
    good_before: Latency,
    good_during: Latency,
    outcome: &str,
) {
    static HEADER: std::sync::Once = std::sync::Once::new();
    HEADER.call_once(|| {
        println!(
            "| attack | server RSS before / peak / after (MiB) | good p50 / p99 before (ms) | good p50 / p99 during (ms) | outcome |"
        );
        println!("|---|---|---|---|---|");
    });
    let mib = |k: u64| k as f64 / 1024.0;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {name} | {:.1} / {:.1} / {:.1} | {:.2} / {:.2} | {:.2} / {:.2} | {outcome} |",
        mib(before_kib),
        mib(peak_kib),
        mib(after_kib),
        ms(good_before.p50),
        ms(good_before.p99),
        ms(good_during.p50),
        ms(good_during.p99),
    );
}

/// True while the attack should go on.
fn going(stop: &AtomicBool, started: Instant) -> bool {
    !stop.load(Ordering::Relaxed) && started.elapsed() < ATTACK_CAP
}

fn describe_goaway(code: Option<u32>) -> &'static str {
    match code {
        Some(0x0) => "NO_ERROR",
        Some(0x1) => "PROTOCOL_ERROR",
        Some(0x3) => "FLOW_CONTROL_ERROR",
        Some(0x6) => "FRAME_SIZE_ERROR",
        Some(0x7) => "REFUSED_STREAM",
        Some(0x9) => "COMPRESSION_ERROR",
        Some(0xb) => "ENHANCE_YOUR_CALM",
        Some(_) => "other",
        None => "none",
    }
}

/// Rapid reset (CVE-2023-44487): HEADERS immediately followed by RST_STREAM(CANCEL), in
/// batches of 100 streams, on one connection after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_cut_off() {
    let out = run_attack("rapid reset", |addr, stop| async move {
        let block = h2raw::grpc_request_block(SAY_HELLO, &addr.to_string());
        let started = Instant::now();
        let (mut attempts, mut cut_off, mut streams) = (0u64, 0u64, 0u64);
        let mut codes = std::collections::BTreeMap::<&str, u64>::new();
        while going(&stop, started) && attempts < 2_000 {
            let Ok(mut conn) = RawConn::connect(addr).await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            attempts += 1;
            let mut id = 1u32;
            // At most 1 000 batches (100 000 streams) per connection.
            for _ in 0..1_000 {
                if !going(&stop, started) {
                    break;
                }
                let mut buf = Vec::with_capacity(100 * (block.len() + 30));
                for _ in 0..100 {
                    frame(&mut buf, kind::HEADERS, flags::END_HEADERS, id, &block);
                    frame(
                        &mut buf,
                        kind::RST_STREAM,
                        0,
                        id,
                        &h2raw::CANCEL.to_be_bytes(),
                    );
                    id += 2;
                }
                if conn.send(&buf).await.is_err() {
                    break;
                }
                streams += 100;
                let o = conn.observed();
                if o.goaway.is_some() || o.closed {
                    break;
                }
                tokio::task::yield_now().await;
            }
            conn.wait_closed(Duration::from_secs(1)).await;
            let o = conn.observed();
            if o.goaway.is_some() || o.closed {
                cut_off += 1;
            }
            *codes
                .entry(describe_goaway(o.goaway.map(|g| g.1)))
                .or_default() += 1;
        }
        Outcome {
            summary: format!(
                "{streams} streams opened+reset on {attempts} connections; {cut_off} cut off; GOAWAY codes {codes:?}"
            ),
            cut_off,
            attempts,
        }
    })
    .await;
    assert!(out.attempts > 0);
    assert!(
        out.cut_off >= out.attempts.saturating_sub(1),
        "rapid-reset connections were not cut off: {}",
        out.summary
    );
}

/// CONTINUATION flood (CVE-2024-27316 class): HEADERS without END_HEADERS, then
/// CONTINUATION frames that never end the block: full 16 KB frames of header literals on
/// even connections, empty frames on odd ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off() {
    let out = run_attack("CONTINUATION flood", |addr, stop| async move {
        let block = h2raw::grpc_request_block(SAY_HELLO, &addr.to_string());
        let mut full = Vec::new();
        while full.len() < 15_000 {
            h2raw::hpack_literal(&mut full, b"x-flood", &[b'a'; 990]);
        }
        let started = Instant::now();
        let (mut attempts, mut cut_off, mut sent_bytes) = (0u64, 0u64, 0u64);
        let mut results = Vec::new();
        while going(&stop, started) && attempts < 200 {
            let Ok(mut conn) = RawConn::connect(addr).await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let payload: &[u8] = if attempts % 2 == 0 { &full } else { &[] };
            attempts += 1;
            let mut buf = Vec::new();
            frame(&mut buf, kind::HEADERS, 0, 1, &block);
            let _ = conn.send(&buf).await;
            let mut frames = 0u64;
            // At most 4 096 frames (64 MiB of full frames) per connection.
            while frames < 4_096 && going(&stop, started) {
                let mut buf = Vec::with_capacity(64 * (payload.len() + 9));
                for _ in 0..64 {
                    frame(&mut buf, kind::CONTINUATION, 0, 1, payload);
                }
                if conn.send(&buf).await.is_err() {
                    break;
                }
                frames += 64;
                sent_bytes += buf.len() as u64;
                let o = conn.observed();
                if o.goaway.is_some() || o.closed {
                    break;
                }
                tokio::task::yield_now().await;
            }
            conn.wait_closed(Duration::from_secs(2)).await;
            let o = conn.observed();
            if o.goaway.is_some() || o.closed {
                cut_off += 1;
            }
            if results.len() < 2 {
                results.push(format!(
                    "{} frames: cut after {frames} frames, GOAWAY {}",
                    if payload.is_empty() { "empty" } else { "16 KB" },
                    describe_goaway(o.goaway.map(|g| g.1))
                ));
            }
        }
        Outcome {
            summary: format!(
                "{attempts} connections, {:.1} MiB of CONTINUATION; {cut_off} cut off; {}",
                sent_bytes as f64 / 1048576.0,
                results.join("; ")
            ),
            cut_off,
            attempts,
        }
    })
    .await;
    assert!(out.attempts > 0);
    assert_eq!(
        out.cut_off, out.attempts,
        "CONTINUATION floods not cut off: {}",
        out.summary
    );
}

/// Header-list flood: requests whose header list is far beyond
/// `SETTINGS_MAX_HEADER_LIST_SIZE` (16 KiB): 20 KiB and 220 KiB blocks (HEADERS plus
/// CONTINUATION), each followed by a valid HelloRequest. None may reach the application
/// (which would answer with DATA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_list_flood_is_refused() {
    let out = run_attack("header-list flood", |addr, stop| async move {
        let base = h2raw::grpc_request_block(SAY_HELLO, &addr.to_string());
        let blocks: Vec<Vec<u8>> = [200usize, 2_000]
            .iter()
            .map(|&n| {
                let mut b = base.clone();
                for i in 0..n {
                    h2raw::hpack_literal(&mut b, format!("x-h-{i:05}").as_bytes(), &[b'v'; 100]);
                }
                b
            })
            .collect();
        let body = h2raw::grpc_message(
            &HelloRequest {
                name: "flood".into(),
            }
            .encode_to_vec(),
        );
        let started = Instant::now();
        let (mut attempts, mut requests, mut cut_off) = (0u64, 0u64, 0u64);
        let (mut answers, mut data_bytes, mut rsts, mut goaways) = (0u64, 0u64, 0u64, 0u64);
        while going(&stop, started) && attempts < 500 {
            let Ok(mut conn) = RawConn::connect(addr).await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            attempts += 1;
            let mut id = 1u32;
            let mut sent = 0u64;
            // At most 100 requests per connection.
            while sent < 100 && going(&stop, started) {
                let block = &blocks[(id as usize / 2) % blocks.len()];
                let mut buf = Vec::new();
                let mut chunks = block.chunks(16_000).peekable();
                let mut first = true;
                while let Some(chunk) = chunks.next() {
                    let end = if chunks.peek().is_none() {
                        flags::END_HEADERS
                    } else {
                        0
                    };
                    let k = if first {
                        kind::HEADERS
                    } else {
                        kind::CONTINUATION
                    };
                    first = false;
                    frame(&mut buf, k, end, id, chunk);
                }
                frame(&mut buf, kind::DATA, flags::END_STREAM, id, &body);
                if conn.send(&buf).await.is_err() {
                    break;
                }
                id += 2;
                sent += 1;
                requests += 1;
                let o = conn.observed();
                if o.goaway.is_some() || o.closed {
                    break;
                }
                tokio::task::yield_now().await;
            }
            // Let the server answer the last requests.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let o = conn.observed();
            answers += o.headers;
            data_bytes += o.data_bytes;
            rsts += o.rst_streams;
            if o.goaway.is_some() {
                goaways += 1;
            }
            if o.goaway.is_some() || o.closed || o.headers + o.rst_streams >= sent {
                cut_off += 1;
            }
        }
        Outcome {
            summary: format!(
                "{requests} oversized requests on {attempts} connections: {answers} HEADERS answers (431), {rsts} RST_STREAM, {goaways} GOAWAY, {data_bytes} DATA bytes from the app"
            ),
            // Refused only if the application never answered.
            cut_off: if data_bytes == 0 { cut_off } else { 0 },
            attempts,
        }
    })
    .await;
    assert!(out.attempts > 0);
    assert_eq!(
        out.cut_off, out.attempts,
        "oversized header lists were not all refused: {}",
        out.summary
    );
}

/// Slowloris: 100 connections that send nothing, 100 that send 8 bytes of the preface,
/// and 100 that finish the preface and then idle. The first two kinds must be closed by
/// the handshake timeout (10 s); idle HTTP/2 connections are legitimate and stay (bounded
/// by keepalive and `max_connection_age`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_by_the_handshake_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const EACH: usize = 100;
    let out = run_attack("slowloris (3 x 100 connections)", |addr, stop| async move {
        let opened = Instant::now();
        let mut silent = Vec::new();
        let mut partial = Vec::new();
        let mut idle = Vec::new();
        for _ in 0..EACH {
            silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            let mut p = tokio::net::TcpStream::connect(addr).await.unwrap();
            p.write_all(&h2raw::PREFACE[..8]).await.unwrap();
            partial.push(p);
            idle.push(RawConn::connect(addr).await.unwrap());
        }
        let opening = opened.elapsed();
        // Hold them while the good client measures, and past the handshake timeout.
        let hold = Duration::from_secs(13);
        while !stop.load(Ordering::Relaxed) || opened.elapsed() < hold {
            if opened.elapsed() > ATTACK_CAP {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A closed connection reads EOF (or an error) at once.
        async fn closed(s: &mut tokio::net::TcpStream) -> bool {
            let mut b = [0u8; 256];
            loop {
                match tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await {
                    Err(_) => return false,
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    Ok(Ok(_)) => continue, // the server's SETTINGS, then silence
                }
            }
        }
        let mut silent_closed = 0u64;
        for s in &mut silent {
            silent_closed += u64::from(closed(s).await);
        }
        let mut partial_closed = 0u64;
        for s in &mut partial {
            partial_closed += u64::from(closed(s).await);
        }
        let idle_open = idle.iter().filter(|c| !c.observed().closed).count();
        Outcome {
            summary: format!(
                "opened in {:.1} s; after {:.0} s: silent {silent_closed}/{EACH} closed, partial preface {partial_closed}/{EACH} closed, idle after preface {idle_open}/{EACH} still open",
                opening.as_secs_f64(),
                opened.elapsed().as_secs_f64()
            ),
            cut_off: silent_closed + partial_closed,
            attempts: (2 * EACH) as u64,
        }
    })
    .await;
    assert_eq!(
        out.cut_off, out.attempts,
        "slowloris connections survived the handshake timeout: {}",
        out.summary
    );
}

/// Oversized messages: SayHello requests of 8 MiB (the server decodes at most 4 MiB),
/// from a client that lifts its own encoding limit, on their own connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_rejected() {
    let out = run_attack("oversized gRPC messages (8 MiB)", |addr, stop| async move {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let mut client = GreeterClient::new(channel).max_encoding_message_size(usize::MAX);
        let name = "x".repeat(8 * 1024 * 1024);
        let started = Instant::now();
        let (mut attempts, mut rejected) = (0u64, 0u64);
        let mut codes = std::collections::BTreeMap::<String, u64>::new();
        while going(&stop, started) && attempts < 200 {
            attempts += 1;
            let r = client.say_hello(HelloRequest { name: name.clone() }).await;
            let code = match r {
                Ok(_) => "OK".to_string(),
                Err(s) => format!("{:?}", s.code()),
            };
            // Rejected: any status but OK. The server answers OutOfRange, and may reset the
            // stream before the client has sent the whole body, which the client then
            // reports as Cancelled; either way the message was never served.
            if code != "OK" {
                rejected += 1;
            }
            *codes.entry(code).or_default() += 1;
        }
        Outcome {
            summary: format!("{attempts} RPCs of 8 MiB: {codes:?}"),
            cut_off: rejected,
            attempts,
        }
    })
    .await;
    assert!(out.attempts > 0);
    assert_eq!(
        out.cut_off, out.attempts,
        "oversized messages not all rejected: {}",
        out.summary
    );
}

/// DATA flood: a request whose message prefix claims 4 MiB + 1 byte, followed by 8 MiB of
/// DATA sent without waiting for WINDOW_UPDATE (the windows are 1 MiB per stream and
/// 2 MiB per connection), on one connection after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_flood_beyond_the_window_is_cut_off() {
    let out = run_attack("DATA flood beyond windows", |addr, stop| async move {
        let block = h2raw::grpc_request_block(SAY_HELLO, &addr.to_string());
        let mut prefix = vec![0u8];
        prefix.extend_from_slice(&(4 * 1024 * 1024 + 1u32).to_be_bytes());
        let chunk = vec![b'd'; 16_000];
        let started = Instant::now();
        let (mut attempts, mut cut_off, mut sent_bytes) = (0u64, 0u64, 0u64);
        let mut codes = std::collections::BTreeMap::<String, u64>::new();
        while going(&stop, started) && attempts < 500 {
            let Ok(mut conn) = RawConn::connect(addr).await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            attempts += 1;
            let mut buf = Vec::new();
            frame(&mut buf, kind::HEADERS, flags::END_HEADERS, 1, &block);
            frame(&mut buf, kind::DATA, 0, 1, &prefix);
            let _ = conn.send(&buf).await;
            let mut sent = 0usize;
            // 8 MiB per connection, 16 frames per write.
            while sent < 8 * 1024 * 1024 && going(&stop, started) {
                let mut buf = Vec::with_capacity(16 * (chunk.len() + 9));
                for _ in 0..16 {
                    frame(&mut buf, kind::DATA, 0, 1, &chunk);
                }
                if conn.send(&buf).await.is_err() {
                    break;
                }
                sent += 16 * chunk.len();
                let o = conn.observed();
                if o.goaway.is_some() || o.closed {
                    break;
                }
            }
            sent_bytes += sent as u64;
            conn.wait_closed(Duration::from_secs(1)).await;
            let o = conn.observed();
            let what = match (o.goaway, o.rst_streams) {
                (Some((_, code)), _) => format!("GOAWAY {}", describe_goaway(Some(code))),
                (None, n) if n > 0 => format!("RST {}", describe_goaway(o.last_rst_code)),
                _ if o.closed => "closed".into(),
                _ => "nothing".into(),
            };
            if what != "nothing" {
                cut_off += 1;
            }
            *codes.entry(what).or_default() += 1;
        }
        Outcome {
            summary: format!(
                "{attempts} connections, {:.0} MiB of DATA: {codes:?}",
                sent_bytes as f64 / 1048576.0
            ),
            cut_off,
            attempts,
        }
    })
    .await;
    assert!(out.attempts > 0);
    assert_eq!(
        out.cut_off, out.attempts,
        "DATA floods not cut off: {}",
        out.summary
    );
}
