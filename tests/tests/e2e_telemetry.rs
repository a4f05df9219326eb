//! End-to-end telemetry (gRFC A66, A78, W3C trace context): a real mesh-control ADS server,
//! a real MeshServer greeter and a MeshChannel client on loopback; spans and metrics are
//! exported in memory and checked for one trace across the hop, the exact instrument names,
//! label sets and counts, and the staleness signal across a control-plane outage.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use mesh_client::MeshChannel;
use mesh_client::telemetry::Telemetry;
use mesh_control::{ControlPlane, RunningControlPlane};
use mesh_server::MeshServer;
use mesh_tests::server::{inbound_listener, inbound_name, server_bootstrap};
use mesh_tests::{bootstrap_for, greeter_yaml};
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_subscriber::layer::{Layer as _, SubscriberExt};
use xds_proto::helloworld::greeter_client::GreeterClient;
use xds_proto::helloworld::greeter_server::{Greeter, GreeterServer};
use xds_proto::helloworld::{HelloReply, HelloRequest};
use xds_proto::type_url;

const TARGET: &str = "xds:///greeter.default:8080";
const METHOD: &str = "helloworld.Greeter/SayHello";

/// A control plane, a SERVING MeshServer greeter and a connected MeshChannel, all with
/// `telemetry`.
struct Mesh {
    cp: Option<RunningControlPlane>,
    cp_addr: SocketAddr,
    channel: MeshChannel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl Mesh {
    async fn start(telemetry: Telemetry, id: &str) -> Mesh {
        let greeter = mesh_examples::NamedGreeter { id: id.to_string() };
        Mesh::start_with(telemetry, id, greeter, "").await
    }

    /// A mesh serving `greeter`, with `routes` (mesh.yaml lines) for the service.
    async fn start_with<G: Greeter>(
        telemetry: Telemetry,
        id: &str,
        greeter: G,
        routes: &str,
    ) -> Mesh {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let yaml = greeter_yaml(&[addr]) + routes;
        let snapshot =
            mesh_control::translate(&mesh_control::MeshConfig::from_yaml(&yaml).unwrap()).unwrap();
        let control = ControlPlane::raw(snapshot.resources.clone());
        let mut listeners: Vec<_> = snapshot.of_type(type_url::LISTENER).to_vec();
        listeners.retain(|(n, _)| !n.starts_with("xds.istio.io/"));
        listeners.push((
            inbound_name(addr),
            inbound_listener(addr, "inbound", vec![]),
        ));
        control.set_resources(type_url::LISTENER, listeners);
        let cp = control.listen(([127, 0, 0, 1], 0).into()).await.unwrap();

        let (serving_tx, mut serving) = tokio::sync::watch::channel(false);
        let builder = MeshServer::builder()
            .with_bootstrap(server_bootstrap(
                cp.local_addr(),
                &format!("srv-{id}"),
                false,
            ))
            .with_telemetry(telemetry.clone())
            .on_serving_status(move |s| {
                serving_tx.send_replace(s.is_serving());
            })
            .add_service(GreeterServer::new(greeter));
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = builder
                .serve_with_incoming_shutdown(tcp, async {
                    let _ = rx.await;
                })
                .await;
        });
        tokio::time::timeout(Duration::from_secs(10), serving.wait_for(|s| *s))
            .await
            .expect("server SERVING within 10 s")
            .unwrap();
        let channel = MeshChannel::builder(TARGET)
            .with_bootstrap(bootstrap_for(cp.local_addr(), &format!("cli-{id}")))
            .with_connect_timeout(Duration::from_secs(10))
            .with_telemetry(telemetry)
            .connect()
            .await
            .unwrap();
        Mesh {
            cp_addr: cp.local_addr(),
            cp: Some(cp),
            channel,
            stop: Some(stop),
            server,
        }
    }

    async fn hello(&self, name: &str) -> Result<String, tonic::Status> {
        let mut client = GreeterClient::new(self.channel.clone());
        let reply = client.say_hello(HelloRequest { name: name.into() }).await?;
        Ok(reply.into_inner().message)
    }

    /// A call to a method the server does not have (A66: recorded as `other` there).
    async fn unknown_method(&self) -> tonic::Status {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<HelloRequest, HelloReply>::default();
        grpc.unary(
            tonic::Request::new(HelloRequest { name: "x".into() }),
            http::uri::PathAndQuery::from_static("/unknown.Svc/Do"),
            codec,
        )
        .await
        .unwrap_err()
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.server).await;
        if let Some(cp) = self.cp.take() {
            cp.shutdown().await;
        }
    }
}

fn attr(s: &SpanData, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// The process-wide span exporter. Every test calls this first: a global subscriber, set
/// before any mesh code runs, avoids the callsite-interest races of thread-local ones.
fn span_exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let ours = tracing_subscriber::filter::filter_fn(|m| {
            m.target().starts_with("mesh_") || m.target().starts_with("e2e_telemetry")
        });
        let subscriber = tracing_subscriber::registry().with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("e2e"))
                .with_filter(ours),
        );
        tracing::subscriber::set_global_default(subscriber).unwrap();
        exporter
    })
}

/// One trace across the hop: application span → client call span → attempt span →
/// (remote) server span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_client_and_server() {
    let exporter = span_exporter();
    let telemetry = Telemetry::new(&opentelemetry::metrics::noop::NoopMeterProvider::new());
    let mesh = Mesh::start(telemetry, "trace").await;

    let reply = mesh
        .hello("traced")
        .instrument(tracing::info_span!("app"))
        .await
        .unwrap();
    assert!(reply.contains("traced"), "{reply}");

    // The server span ends when its response body is done; wait for it (bounded). Other
    // tests share the exporter: keep this trace only.
    let mut spans = Vec::new();
    for _ in 0..50 {
        let all = exporter.get_finished_spans().unwrap();
        let app = all.iter().find(|s| s.name == "app").expect("app span");
        let trace = app.span_context.trace_id();
        spans = all
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect();
        if spans.iter().any(|s| s.span_kind == SpanKind::Server) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let app = spans.iter().find(|s| s.name == "app").expect("app span");
    let call = spans
        .iter()
        .find(|s| s.name == METHOD && s.parent_span_id == app.span_context.span_id())
        .unwrap_or_else(|| panic!("client call span under the app span: {spans:#?}"));
    assert_eq!(call.span_kind, SpanKind::Client);
    let attempts: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id == call.span_context.span_id())
        .collect();
    // One attempt here; `retries_give_one_attempt_span_each` covers a retried call.
    assert_eq!(attempts.len(), 1, "{spans:#?}");
    let attempt = attempts[0];
    assert_eq!(attempt.name, METHOD);
    assert_eq!(attr(attempt, "mesh.attempt").as_deref(), Some("1"));
    assert_eq!(
        attr(attempt, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(attr(attempt, "rpc.grpc.status_code").as_deref(), Some("0"));
    // Set when the attempt span is created (`ClientCall::attempt_to`).
    let endpoint = attr(attempt, "mesh.endpoint").unwrap_or_default();
    assert!(endpoint.starts_with("127.0.0.1:"), "{endpoint}");
    assert_eq!(
        attr(attempt, "server.port"),
        endpoint.rsplit_once(':').map(|(_, p)| p.to_string())
    );
    assert!(attr(attempt, "mesh.cluster").is_some_and(|c| !c.is_empty()));

    let server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .expect("server span");
    assert_eq!(server.span_context.trace_id(), app.span_context.trace_id());
    assert_eq!(server.parent_span_id, attempt.span_context.span_id());
    assert!(server.parent_span_is_remote);
    assert_eq!(attr(server, "client.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(attr(server, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attr(server, "rpc.service").as_deref(),
        Some("helloworld.Greeter")
    );
    assert_eq!(attr(server, "rpc.method").as_deref(), Some("SayHello"));
    assert_eq!(attr(server, "rpc.grpc.status_code").as_deref(), Some("0"));
    for s in [call, attempt] {
        assert_eq!(s.span_context.trace_id(), app.span_context.trace_id());
        assert_eq!(attr(s, "rpc.system").as_deref(), Some("grpc"));
    }
    assert_eq!(
        attr(call, "rpc.service").as_deref(),
        Some("helloworld.Greeter")
    );
    mesh.stop().await;
}

/// An in-memory metrics pipeline.
struct Metrics {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Metrics {
    fn new() -> Metrics {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        Metrics { provider, exporter }
    }

    fn collect(&self) -> ResourceMetrics {
        self.exporter.reset();
        self.provider.force_flush().unwrap();
        self.exporter
            .get_finished_metrics()
            .unwrap()
            .pop()
            .expect("one export")
    }
}

type Labels = BTreeMap<String, String>;

/// Every point of `name`: its labels, its value (histograms: the count) and, for
/// histograms, the sum.
fn points(rm: &ResourceMetrics, name: &str) -> Vec<(Labels, f64, f64)> {
    fn labels<'a>(kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> Labels {
        kvs.map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect()
    }
    fn of<T: Copy>(d: &MetricData<T>, f: fn(T) -> f64) -> Vec<(Labels, f64, f64)> {
        match d {
            MetricData::Sum(s) => s
                .data_points()
                .map(|p| (labels(p.attributes()), f(p.value()), 0.0))
                .collect(),
            MetricData::Gauge(g) => g
                .data_points()
                .map(|p| (labels(p.attributes()), f(p.value()), 0.0))
                .collect(),
            MetricData::Histogram(h) => h
                .data_points()
                .map(|p| (labels(p.attributes()), p.count() as f64, f(p.sum())))
                .collect(),
            MetricData::ExponentialHistogram(_) => Vec::new(),
        }
    }
    let mut out = Vec::new();
    for sm in rm.scope_metrics() {
        for m in sm.metrics().filter(|m| m.name() == name) {
            out.extend(match m.data() {
                AggregatedMetrics::F64(d) => of(d, |v| v),
                AggregatedMetrics::U64(d) => of(d, |v| v as f64),
                AggregatedMetrics::I64(d) => of(d, |v| v as f64),
            });
        }
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The single point of `name` with exactly these labels: (value or count, sum).
fn point(rm: &ResourceMetrics, name: &str, want: &[(&str, &str)]) -> (f64, f64) {
    let want = labels(want);
    let all = points(rm, name);
    let found: Vec<_> = all.iter().filter(|(l, _, _)| *l == want).collect();
    assert_eq!(found.len(), 1, "{name} {want:?} among {all:#?}");
    (found[0].1, found[0].2)
}

const N: usize = 5;

/// gRFC A66 and A78: exact names, label sets and counts after N calls and one call to a
/// method the server does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_names_labels_and_counts() {
    span_exporter();
    let metrics = Metrics::new();
    let mesh = Mesh::start(Telemetry::new(&metrics.provider), "metrics").await;
    for i in 0..N {
        mesh.hello(&format!("n{i}")).await.unwrap();
    }
    assert_eq!(
        mesh.unknown_method().await.code(),
        tonic::Code::Unimplemented
    );

    // Server calls are recorded when their response bodies end: wait for all (bounded).
    let mut rm = metrics.collect();
    for _ in 0..50 {
        let done: f64 = points(&rm, "grpc.server.call.duration")
            .iter()
            .map(|p| p.1)
            .sum();
        if done >= (N + 1) as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        rm = metrics.collect();
    }

    // Client, per attempt and per call.
    let ok = [("grpc.method", METHOD), ("grpc.target", TARGET)];
    let other = [("grpc.method", "unknown.Svc/Do"), ("grpc.target", TARGET)];
    assert_eq!(point(&rm, "grpc.client.attempt.started", &ok).0, N as f64);
    assert_eq!(point(&rm, "grpc.client.attempt.started", &other).0, 1.0);
    let with = |base: &[(&'static str, &'static str); 2], status: &'static str| {
        [base[0], base[1], ("grpc.status", status)]
    };
    for name in [
        "grpc.client.attempt.duration",
        "grpc.client.attempt.sent_total_compressed_message_size",
        "grpc.client.attempt.rcvd_total_compressed_message_size",
        "grpc.client.call.duration",
    ] {
        assert_eq!(point(&rm, name, &with(&ok, "OK")).0, N as f64, "{name}");
        assert_eq!(
            point(&rm, name, &with(&other, "UNIMPLEMENTED")).0,
            1.0,
            "{name}"
        );
        assert_eq!(
            points(&rm, name).len(),
            2,
            "{name}: {:#?}",
            points(&rm, name)
        );
    }
    // HelloRequest{name: "nI"} is 4 bytes on the wire (tag, length, two bytes).
    let sent = point(
        &rm,
        "grpc.client.attempt.sent_total_compressed_message_size",
        &with(&ok, "OK"),
    );
    assert_eq!(sent.1, (4 * N) as f64);
    let rcvd = point(
        &rm,
        "grpc.client.attempt.rcvd_total_compressed_message_size",
        &with(&ok, "OK"),
    );
    assert!(rcvd.1 > 0.0);

    // Server: unregistered methods are "other".
    assert_eq!(
        point(&rm, "grpc.server.call.started", &[("grpc.method", METHOD)]).0,
        N as f64
    );
    assert_eq!(
        point(&rm, "grpc.server.call.started", &[("grpc.method", "other")]).0,
        1.0
    );
    for name in [
        "grpc.server.call.duration",
        "grpc.server.call.sent_total_compressed_message_size",
        "grpc.server.call.rcvd_total_compressed_message_size",
    ] {
        let ok = [("grpc.method", METHOD), ("grpc.status", "OK")];
        assert_eq!(point(&rm, name, &ok).0, N as f64, "{name}");
        let other = [("grpc.method", "other"), ("grpc.status", "UNIMPLEMENTED")];
        assert_eq!(point(&rm, name, &other).0, 1.0, "{name}");
    }
    let server_rcvd = point(
        &rm,
        "grpc.server.call.rcvd_total_compressed_message_size",
        &[("grpc.method", METHOD), ("grpc.status", "OK")],
    );
    assert_eq!(server_rcvd.1, (4 * N) as f64);
    let server_sent = point(
        &rm,
        "grpc.server.call.sent_total_compressed_message_size",
        &[("grpc.method", METHOD), ("grpc.status", "OK")],
    );
    assert_eq!(
        server_sent.1, rcvd.1,
        "the bytes the server sent are those the client got"
    );

    // A78, for this test's clients (the client's target, and "#server").
    let xds = mesh.cp_addr.to_string();
    for target in [TARGET, "#server"] {
        let base = [("grpc.target", target), ("grpc.xds.server", xds.as_str())];
        assert_eq!(point(&rm, "grpc.xds_client.connected", &base).0, 1.0);
        assert_eq!(point(&rm, "grpc.xds_client.server_failure", &base).0, 0.0);
        assert_eq!(
            point(&rm, "mesh.xds_client.seconds_since_contact", &base).0,
            0.0
        );
        let types: &[&str] = if target == "#server" {
            &["envoy.config.listener.v3.Listener"]
        } else {
            &[
                "envoy.config.listener.v3.Listener",
                "envoy.config.route.v3.RouteConfiguration",
                "envoy.config.cluster.v3.Cluster",
                "envoy.config.endpoint.v3.ClusterLoadAssignment",
            ]
        };
        for ty in types {
            let typed = [base[0], base[1], ("grpc.xds.resource_type", ty)];
            let (valid, _) = point(&rm, "grpc.xds_client.resource_updates_valid", &typed);
            assert!(valid >= 1.0, "{target} {ty}: {valid}");
            assert_eq!(
                point(&rm, "grpc.xds_client.resource_updates_invalid", &typed).0,
                0.0
            );
            let age = point(&rm, "mesh.xds_client.seconds_since_update", &typed).0;
            assert!((0.0..60.0).contains(&age), "{age}");
            let cached = [
                ("grpc.target", target),
                ("grpc.xds.authority", "#old"),
                ("grpc.xds.cache_state", "acked"),
                ("grpc.xds.resource_type", ty),
            ];
            assert_eq!(point(&rm, "grpc.xds_client.resources", &cached).0, 1.0);
        }
    }
    mesh.stop().await;
}

/// With the control plane stopped the staleness signal grows; after a restart it resets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staleness_grows_while_the_control_plane_is_down_and_resets_after() {
    span_exporter();
    let metrics = Metrics::new();
    let mut mesh = Mesh::start(Telemetry::new(&metrics.provider), "stale").await;
    mesh.hello("before").await.unwrap();
    let xds = mesh.cp_addr.to_string();
    let base = [("grpc.target", TARGET), ("grpc.xds.server", xds.as_str())];
    let read = |name: &str| point(&metrics.collect(), name, &base).0;
    assert_eq!(read("mesh.xds_client.seconds_since_contact"), 0.0);
    assert_eq!(read("grpc.xds_client.connected"), 1.0);

    let cp = mesh.cp.take().unwrap();
    let control = cp.control().clone();
    cp.shutdown().await;

    // Grows: bounded wait for a disconnected client with a rising age.
    let mut first = 0.0;
    for _ in 0..100 {
        first = read("mesh.xds_client.seconds_since_contact");
        if first > 0.5 && read("grpc.xds_client.connected") == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(first > 0.5, "staleness did not grow: {first}");
    assert_eq!(read("grpc.xds_client.connected"), 0.0);
    assert!(read("grpc.xds_client.server_failure") >= 1.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = read("mesh.xds_client.seconds_since_contact");
    assert!(later > first, "{later} <= {first}");
    // The data plane keeps working on the last good config.
    mesh.hello("during").await.unwrap();

    // Restart on the same address: the client reconnects (after its backoff) and the
    // signal resets.
    mesh.cp = Some(
        control
            .listen(mesh.cp_addr)
            .await
            .expect("rebind the control plane address"),
    );
    let mut now = later;
    for _ in 0..300 {
        now = read("mesh.xds_client.seconds_since_contact");
        if now == 0.0 && read("grpc.xds_client.connected") == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(now, 0.0, "staleness did not reset after the restart");
    assert_eq!(read("grpc.xds_client.connected"), 1.0);
    mesh.hello("after").await.unwrap();
    mesh.stop().await;
}

/// Fails its first call with UNAVAILABLE, then answers.
struct FailOnce(std::sync::atomic::AtomicBool);

#[tonic::async_trait]
impl Greeter for FailOnce {
    async fn say_hello(
        &self,
        request: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(tonic::Status::unavailable("first attempt fails"));
        }
        Ok(tonic::Response::new(HelloReply {
            message: format!("Hello {}", request.into_inner().name),
        }))
    }
}

/// gRFC A44 under telemetry: a call retried once has two attempt spans under its call
/// span, numbered 1 and 2, each the parent of its own server span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_give_one_attempt_span_each() {
    let exporter = span_exporter();
    let telemetry = Telemetry::new(&opentelemetry::metrics::noop::NoopMeterProvider::new());
    let routes = "    routes:\n      - retries: { attempts: 2, on: [unavailable], backoff: 5ms }\n";
    let greeter = FailOnce(std::sync::atomic::AtomicBool::new(false));
    let mesh = Mesh::start_with(telemetry, "retry", greeter, routes).await;
    mesh.hello("again")
        .instrument(tracing::info_span!("app-retry"))
        .await
        .unwrap();
    let mut spans = Vec::new();
    for _ in 0..50 {
        let all = exporter.get_finished_spans().unwrap();
        let Some(app) = all.iter().find(|s| s.name == "app-retry") else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let trace = app.span_context.trace_id();
        spans = all
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect();
        if spans
            .iter()
            .filter(|s| s.span_kind == SpanKind::Server)
            .count()
            == 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let app = spans
        .iter()
        .find(|s| s.name == "app-retry")
        .expect("app span");
    let call = spans
        .iter()
        .find(|s| s.name == METHOD && s.parent_span_id == app.span_context.span_id())
        .expect("call span");
    let mut attempts: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id == call.span_context.span_id())
        .collect();
    attempts.sort_by_key(|s| attr(s, "mesh.attempt"));
    let numbers: Vec<_> = attempts.iter().map(|s| attr(s, "mesh.attempt")).collect();
    let codes: Vec<_> = attempts
        .iter()
        .map(|s| attr(s, "rpc.grpc.status_code"))
        .collect();
    println!("retried call: attempt spans {numbers:?} with status codes {codes:?}");
    assert_eq!(numbers, [Some("1".into()), Some("2".into())], "{spans:#?}");
    assert_eq!(codes, [Some("14".into()), Some("0".into())]);
    for a in &attempts {
        let server = spans.iter().find(|s| {
            s.span_kind == SpanKind::Server && s.parent_span_id == a.span_context.span_id()
        });
        assert!(
            server.is_some(),
            "each attempt is the parent of its server span: {spans:#?}"
        );
    }
    mesh.stop().await;
}

/// Issue 5's certificate-expiry signal: `mesh.identity.certificate.seconds_to_expiry` per
/// certificate provider instance of every live xDS client's bootstrap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_seconds_to_expiry_gauge() {
    span_exporter();
    const DAY: Duration = Duration::from_secs(86_400);
    let ca = mesh_control::ca::DevCa::generate("cluster.local").unwrap();
    let dir = tempfile::tempdir().unwrap();
    ca.issue_svid("default", "expiry", DAY)
        .unwrap()
        .write_istio_layout(dir.path())
        .unwrap();
    let json =
        mesh_control::bootstrap_json_with_certs("127.0.0.1:1", "expiry-node", Some(dir.path()));
    let bootstrap = mesh_client::bootstrap::Bootstrap::from_json(&json.to_string()).unwrap();
    let _client = mesh_client::xds::XdsClient::shared(&bootstrap).unwrap();
    // Providers report once something uses them, as an mTLS cluster does.
    let registry = mesh_client::identity::ProviderRegistry::for_bootstrap(&bootstrap);
    let instance = |name: &str| mesh_client::config::CertProviderInstance {
        instance_name: "default".into(),
        certificate_name: name.into(),
    };
    let mut tls = registry
        .client_tls(&mesh_client::config::UpstreamTls {
            identity: Some(instance("default")),
            roots: instance("ROOTCA"),
            san_matchers: vec![],
            sni: None,
        })
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.wait_for(Option::is_some)).await;
    let metrics = Metrics::new();
    let _telemetry = Telemetry::new(&metrics.provider);
    let rm = metrics.collect();
    let (secs, _) = point(
        &rm,
        "mesh.identity.certificate.seconds_to_expiry",
        &[("mesh.identity.provider", "default")],
    );
    println!(
        "certificate of provider \"default\" expires in {secs} s (issued for {} s)",
        DAY.as_secs()
    );
    assert!(
        secs > (DAY.as_secs() - 600) as f64 && secs <= DAY.as_secs() as f64,
        "{secs}"
    );
}

/// What a handler saw of its trace context (see [`TraceProbe`]).
#[derive(Debug, Clone)]
struct Seen {
    /// Trace id and sampled flag of the span the handler opened.
    handler_trace: String,
    handler_sampled: bool,
    /// The caller's baggage `tenant`, from the request's `opentelemetry::Context`.
    tenant: Option<String>,
}

/// Opens a `tracing` span of its own per call and reports what it saw.
struct TraceProbe(tokio::sync::mpsc::UnboundedSender<Seen>);

#[tonic::async_trait]
impl Greeter for TraceProbe {
    async fn say_hello(
        &self,
        request: tonic::Request<HelloRequest>,
    ) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        use opentelemetry::baggage::BaggageExt;
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let span = tracing::info_span!("handler-unsampled");
        let sc = span.context().span().span_context().clone();
        let tenant = request
            .extensions()
            .get::<opentelemetry::Context>()
            .and_then(|cx| cx.baggage().get("tenant").map(|v| v.to_string()));
        let _ = self.0.send(Seen {
            handler_trace: sc.trace_id().to_string(),
            handler_sampled: sc.is_sampled(),
            tenant,
        });
        Ok(tonic::Response::new(HelloReply {
            message: format!("Hello {}", request.into_inner().name),
        }))
    }
}

/// A caller whose trace is not sampled (its application span has an unsampled remote
/// parent; the SDK's default sampler is parent-based): no client or server span is
/// exported, and the handler's own span joins the caller's trace, unsampled, with the
/// caller's baggage in the request's extensions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_caller_gets_no_spans_and_the_handler_joins_its_trace() {
    use opentelemetry::KeyValue;
    use opentelemetry::baggage::BaggageExt;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let exporter = span_exporter();
    let telemetry = Telemetry::new(&opentelemetry::metrics::noop::NoopMeterProvider::new());
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let mesh = Mesh::start_with(telemetry, "unsampled", TraceProbe(tx), "").await;

    let trace = TraceId::from_hex("5b8efff798038103d269b633813fc60c").unwrap();
    let parent = SpanContext::new(
        trace,
        SpanId::from_hex("eee19b7ec3c1b174").unwrap(),
        TraceFlags::NOT_SAMPLED,
        true,
        Default::default(),
    );
    let app = tracing::info_span!("app-unsampled");
    let _ = app.set_parent(
        opentelemetry::Context::new()
            .with_remote_span_context(parent)
            .with_baggage([KeyValue::new("tenant", "blue")]),
    );
    mesh.hello("quiet").instrument(app).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .unwrap()
        .expect("the handler ran");
    println!("unsampled caller: the handler saw {seen:?}");
    assert_eq!(seen.handler_trace, trace.to_string());
    assert!(!seen.handler_sampled);
    assert_eq!(seen.tenant.as_deref(), Some("blue"));

    // A sampled call afterwards, to know the server's spans of the first call would have
    // been exported by now (the exporter is synchronous; spans end in call order).
    mesh.hello("loud")
        .instrument(tracing::info_span!("app-after-unsampled"))
        .await
        .unwrap();
    for _ in 0..50 {
        let all = exporter.get_finished_spans().unwrap();
        if all.iter().any(|s| s.name == "app-after-unsampled") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = exporter.get_finished_spans().unwrap();
    let of_trace: Vec<_> = all
        .iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .collect();
    assert!(of_trace.is_empty(), "{of_trace:#?}");
    mesh.stop().await;
}

/// Under STRICT mTLS each side's span names the other's verified identity: the attempt
/// span the server's SPIFFE ID (`mesh.peer_identity`, from the connection's handshake), the
/// server span the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_spans_carry_the_peer_identities() {
    let exporter = span_exporter();
    const DAY: Duration = Duration::from_secs(86_400);
    let ca = mesh_control::ca::DevCa::generate("cluster.local").unwrap();
    let (server_dir, client_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    ca.issue_svid("default", "greeter", DAY)
        .unwrap()
        .write_istio_layout(server_dir.path())
        .unwrap();
    ca.issue_svid("default", "caller", DAY)
        .unwrap()
        .write_istio_layout(client_dir.path())
        .unwrap();
    let tcp = mesh_tests::server::MeshGreeter::bind().await;
    let addr = tcp.local_addr().unwrap();
    let cp = ControlPlane::raw(mesh_tests::server::strict_greeter_resources(addr))
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let boot = |node: &str, certs: &std::path::Path| {
        let json = mesh_control::bootstrap_json_with_certs(
            &cp.local_addr().to_string(),
            node,
            Some(certs),
        );
        mesh_client::bootstrap::Bootstrap::from_json(&json.to_string()).unwrap()
    };
    let greeter = mesh_tests::server::MeshGreeter::start(
        tcp,
        "mtls-traced",
        boot("mtls-trace-server", server_dir.path()),
    )
    .await;
    let channel = MeshChannel::builder("xds:///greeter.default:8080")
        .with_bootstrap(boot("mtls-trace-client", client_dir.path()))
        .connect()
        .await
        .unwrap();
    let mut client = GreeterClient::new(channel);
    let app = tracing::info_span!("app-mtls");
    let trace = {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        app.context().span().span_context().trace_id()
    };
    // The server may still be fetching its Listener: retry (bounded) until it serves.
    let mut reply = None;
    for _ in 0..50 {
        let call = client.say_hello(HelloRequest {
            name: "mtls".into(),
        });
        if let Ok(r) = call.instrument(app.clone()).await {
            reply = Some(r.into_inner().message);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(app);
    assert!(reply.is_some(), "an mTLS call succeeded");
    let mut spans = Vec::new();
    for _ in 0..50 {
        spans = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect();
        let ok_attempt = spans.iter().any(|s| {
            s.name == METHOD
                && attr(s, "mesh.attempt").is_some()
                && attr(s, "rpc.grpc.status_code").as_deref() == Some("0")
        });
        if ok_attempt && spans.iter().any(|s| s.span_kind == SpanKind::Server) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attempt = spans
        .iter()
        .find(|s| {
            attr(s, "mesh.attempt").is_some()
                && attr(s, "rpc.grpc.status_code").as_deref() == Some("0")
        })
        .unwrap_or_else(|| panic!("a successful attempt span: {spans:#?}"));
    let server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .unwrap_or_else(|| panic!("a server span: {spans:#?}"));
    println!(
        "mTLS spans: attempt mesh.peer_identity {:?}, server mesh.peer_identity {:?}",
        attr(attempt, "mesh.peer_identity"),
        attr(server, "mesh.peer_identity")
    );
    assert_eq!(
        attr(attempt, "mesh.peer_identity").as_deref(),
        Some("spiffe://cluster.local/ns/default/sa/greeter")
    );
    assert_eq!(
        attr(server, "mesh.peer_identity").as_deref(),
        Some("spiffe://cluster.local/ns/default/sa/caller")
    );
    greeter.stop().await;
    cp.shutdown().await;
}
