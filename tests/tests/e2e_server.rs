//! End-to-end: xDS-managed servers (mesh-server) against mesh-control over real ADS.

use std::time::Duration;

use mesh_control::ControlPlane;
use mesh_tests::server::*;
use mesh_tests::*;
use xds_proto::type_url;

/// gRFC A36: NOT_SERVING and no RPC until the Listener arrives; then SERVING; the
/// Listener removed → NOT_SERVING again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_serves_only_with_a_listener() {
    init_tracing();
    let cp = ControlPlane::empty()
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let listener = MeshGreeter::bind().await;
    let addr = listener.local_addr().unwrap();
    let server = MeshGreeter::start(
        listener,
        "s1",
        server_bootstrap(cp.local_addr(), "srv-1", false),
    )
    .await;

    assert_eq!(server.health().await, "NOT_SERVING");
    let refused = direct_hello(addr).await;
    assert!(
        refused.is_err(),
        "an RPC was served without a Listener: {refused:?}"
    );

    cp.control().set_resources(
        type_url::LISTENER,
        vec![(inbound_name(addr), inbound_listener(addr, "r1", vec![]))],
    );
    assert!(server.wait_health("SERVING", Duration::from_secs(10)).await);
    assert_eq!(direct_hello(addr).await.unwrap(), "Hello direct from s1");
    // Handlers see the caller through the PeerIdentity extension.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let whoami = xds_proto::helloworld::greeter_client::GreeterClient::new(channel)
        .say_hello(xds_proto::helloworld::HelloRequest {
            name: "whoami".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .message;
    assert!(whoami.starts_with("Hello 127.0.0.1:"), "{whoami}");

    cp.control().set_resources(type_url::LISTENER, vec![]);
    assert!(
        server
            .wait_health("NOT_SERVING", Duration::from_secs(10))
            .await
    );
    let after = direct_hello(addr).await;
    assert!(
        after.is_err(),
        "served after the Listener was deleted: {after:?}"
    );
    assert!(server.stats.snapshot().connections_refused >= 2);
    server.stop().await;
}

/// gRFC A53: with `ignore_resource_deletion` a deleted Listener keeps being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_resource_deletion_keeps_serving() {
    init_tracing();
    let (cp, server) = serving_greeter("s2", true, |a| inbound_listener(a, "r1", vec![])).await;
    let addr = server.addr;

    cp.control().set_resources(type_url::LISTENER, vec![]);
    // Give the deletion time to arrive, then check the server still serves.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.health().await, "SERVING");
    assert_eq!(direct_hello(addr).await.unwrap(), "Hello direct from s2");
    server.stop().await;
}

/// A listener update under load: existing connections drain (GOAWAY) and no RPC fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_update_under_load_fails_no_rpc() {
    init_tracing();
    let listener = MeshGreeter::bind().await;
    let addr = listener.local_addr().unwrap();
    // Client-side resources for greeter.default:8080 → this server, plus its inbound Listener.
    let snapshot = mesh_control::translate(
        &mesh_control::MeshConfig::from_yaml(&greeter_yaml(&[addr])).unwrap(),
    )
    .unwrap();
    let control = ControlPlane::raw(snapshot.resources.clone());
    let mut listeners: Vec<_> = snapshot.of_type(type_url::LISTENER).to_vec();
    listeners.retain(|(n, _)| !n.starts_with("xds.istio.io/"));
    let with_inbound = |route: &str| {
        let mut l = listeners.clone();
        l.push((inbound_name(addr), inbound_listener(addr, route, vec![])));
        l
    };
    control.set_resources(type_url::LISTENER, with_inbound("v1"));
    let cp = control.listen(([127, 0, 0, 1], 0).into()).await.unwrap();
    let server = MeshGreeter::start(
        listener,
        "s3",
        server_bootstrap(cp.local_addr(), "srv-3", false),
    )
    .await;
    assert!(server.wait_health("SERVING", Duration::from_secs(10)).await);

    let client = greeter_client(bootstrap_for(cp.local_addr(), "client-3")).await;
    let load = Load::start(client, 8, 20_000, Duration::from_secs(60));
    assert!(load.wait_for_ok(500, Duration::from_secs(30)).await);
    for v in 2..=4 {
        control.set_resources(type_url::LISTENER, with_inbound(&format!("v{v}")));
        let now = load.ok_so_far();
        assert!(load.wait_for_ok(now + 500, Duration::from_secs(30)).await);
    }
    let report = load.finish().await;
    println!("listener updates under load: {report:?}");
    assert!(report.ok >= 2000, "{report:?}");
    assert_eq!(report.failed, 0, "failures: {:?}", report.errors);
    // Each update drained the old connection and the client reconnected.
    let accepted = server.stats.snapshot().connections_accepted;
    assert!(
        accepted >= 4,
        "only {accepted} connections: updates did not drain"
    );
    server.stop().await;
}

/// The SETTINGS frame the server sends carries the limits we set (never tonic's
/// unbounded defaults).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_frame_carries_explicit_limits() {
    init_tracing();
    let cp = ControlPlane::empty()
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    let custom = mesh_server::Http2Limits {
        max_concurrent_streams: 77,
        max_header_list_size: 12_345,
        initial_stream_window_size: 333_333,
        max_frame_size: 32_768,
        ..Default::default()
    };
    for limits in [mesh_server::Http2Limits::default(), custom] {
        let listener = MeshGreeter::bind().await;
        let addr = listener.local_addr().unwrap();
        addrs.push(addr);
        servers.push(
            MeshGreeter::start_with_limits(
                listener,
                "h2",
                server_bootstrap(cp.local_addr(), &format!("srv-{}", addr.port()), false),
                limits,
            )
            .await,
        );
    }
    cp.control().set_resources(
        type_url::LISTENER,
        addrs
            .iter()
            .map(|a| (inbound_name(*a), inbound_listener(*a, "r", vec![])))
            .collect(),
    );
    for s in &servers {
        assert!(s.wait_health("SERVING", Duration::from_secs(10)).await);
    }
    // SETTINGS ids (RFC 9113 §6.5.2).
    const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    const INITIAL_WINDOW_SIZE: u16 = 0x4;
    const MAX_FRAME_SIZE: u16 = 0x5;
    const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    let get =
        |settings: &[(u16, u32)], id: u16| settings.iter().find(|(i, _)| *i == id).map(|(_, v)| *v);

    let defaults = server_settings(addrs[0]).await.unwrap();
    println!("default SETTINGS: {defaults:?}");
    assert_eq!(get(&defaults, MAX_CONCURRENT_STREAMS), Some(1024));
    assert_eq!(get(&defaults, MAX_HEADER_LIST_SIZE), Some(16 * 1024));
    assert_eq!(get(&defaults, INITIAL_WINDOW_SIZE), Some(1024 * 1024));

    let custom = server_settings(addrs[1]).await.unwrap();
    println!("custom SETTINGS: {custom:?}");
    assert_eq!(get(&custom, MAX_CONCURRENT_STREAMS), Some(77));
    assert_eq!(get(&custom, MAX_HEADER_LIST_SIZE), Some(12_345));
    assert_eq!(get(&custom, INITIAL_WINDOW_SIZE), Some(333_333));
    assert_eq!(get(&custom, MAX_FRAME_SIZE), Some(32_768));
    for s in servers {
        s.stop().await;
    }
}

/// Non-canonical paths are refused before routing and RBAC (every spelling that an HTTP/2
/// client can put on the wire; NUL and control bytes are refused by HTTP/2 itself and by
/// the unit tests of `check_canonical_path`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_canonical_paths_are_refused() {
    init_tracing();
    let (_cp, server) = serving_greeter("paths", false, |a| inbound_listener(a, "r", vec![])).await;
    let addr = server.addr;

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let call = |path: &str, host: Option<&str>| {
        let mut b = http::Request::post(format!("http://greeter.default:8080{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let grpc_status = |resp: &http::Response<hyper::body::Incoming>| {
        resp.headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    for path in [
        "/helloworld.Greeter/../admin.Admin/Drop",
        "/../helloworld.Greeter/SayHello",
        "//helloworld.Greeter/SayHello",
        "/helloworld.Greeter//SayHello",
        "/helloworld.Greeter%2FSayHello",
        "/helloworld.Greeter%2fSayHello",
        "/helloworld.Greeter%5CSayHello",
        "/helloworld.Greeter/%2e%2e",
        "/helloworld.Greeter/SayHello;x=1",
        "/helloworld.Greeter/Say%00Hello",
        "/helloworld.Greeter/SayHello?q=1",
        "/helloworld.Greeter/./SayHello",
        "/helloworld.Greeter",
    ] {
        let resp = send.send_request(call(path, None)).await.unwrap();
        assert_eq!(
            grpc_status(&resp).as_deref(),
            Some("3"),
            "{path} was not refused"
        );
    }
    // Conflicting authority and host.
    let resp = send
        .send_request(call(
            "/helloworld.Greeter/SayHello",
            Some("other.default:1"),
        ))
        .await
        .unwrap();
    assert_eq!(
        grpc_status(&resp).as_deref(),
        Some("3"),
        "conflicting host accepted"
    );
    // A canonical path reaches the service (an empty body is a malformed gRPC request, so
    // the service answers with its own error, not the path check's INVALID_ARGUMENT).
    let resp = send
        .send_request(call("/helloworld.Greeter/SayHello", None))
        .await
        .unwrap();
    assert_ne!(grpc_status(&resp).as_deref(), Some("3"));
    let s = server.stats.snapshot();
    assert_eq!(s.bad_paths, 14, "{s:?}");
    server.stop().await;
}

/// gRFC A31 on the server: the HCM's max_stream_duration bounds each call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_stream_duration_bounds_calls() {
    init_tracing();
    let (_cp, server) = serving_greeter("slow", false, |a| {
        inbound_listener_with(a, "r", vec![], Some(Duration::from_millis(300)))
    })
    .await;
    let addr = server.addr;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = xds_proto::helloworld::greeter_client::GreeterClient::new(channel);
    let fast = client
        .say_hello(xds_proto::helloworld::HelloRequest {
            name: "sleep-10".into(),
        })
        .await;
    assert!(fast.is_ok(), "{fast:?}");
    let slow = client
        .say_hello(xds_proto::helloworld::HelloRequest {
            name: "sleep-2000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(slow.code(), tonic::Code::DeadlineExceeded, "{slow:?}");
    assert!(slow.message().contains("max_stream_duration"), "{slow:?}");
    server.stop().await;
}

/// gRFC A36/A57: with the control plane gone, the server keeps serving its last config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_outage_keeps_the_server_serving() {
    init_tracing();
    let (cp, server) = serving_greeter("s4", false, |a| inbound_listener(a, "r", vec![])).await;
    let addr = server.addr;
    cp.shutdown().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.health().await, "SERVING");
    assert_eq!(direct_hello(addr).await.unwrap(), "Hello direct from s4");
    server.stop().await;
}

/// A bootstrap without `server_listener_resource_name_template` fails at start, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_listener_template_fails_at_start() {
    let bootstrap = bootstrap_for("127.0.0.1:1".parse().unwrap(), "no-template");
    let listener = MeshGreeter::bind().await;
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        mesh_server::MeshServer::builder()
            .with_bootstrap(bootstrap)
            .serve_with_incoming(listener),
    )
    .await
    .expect("fails at once, not at the first request")
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("server_listener_resource_name_template"),
        "{err}"
    );
}

/// A client never mistakes a NOT_SERVING server (which accepts and closes, gRFC A36) for a
/// ready one: its RPCs fail with that reason, and succeed once the server serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_waits_for_the_server_preface() {
    init_tracing();
    let tcp = MeshGreeter::bind().await;
    let addr = tcp.local_addr().unwrap();
    let snapshot = mesh_control::translate(
        &mesh_control::MeshConfig::from_yaml(&greeter_yaml(&[addr])).unwrap(),
    )
    .unwrap();
    let control = ControlPlane::raw(snapshot.resources.clone());
    let client_listeners: Vec<_> = snapshot
        .of_type(type_url::LISTENER)
        .iter()
        .filter(|(n, _)| !n.starts_with("xds.istio.io/"))
        .cloned()
        .collect();
    control.set_resources(type_url::LISTENER, client_listeners.clone());
    let cp = control.listen(([127, 0, 0, 1], 0).into()).await.unwrap();
    let server = MeshGreeter::start(
        tcp,
        "late",
        server_bootstrap(cp.local_addr(), "srv-late", false),
    )
    .await;
    let mut client = greeter_client(bootstrap_for(cp.local_addr(), "cli-late")).await;
    let early = spread(&mut client, 1).await.unwrap_err();
    assert_eq!(early.code(), tonic::Code::Unavailable, "{early:?}");
    assert!(early.message().contains("preface"), "{early:?}");

    let mut all = client_listeners;
    all.push((inbound_name(addr), inbound_listener(addr, "r", vec![])));
    control.set_resources(type_url::LISTENER, all);
    assert!(server.wait_health("SERVING", Duration::from_secs(10)).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if spread(&mut client, 1).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ok = spread(&mut client, 50).await.unwrap();
    assert_eq!(ok.values().sum::<usize>(), 50);
    server.stop().await;
}
