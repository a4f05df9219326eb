//! The persisted last-known-good cache (ours; issue 8): a process started while its control
//! plane is down boots from the resources an earlier run accepted, and a corrupted cache is
//! ignored with a warning while the process waits for the control plane.
//!
//! The second and third runs are real processes (`greeter-client`), as an operator would
//! start them; the first run, which fills the cache, is a MeshChannel in this test.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mesh_control::{ControlPlane, MeshConfig};
use mesh_tests::binaries::our_bin_dir;
use mesh_tests::*;

fn bootstrap_json(cp: std::net::SocketAddr, cache: &Path) -> String {
    serde_json::json!({
        "xds_servers": [{
            "server_uri": cp.to_string(),
            "channel_creds": [{"type": "insecure"}],
            "server_features": ["xds_v3"]
        }],
        "node": {"id": "persist-test", "cluster": "mesh-tests", "locality": {}},
        "mesh_cache_dir": cache,
    })
    .to_string()
}

async fn greeter_client(bootstrap: &Path, count: u32) -> tokio::process::Child {
    let bin = our_bin_dir().expect("our binaries").join("greeter-client");
    tokio::process::Command::new(bin)
        .args([
            "--target",
            "xds:///greeter.default:8080",
            "--count",
            &count.to_string(),
        ])
        .env("GRPC_XDS_BOOTSTRAP", bootstrap)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn greeter-client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_from_the_cache_with_the_control_plane_down() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("xds-cache");
    let backends = start_backends(2).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let config = MeshConfig::from_yaml(&greeter_yaml(&addrs)).unwrap();
    let cp = ControlPlane::start(([127, 0, 0, 1], 0).into(), config.clone())
        .await
        .unwrap();
    let cp_addr = cp.local_addr();
    let bootstrap_path = dir.path().join("bootstrap.json");
    std::fs::write(&bootstrap_path, bootstrap_json(cp_addr, &cache)).unwrap();

    // Run 1: a client with the control plane up fills the cache.
    {
        let bootstrap = mesh_client::bootstrap::Bootstrap::from_file(&bootstrap_path).unwrap();
        let mut client = mesh_tests::greeter_client(bootstrap).await;
        let counts = spread(&mut client, 10).await.unwrap();
        assert_eq!(counts.values().sum::<usize>(), 10);
    }
    let files = std::fs::read_dir(&cache).unwrap().count();
    println!(
        "run 1 (control plane up): 10 RPCs ok; {files} resources cached in {}",
        cache.display()
    );
    assert_eq!(files, 4, "LDS, RDS, CDS and EDS resources are persisted");
    cp.shutdown().await;

    // CSDS of a fresh client with the control plane down: the cached listener is served,
    // marked stale.
    {
        use mesh_client::xds::client::{ResourceState, ResourceStatus};
        use mesh_client::xds::resource::ResourceType;
        let bootstrap = mesh_client::bootstrap::Bootstrap::from_file(&bootstrap_path).unwrap();
        let client = mesh_client::xds::XdsClient::new(bootstrap).unwrap();
        let mut sub = client.subscribe(ResourceType::Listener, "greeter.default:8080");
        for _ in 0..50 {
            if matches!(sub.borrow(), ResourceState::Ready(_)) {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), sub.changed()).await;
        }
        assert!(
            matches!(sub.borrow(), ResourceState::Ready(_)),
            "{:?}",
            sub.borrow()
        );
        let dump = client.config_dump();
        let row = dump
            .iter()
            .find(|d| d.name == "greeter.default:8080")
            .unwrap();
        let why = row
            .error
            .as_ref()
            .map(|e| e.details.clone())
            .unwrap_or_default();
        println!(
            "CSDS with the control plane down: {} {:?}: {why}",
            row.name, row.status
        );
        assert_eq!(row.status, ResourceStatus::Cached);
        assert!(
            why.starts_with("stale: served from the last-known-good cache"),
            "{why}"
        );
    }

    // Run 2: a new process, control plane down: it boots from the cache and serves.
    let child = greeter_client(&bootstrap_path, 20).await;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("run 2 finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The binary logs with tracing's default writer, stdout; look at both.
    let stderr = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let replies = stdout.lines().filter(|l| l.starts_with("Hello")).count();
    println!(
        "run 2 (control plane down, valid cache): exit {:?}, {replies} replies",
        out.status.code()
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(replies, 20);
    assert!(
        stderr.contains("serving the last-known-good resource from the cache (stale)"),
        "the stale boot is said in the logs:\n{stderr}"
    );

    // Run 3: corrupt every cached file: the process starts, warns, and waits for the
    // control plane, which comes back on the same address a little later.
    for f in std::fs::read_dir(&cache).unwrap() {
        let path = f.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        std::fs::write(&path, bytes).unwrap();
    }
    let child = greeter_client(&bootstrap_path, 5).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cp = ControlPlane::start(cp_addr, config).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("run 3 finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let replies = stdout.lines().filter(|l| l.starts_with("Hello")).count();
    println!(
        "run 3 (corrupt cache, control plane back after 2 s): exit {:?}, {replies} replies",
        out.status.code()
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(replies, 5);
    assert!(
        stderr.contains("checksum mismatch"),
        "the corrupt file is warned about:\n{stderr}"
    );
    assert!(
        !stderr.contains("serving the last-known-good resource"),
        "nothing corrupt is served:\n{stderr}"
    );
    cp.shutdown().await;
}
