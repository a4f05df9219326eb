//! End-to-end: the admin server's CSDS (gRFC A40) shows a MeshChannel's view of mesh-control,
//! read back by a tonic CSDS client and by a Go CSDS client built on grpc-go and Envoy's
//! Go protos (`tests/interop/csds-go`, the grpcdebug stand-in; a real grpcdebug binary named
//! by `$GRPCDEBUG` is run as well).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use mesh_client::xds::XdsClient;
use mesh_control::{ControlPlane, MeshConfig};
use mesh_tests::*;
use xds_proto::envoy::envoy::admin::v3::ClientResourceStatus;
use xds_proto::envoy::envoy::service::status::v3::client_status_discovery_service_client::ClientStatusDiscoveryServiceClient;
use xds_proto::envoy::envoy::service::status::v3::{ClientConfig, ClientStatusRequest};
use xds_proto::helloworld::HelloRequest;
use xds_proto::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION};

/// Bound on one run of the Go client.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on any other wait.
const WAIT: Duration = Duration::from_secs(20);

/// `tests/interop/csds-go`.
fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/csds-go")
}

/// `$CARGO_TARGET_DIR/csds-go/csds-go`, else `<workspace>/target/csds-go/csds-go`.
fn binary_path() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().unwrap_or(manifest);
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("csds-go").join("csds-go")
}

/// Builds the Go CSDS client unless the binary is newer than every source.
fn build() -> anyhow::Result<PathBuf> {
    mesh_tests::interop::gobuild::go_build(&source_dir(), ".", &binary_path())
        .map_err(|e| anyhow!(e))
}

/// The Go CSDS client, built once per test process.
fn csds_go() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Runs `bin ADDR xds <what>` (grpcdebug's command line), bounded and killed on drop.
async fn run_xds(bin: &Path, addr: std::net::SocketAddr, what: &str) -> anyhow::Result<String> {
    let child = tokio::process::Command::new(bin)
        .arg(addr.to_string())
        .arg("xds")
        .arg(what)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("{} xds {what} exceeded {RUN_TIMEOUT:?}", bin.display()))??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{} xds {what} failed ({}): {}{stdout}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// Asserts the `xds status` table lists every resource as ACKED with its version, and the
/// `xds config` proto-JSON dump carries every resource with its decoded value.
fn assert_go_view(tool: &str, status: &str, config: &str, resources: &[(String, String, String)]) {
    // Go's proto-JSON varies its whitespace on purpose: compare without it.
    let compact: String = config.split_whitespace().collect();
    for (type_url, name, version) in resources {
        let row = status
            .lines()
            .find(|line| {
                let words: Vec<_> = line.split_whitespace().collect();
                words.contains(&name.as_str()) && words.contains(&type_url.as_str())
            })
            .unwrap_or_else(|| {
                panic!("{tool} xds status has no row for {type_url} {name}:\n{status}")
            });
        let words: Vec<_> = row.split_whitespace().collect();
        assert!(
            words.contains(&"ACKED") && words.contains(&version.as_str()),
            "{tool}: {name} not ACKED at {version}: {row}"
        );
        assert!(
            compact.contains(&format!("\"name\":\"{name}\"")),
            "{tool} xds config lacks {name}:\n{config}"
        );
    }
    for type_url in [
        LISTENER,
        ROUTE_CONFIGURATION,
        CLUSTER,
        CLUSTER_LOAD_ASSIGNMENT,
    ] {
        // The values are decoded (proto-JSON `@type`), not opaque bytes.
        assert!(
            compact.contains(&format!("\"@type\":\"{type_url}\"")),
            "{tool} xds config has no decoded {type_url}:\n{config}"
        );
    }
    assert_eq!(
        compact.matches("\"clientStatus\":\"ACKED\"").count(),
        resources.len(),
        "{tool}: {config}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csds_shows_the_client_view_to_tonic_and_go_clients() {
    init_tracing();
    // Build the Go client while the mesh starts.
    let built = tokio::task::spawn_blocking(csds_go);

    let backends = start_backends(1).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let config = MeshConfig::from_yaml(&greeter_yaml(&addrs)).expect("valid mesh.yaml");
    let cp = ControlPlane::start(([127, 0, 0, 1], 0).into(), config)
        .await
        .expect("control plane starts");
    let bootstrap = bootstrap_for(cp.local_addr(), "csds-e2e");
    let mut greeter = greeter_client(bootstrap.clone()).await;
    tokio::time::timeout(
        WAIT,
        greeter.say_hello(HelloRequest {
            name: "csds".into(),
        }),
    )
    .await
    .expect("RPC in time")
    .expect("RPC succeeds");

    // The admin server as the interop client will mount it: every client of the process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = tokio::spawn(mesh_client::admin::serve_admin(listener, async {
        let _ = stopped.await;
    }));

    // tonic CSDS client.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{admin_addr}"))
        .unwrap()
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect()
        .await
        .expect("admin server reachable");
    let response = ClientStatusDiscoveryServiceClient::new(channel)
        .fetch_client_status(ClientStatusRequest::default())
        .await
        .expect("FetchClientStatus")
        .into_inner();
    let ours: Vec<&ClientConfig> = response
        .config
        .iter()
        .filter(|c| c.node.as_ref().is_some_and(|n| n.id == "csds-e2e"))
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "one ClientConfig for our client: {response:?}"
    );
    let ours = ours[0];
    let mut resources = Vec::new();
    for g in &ours.generic_xds_configs {
        assert_eq!(
            g.client_status,
            ClientResourceStatus::Acked as i32,
            "{} {} not ACKED: {g:?}",
            g.type_url,
            g.name
        );
        assert!(!g.version_info.is_empty(), "{g:?}");
        assert!(g.last_updated.is_some() && g.error_state.is_none(), "{g:?}");
        let any = g.xds_config.as_ref().expect("the resource as received");
        assert_eq!(any.type_url, g.type_url);
        resources.push((g.type_url.clone(), g.name.clone(), g.version_info.clone()));
    }
    for type_url in [
        LISTENER,
        ROUTE_CONFIGURATION,
        CLUSTER,
        CLUSTER_LOAD_ASSIGNMENT,
    ] {
        assert!(
            resources.iter().any(|(t, _, _)| t == type_url),
            "no {type_url} in {resources:?}"
        );
    }
    assert!(
        resources
            .iter()
            .any(|(t, n, _)| t == LISTENER && n == "greeter.default:8080"),
        "{resources:?}"
    );
    // The same view as the client's own snapshot, and as the text page.
    let client = XdsClient::shared(&bootstrap).unwrap();
    assert_eq!(client.config_dump().len(), resources.len());
    let page = mesh_client::admin::status_text();
    for (_, name, _) in &resources {
        assert!(page.contains(&format!("{name} ACKED")), "{page}");
    }
    println!("status page:\n{page}");

    // The Go client (grpc-go, Envoy's Go protos), as grpcdebug would be run.
    let bin = built.await.unwrap().expect("csds-go builds");
    let status = run_xds(&bin, admin_addr, "status").await.unwrap();
    let config = run_xds(&bin, admin_addr, "config").await.unwrap();
    println!("csds-go xds status:\n{status}");
    println!(
        "csds-go xds config (first 40 lines):\n{}",
        config.lines().take(40).collect::<Vec<_>>().join("\n")
    );
    assert_go_view("csds-go", &status, &config, &resources);

    // A real grpcdebug, when one is at hand.
    match std::env::var_os("GRPCDEBUG") {
        Some(path) => {
            let real = PathBuf::from(path);
            let status = run_xds(&real, admin_addr, "status").await.unwrap();
            let config = run_xds(&real, admin_addr, "config").await.unwrap();
            println!("grpcdebug xds status:\n{status}");
            assert_go_view("grpcdebug", &status, &config, &resources);
        }
        None => println!(
            "GRPCDEBUG not set: grpcdebug itself not run (its Go module is not served here)"
        ),
    }

    let _ = stop.send(());
    let ended = tokio::time::timeout(WAIT, admin)
        .await
        .expect("admin server stops");
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
}
