//! Throughput cost of telemetry: RPS of unary calls over a real loopback
//! MeshChannel → MeshServer pair (mesh-control ADS in process), with telemetry off
//! (`Telemetry::disabled()` on both sides) and on (gRFC A66 metrics into a Prometheus
//! registry, a span per call, per attempt and per server call through
//! tracing-opentelemetry, W3C trace context on every request). Rounds alternate off/on so
//! drift hits both; the medians and their ratio are printed. A benchmark, never a test.
//!
//! `cargo run -p mesh-benches --bin telemetry-cost -- --seconds 3 --rounds 5 --concurrency 8`
//! (`--no-spans`: metrics only; `--sampled-off`: spans under a tracer that samples nothing;
//! `--ratio 0.01`: the production setting, 1 % of traces sampled by a parent-based
//! trace-id ratio sampler; `--micro`: also the hooks alone, without the network). The
//! closed loop is the end-to-end bench's driver ([`mesh_benches::e2e::workload::drive`]).

use std::time::{Duration, Instant};

use clap::Parser;
use mesh_benches::e2e::workload::{Caller, Cell, Timing, Workload, drive};
use mesh_client::MeshChannel;
use mesh_client::telemetry::Telemetry;
use mesh_client::telemetry::prometheus::PrometheusMetrics;
use mesh_control::{ControlPlane, RunningControlPlane};
use mesh_server::MeshServer;
use mesh_tests::server::{inbound_listener, inbound_name, server_bootstrap};
use mesh_tests::{bootstrap_for, greeter_yaml};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::Sampler;
use tracing_subscriber::layer::{Layer as _, SubscriberExt};
use xds_proto::helloworld::HelloRequest;
use xds_proto::helloworld::greeter_client::GreeterClient;
use xds_proto::helloworld::greeter_server::GreeterServer;
use xds_proto::type_url;

#[derive(Parser)]
struct Args {
    /// Seconds per round.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Rounds per mode (off, on, off, on, ...).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Concurrent callers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// No tracing-opentelemetry layer: measure the metrics alone.
    #[arg(long)]
    no_spans: bool,
    /// The tracer samples nothing (`Sampler::AlwaysOff`): the cost of spans that are
    /// created but never recorded.
    #[arg(long)]
    sampled_off: bool,
    /// Sample traces as production usually does: `ParentBased(TraceIdRatioBased(R))`, so
    /// a fraction R of the application's root spans (and their calls) is sampled, e.g.
    /// `--ratio 0.01`.
    #[arg(long, conflicts_with_all = ["sampled_off", "no_spans"])]
    ratio: Option<f64>,
    /// Also time the telemetry hooks alone (no network), per call.
    #[arg(long)]
    micro: bool,
}

/// µs per call of the client and server hooks alone: under an application span
/// (`bench.app`, as the network rounds make), start, one attempt, response observed to its
/// end; then the server's hooks for the headers the client sent, its handler scope polled
/// once.
fn micro(telemetry: &Telemetry, n: u32) -> (f64, f64) {
    use mesh_client::telemetry::{ClientCall, ServerCall};
    use std::future::Future as _;
    let resp = || {
        let mut r = http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
        r.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("0"));
        r
    };
    let peer: std::net::SocketAddr = ([127, 0, 0, 1], 40000).into();
    let (mut client, mut server) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let app = tracing::info_span!("bench.app");
        let entered = app.enter();
        let start = Instant::now();
        let call = ClientCall::start(
            telemetry,
            "xds:///greeter.default:8080",
            "/helloworld.Greeter/SayHello",
        );
        let mut headers = http::HeaderMap::new();
        // As the channel and the server call them.
        let attempt = call.attempt_to(
            &mut headers,
            ([127, 0, 0, 1], 8080).into(),
            "outbound|8080||greeter.default",
            Some("spiffe://cluster.local/ns/default/sa/greeter"),
        );
        drop(attempt.observe(&call, resp()));
        drop(call);
        client += start.elapsed();
        drop(entered);
        drop(app);
        let start = Instant::now();
        let call = ServerCall::start_from_peer(
            telemetry,
            "/helloworld.Greeter/SayHello",
            &headers,
            true,
            None,
            peer,
        );
        let handler = std::pin::pin!(call.scope().instrument(std::future::ready(())));
        let _ = handler.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        drop(call.observe(resp()));
        server += start.elapsed();
    }
    let per_call = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    (per_call(client), per_call(server))
}

/// A control plane, a MeshServer greeter and a MeshChannel, all with one telemetry.
async fn mesh(
    telemetry: Telemetry,
    id: &str,
) -> anyhow::Result<(RunningControlPlane, MeshChannel)> {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    let snapshot =
        mesh_control::translate(&mesh_control::MeshConfig::from_yaml(&greeter_yaml(&[
            addr,
        ]))?)?;
    let control = ControlPlane::raw(snapshot.resources.clone());
    let mut listeners: Vec<_> = snapshot.of_type(type_url::LISTENER).to_vec();
    listeners.retain(|(n, _)| !n.starts_with("xds.istio.io/"));
    listeners.push((
        inbound_name(addr),
        inbound_listener(addr, "inbound", vec![]),
    ));
    control.set_resources(type_url::LISTENER, listeners);
    let cp = control.listen(([127, 0, 0, 1], 0).into()).await?;
    let (tx, mut serving) = tokio::sync::watch::channel(false);
    let server = MeshServer::builder()
        .with_bootstrap(server_bootstrap(
            cp.local_addr(),
            &format!("srv-{id}"),
            false,
        ))
        .with_telemetry(telemetry.clone())
        .on_serving_status(move |s| {
            tx.send_replace(s.is_serving());
        })
        .add_service(GreeterServer::new(mesh_examples::NamedGreeter {
            id: id.to_string(),
        }));
    tokio::spawn(async move {
        let _ = server
            .serve_with_incoming_shutdown(tcp, std::future::pending())
            .await;
    });
    tokio::time::timeout(Duration::from_secs(10), serving.wait_for(|s| *s)).await??;
    let channel = MeshChannel::builder("xds:///greeter.default:8080")
        .with_bootstrap(bootstrap_for(cp.local_addr(), &format!("cli-{id}")))
        .with_telemetry(telemetry)
        .connect()
        .await?;
    Ok((cp, channel))
}

/// One caller of the shared closed-loop driver: a unary SayHello under an application
/// span (`bench.app`), as an instrumented service would make it.
struct Hello(GreeterClient<MeshChannel>);

impl Caller for Hello {
    async fn call(&mut self) -> Result<(), String> {
        let call = self.0.say_hello(HelloRequest {
            name: "bench".into(),
        });
        tracing::Instrument::instrument(call, tracing::info_span!("bench.app"))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Calls for `seconds` with `concurrency` callers (the e2e bench's driver); returns (RPS,
/// process CPU µs per call: client and server share the process).
async fn round(
    channel: &MeshChannel,
    seconds: u64,
    concurrency: usize,
) -> anyhow::Result<(f64, f64)> {
    let cell = Cell {
        // Only labels the result: the call is `Hello`'s.
        workload: Workload::Unary100,
        concurrency,
    };
    let timing = Timing {
        warmup: Duration::from_millis(100),
        duration: Duration::from_secs(seconds),
    };
    let r = drive(cell, timing, |_| Hello(GreeterClient::new(channel.clone()))).await;
    anyhow::ensure!(
        r.errors == 0,
        "{} calls failed, first: {}",
        r.errors,
        r.first_error.unwrap_or_default()
    );
    Ok((r.rps, r.client_cpu_us_per_call))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Spans of the mesh (and the benchmark's application span) go to an SDK tracer
    // through tracing-opentelemetry: sampled and built, then dropped (no exporter).
    let mut tracer = opentelemetry_sdk::trace::SdkTracerProvider::builder();
    if args.sampled_off {
        tracer = tracer.with_sampler(Sampler::AlwaysOff);
    } else if let Some(r) = args.ratio {
        anyhow::ensure!((0.0..=1.0).contains(&r), "--ratio {r} is not in [0, 1]");
        tracer = tracer.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            r,
        ))));
    }
    let tracer = tracer.build();
    let ours = tracing_subscriber::filter::filter_fn(|m| {
        m.target().starts_with("mesh_") || m.target().starts_with("telemetry_cost")
    });
    if !args.no_spans {
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer.tracer("bench"))
                    .with_filter(ours),
            ),
        )?;
    }
    let mode = match (args.no_spans, args.sampled_off, args.ratio) {
        (true, _, _) => "metrics only".to_string(),
        (_, true, _) => "metrics + spans, sampler AlwaysOff".to_string(),
        (_, _, Some(r)) => format!("metrics + spans, sampler ParentBased(TraceIdRatioBased({r}))"),
        _ => "metrics + spans, every trace sampled".to_string(),
    };
    println!("telemetry on = {mode}; {} callers", args.concurrency);
    let prometheus = PrometheusMetrics::new()?;
    if args.micro {
        for (name, t) in [
            ("off", Telemetry::disabled()),
            (
                "on, no-op MeterProvider",
                Telemetry::new(&opentelemetry::metrics::noop::NoopMeterProvider::new()),
            ),
            ("on", Telemetry::new(prometheus.meter_provider())),
        ] {
            let (c, s) = micro(&t, 100_000);
            println!("hooks alone, telemetry {name}: client {c:.2} µs/call, server {s:.2} µs/call");
        }
    }
    let (_cp_off, off) = mesh(Telemetry::disabled(), "off").await?;
    let (_cp_on, on) = mesh(Telemetry::new(prometheus.meter_provider()), "on").await?;

    // Warm up both (connections, allocator, caches).
    round(&off, 1, args.concurrency).await?;
    round(&on, 1, args.concurrency).await?;
    let (mut rps_off, mut rps_on, mut cpu_off, mut cpu_on) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.rounds {
        let (a, ca) = round(&off, args.seconds, args.concurrency).await?;
        let (b, cb) = round(&on, args.seconds, args.concurrency).await?;
        println!(
            "round {}: off {a:>8.0} RPS {ca:>6.1} µs CPU/call   on {b:>8.0} RPS {cb:>6.1} µs CPU/call",
            i + 1
        );
        rps_off.push(a);
        rps_on.push(b);
        cpu_off.push(ca);
        cpu_on.push(cb);
    }
    // Paired differences of alternating rounds: drift between rounds cancels.
    let extra = median(
        cpu_on
            .iter()
            .zip(&cpu_off)
            .map(|(on, off)| on - off)
            .collect(),
    );
    let (off_m, on_m) = (median(rps_off), median(rps_on));
    let (coff, con) = (median(cpu_off), median(cpu_on));
    println!(
        "median RPS: off {off_m:.0}, on {on_m:.0}; on/off = {:.3} (throughput cost {:.1} %)",
        on_m / off_m,
        100.0 * (1.0 - on_m / off_m)
    );
    println!(
        "median CPU per call: off {coff:.1} µs, on {con:.1} µs (CPU cost {:.1} %); on − off per round, median: {extra:.1} µs CPU per call",
        100.0 * (con / coff - 1.0)
    );
    let text = prometheus.encode();
    if let Some(line) = text
        .lines()
        .find(|l| l.starts_with("grpc_client_attempt_started_total"))
    {
        println!("(telemetry on recorded: {line})");
    }
    Ok(())
}
