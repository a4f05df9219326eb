//! End-to-end resilience: retries (gRFC A44) within a retry budget, call timeouts (A31),
//! circuit breaking (A32) and fault injection (A33), through MeshChannel against
//! mesh-control's ADS server on loopback, with measured numbers.
//!
//! The backends are scripted HTTP/2 gRPC servers ([`mesh_tests::scripted`]), so each test controls exactly
//! how an attempt fails: a Trailers-Only status, or headers first and the status in the
//! trailers. Each test uses its own service name, because circuit breakers and retry budgets
//! are shared per cluster across the process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mesh_client::MeshChannel;
use mesh_client::resilience::breaker::CircuitBreaker;
use mesh_control::{ControlPlane, MeshConfig, RunningControlPlane};
use mesh_tests::scripted::{Backend, Behaviour};
use mesh_tests::*;
use tonic::Code;
use xds_proto::helloworld::HelloRequest;
use xds_proto::helloworld::greeter_client::GreeterClient;

/// One service `{name}:8080` over `addrs`, with `extra` appended to the service entry
/// (indented as its fields).
async fn control_plane(name: &str, addrs: &[SocketAddr], extra: &str) -> RunningControlPlane {
    let mut y = format!("services:\n  - name: {name}\n    port: 8080\n    endpoints:\n");
    for a in addrs {
        y += &format!("      - address: {a}\n");
    }
    y += extra;
    let config = MeshConfig::from_yaml(&y).unwrap_or_else(|e| panic!("{e}\n{y}"));
    ControlPlane::start(([127, 0, 0, 1], 0).into(), config)
        .await
        .unwrap()
}

async fn client(cp: &RunningControlPlane, name: &str) -> GreeterClient<MeshChannel> {
    let channel = MeshChannel::builder(format!("xds:///{name}:8080"))
        .with_bootstrap(bootstrap_for(cp.local_addr(), name))
        .with_connect_timeout(Duration::from_secs(20))
        .connect()
        .await
        .expect("MeshChannel connects");
    GreeterClient::new(channel)
}

fn hello() -> HelloRequest {
    HelloRequest { name: "r".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_policy() {
    init_tracing();
    let name = "retry-policy.default";
    let b = Backend::start(Behaviour::FailFirst(2, Code::Unavailable)).await;
    let route = "    routes:\n      - retries: { attempts: 2, on: [unavailable], backoff: 5ms }\n";
    let cp = control_plane(name, &[b.addr], route).await;
    let mut c = client(&cp, name).await;

    // Two UNAVAILABLE answers, then OK: the call succeeds on its third attempt.
    c.say_hello(hello())
        .await
        .expect("succeeds on the third attempt");
    assert_eq!(b.calls(), 3);
    let attempts: Vec<_> = b
        .state
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.0.clone())
        .collect();
    assert_eq!(attempts, [None, Some("1".into()), Some("2".into())]);
    println!("retryable code: 3 attempts, grpc-previous-rpc-attempts {attempts:?}");

    // Always UNAVAILABLE: exactly num_retries + 1 = 3 attempts, then the error.
    *b.state.behaviour.lock().unwrap() = Behaviour::Fail(Code::Unavailable);
    let before = b.calls();
    let e = c.say_hello(hello()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(b.calls() - before, 3);

    // A code not in retry_on is never retried.
    *b.state.behaviour.lock().unwrap() = Behaviour::Fail(Code::Internal);
    let before = b.calls();
    let e = c.say_hello(hello()).await.unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    assert_eq!(b.calls() - before, 1, "INTERNAL is not retried");

    // Once response headers arrive the call is committed: a retryable status in the
    // trailers is not retried.
    *b.state.behaviour.lock().unwrap() = Behaviour::FailAfterHeaders(Code::Unavailable);
    let before = b.calls();
    let e = c.say_hello(hello()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(b.calls() - before, 1, "nothing is retried after headers");
    println!("non-retryable code: 1 attempt; failure after headers: 1 attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stay_within_the_budget_when_every_backend_fails() {
    init_tracing();
    let name = "retry-budget.default";
    let b1 = Backend::start(Behaviour::Fail(Code::Unavailable)).await;
    let b2 = Backend::start(Behaviour::Fail(Code::Unavailable)).await;
    // Up to 5 attempts per call, but the budget allows 20 % of requests + 1/s × 10 s.
    let extra = "    limits:\n      retry_budget: { percent: 20, min_per_second: 1, interval: 10s }\n    routes:\n      - retries: { attempts: 4, on: [unavailable], backoff: 1ms }\n";
    let cp = control_plane(name, &[b1.addr, b2.addr], extra).await;
    let mut c = client(&cp, name).await;
    let started = Instant::now();
    let n = 200u64;
    for _ in 0..n {
        let e = c.say_hello(hello()).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
    }
    let calls = b1.calls() + b2.calls();
    let retries = calls - n;
    println!(
        "{n} calls, every backend failing: {retries} retries (budget 20 % x {n} + 10 = 50; unbudgeted: {}), in {:?}",
        n * 4,
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the budget window is 10 s"
    );
    assert!(retries <= 50, "{retries} retries exceed the budget of 50");
    assert!(
        retries >= 45,
        "{retries} retries: the budget should be nearly used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_caps_the_deadline() {
    init_tracing();
    let name = "timeout.default";
    let b = Backend::start(Behaviour::Sleep(Duration::from_secs(3))).await;
    let route = "    routes:\n      - timeout: 300ms\n";
    let cp = control_plane(name, &[b.addr], route).await;
    let mut c = client(&cp, name).await;

    let t = Instant::now();
    let e = c.say_hello(hello()).await.unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // An application deadline shorter than the route's wins; a longer one is capped.
    let mut req = tonic::Request::new(hello());
    req.set_timeout(Duration::from_millis(100));
    let t = Instant::now();
    let e = c.say_hello(req).await.unwrap_err();
    let short = t.elapsed();
    assert_eq!(e.code(), Code::DeadlineExceeded);
    let mut req = tonic::Request::new(hello());
    req.set_timeout(Duration::from_secs(10));
    assert_eq!(
        c.say_hello(req).await.unwrap_err().code(),
        Code::DeadlineExceeded
    );
    let sent: Vec<_> = b
        .state
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.1.clone())
        .collect();
    println!(
        "route timeout 300ms: failed after {took:?}; app 100ms: after {short:?}; grpc-timeout sent: {sent:?}"
    );
    // The server is told the effective deadline, never more than the route's 300 ms.
    for v in &sent {
        let d = v
            .as_deref()
            .and_then(mesh_client::resilience::timeout::parse_grpc_timeout);
        assert!(
            d.is_some_and(|d| d <= Duration::from_millis(300)),
            "{sent:?}"
        );
    }
    assert!(
        sent[1]
            .as_deref()
            .and_then(mesh_client::resilience::timeout::parse_grpc_timeout)
            <= Some(Duration::from_millis(100))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_limits_requests_in_flight() {
    init_tracing();
    let name = "breaker.default";
    let b = Backend::start(Behaviour::Sleep(Duration::from_millis(800))).await;
    // Retries armed: circuit-breaker drops must still never be retried.
    let extra = "    limits: { max_requests: 5 }\n    routes:\n      - retries: { attempts: 3, on: [unavailable] }\n";
    let cp = control_plane(name, &[b.addr], extra).await;
    let c = client(&cp, name).await;
    let breaker = CircuitBreaker::for_cluster("outbound|8080||breaker.default", Some(5));
    let drops_before = breaker.drops();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let mut c = c.clone();
            tokio::spawn(async move { c.say_hello(hello()).await })
        })
        .collect();
    // While the first five are held by the slow backend, the breaker counts them.
    let mut in_flight = 0;
    for _ in 0..50 {
        in_flight = breaker.in_flight();
        if in_flight == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(in_flight, 5, "in flight while the backend holds the calls");
    let mut by_outcome: BTreeMap<String, usize> = BTreeMap::new();
    for call in calls {
        let key = match call.await.unwrap() {
            Ok(_) => "ok".to_string(),
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable);
                assert!(e.message().contains("circuit breaker"), "{}", e.message());
                "dropped".to_string()
            }
        };
        *by_outcome.entry(key).or_default() += 1;
    }
    let drops = breaker.drops() - drops_before;
    println!(
        "20 concurrent calls, max_requests 5: {by_outcome:?}; backend max in flight {}; breaker drops {drops}",
        b.state.max_in_flight.load(Ordering::SeqCst)
    );
    assert_eq!(by_outcome.get("ok"), Some(&5));
    assert_eq!(by_outcome.get("dropped"), Some(&15));
    assert_eq!(drops, 15);
    assert_eq!(
        b.calls(),
        5,
        "dropped calls never reach the backend, and are not retried"
    );
    assert_eq!(b.state.max_in_flight.load(Ordering::SeqCst), 5);
    assert_eq!(breaker.in_flight(), 0, "every slot is released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_aborts_twenty_percent() {
    init_tracing();
    let name = "fault.default";
    let b = Backend::start(Behaviour::Ok).await;
    let route = "    routes:\n      - fault: { abort: { percent: 20, code: 14 } }\n";
    let cp = control_plane(name, &[b.addr], route).await;
    let mut c = client(&cp, name).await;
    let n: u32 = 2000;
    let mut aborted = 0u64;
    for _ in 0..n {
        match c.say_hello(hello()).await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable);
                assert_eq!(e.message(), "RPC terminated due to fault injection");
                aborted += 1;
            }
        }
    }
    let pct = aborted as f64 * 100.0 / f64::from(n);
    println!(
        "{n} RPCs, abort 20 %: {aborted} aborted ({pct:.1} %), backend saw {}",
        b.calls()
    );
    assert!((16.0..=24.0).contains(&pct), "{pct} % aborted");
    assert_eq!(
        b.calls(),
        u64::from(n) - aborted,
        "aborted RPCs never reach the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_delays() {
    init_tracing();
    let name = "fault-delay.default";
    let b = Backend::start(Behaviour::Ok).await;
    let route = "    routes:\n      - fault: { delay: { percent: 100, duration: 200ms } }\n";
    let cp = control_plane(name, &[b.addr], route).await;
    let mut c = client(&cp, name).await;
    let t = Instant::now();
    c.say_hello(hello()).await.unwrap();
    let took = t.elapsed();
    println!("delay 200ms at 100 %: call took {took:?}");
    assert!(took >= Duration::from_millis(200), "{took:?}");
}
