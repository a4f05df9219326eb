//! Istio in the tests: Istio's own discovery server (`tests/istio/istiod`, built from
//! `istio.io/istio` at a pinned release-1.31 commit, see its `main.go` for why it is not the
//! `pilot-discovery` binary) on loopback, fed Istio YAML (ServiceEntry, WorkloadEntry,
//! VirtualService, DestinationRule, PeerAuthentication, AuthorizationPolicy) from a directory
//! the test writes, and the bootstrap Istio's agent writes for a proxyless workload.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mesh_client::bootstrap::Bootstrap;
use mesh_control::bootstrap::{IstioNode, istio_bootstrap_json};

use crate::interop::gobuild::{go_build, target_dir, tests_dir};

/// How long istiod may take to answer `/ready` (its first push context is built at start).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How long to wait for a build `.ci/run` started in the background.
const BACKGROUND_BUILD_WAIT: Duration = Duration::from_secs(1200);

/// Builds `tests/istio/istiod` once per process into `<target>/istio/istiod`. `.ci/run`
/// starts that build in the background while the Rust tests run (it is the biggest Go
/// program here) and marks it with `<target>/istio/istiod.building`: wait for it first, so
/// the two builds do not race.
pub fn istiod_bin() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let marker = target_dir().join("istio/istiod.building");
            let started = Instant::now();
            while marker.exists() && started.elapsed() < BACKGROUND_BUILD_WAIT {
                std::thread::sleep(Duration::from_secs(1));
            }
            go_build(
                &tests_dir().join("istio/istiod"),
                ".",
                &target_dir().join("istio/istiod"),
            )
        })
        .clone()
}

/// A free loopback port (bound then released; the caller binds it again at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running istiod serving the Istio YAML in its config directory; killed on drop.
pub struct Istiod {
    child: Option<Child>,
    /// The plaintext xDS address (what the bootstrap's `server_uri` names).
    pub xds: SocketAddr,
    http: SocketAddr,
    /// The directory of `*.yaml` files it serves (rewritten by [`Istiod::write`]).
    pub config_dir: PathBuf,
    log: PathBuf,
}

impl Istiod {
    /// Starts istiod on fresh loopback ports over a new config directory holding `files`
    /// (`name` → YAML), and waits until it is ready.
    pub fn start(tag: &str, files: &[(&str, String)]) -> Result<Istiod, String> {
        let dir = target_dir()
            .join("istio")
            .join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut istiod = Istiod {
            child: None,
            xds: SocketAddr::from(([127, 0, 0, 1], free_port())),
            http: SocketAddr::from(([127, 0, 0, 1], free_port())),
            log: dir.with_extension("log"),
            config_dir: dir,
        };
        for (name, yaml) in files {
            istiod.write(name, yaml)?;
        }
        istiod.spawn()?;
        Ok(istiod)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let bin = istiod_bin()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("creating {}: {e}", self.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = std::process::Command::new(&bin)
            .arg("-grpc")
            .arg(self.xds.to_string())
            .arg("-http")
            .arg(self.http.to_string())
            .arg("-config")
            .arg(&self.config_dir)
            // No Kubernetes, no CA: plaintext xDS only, certificates come from files.
            .env("ENABLE_CA_SERVER", "false")
            .env("PILOT_ENABLE_XDS_CACHE", "false")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!(
                    "istiod exited ({status}) before it was ready: {}",
                    self.log_tail()
                ));
            }
            if ready(self.http) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "istiod not ready within {READY_TIMEOUT:?}: {}",
            self.log_tail()
        ))
    }

    /// Writes (or replaces, atomically) one YAML file of the served config; istiod notices
    /// within its poll interval and pushes.
    pub fn write(&self, name: &str, yaml: &str) -> Result<(), String> {
        let path = self.config_dir.join(name);
        let tmp = self.config_dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, yaml)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// Stops istiod (SIGKILL: as abrupt as a crashed pod).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts istiod again on the same ports and config.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn()
    }

    /// Every NACK istiod logged (`ACK ERROR`: a client rejected what it sent), so a scenario
    /// can assert there was none.
    pub fn nacks(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ACK ERROR"))
            .map(str::to_string)
            .collect()
    }

    /// Ends a scenario that passed: asserts our client rejected nothing istiod sent (istiod
    /// logged no `ACK ERROR`), then [`report`]s what it observed.
    pub fn finish(&self, scenario: &str, observed: &str) {
        assert_eq!(
            self.nacks(),
            Vec::<String>::new(),
            "{scenario}: our client rejected nothing istiod sent"
        );
        report(scenario, observed);
    }

    /// The last lines istiod logged.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// The bootstrap Istio's agent writes for workload `name` at `ip` in `namespace`,
    /// pointing at this istiod, with the `default` certificate provider over `certs`.
    pub fn bootstrap(
        &self,
        ip: IpAddr,
        name: &str,
        namespace: &str,
        certs: Option<&Path>,
    ) -> Bootstrap {
        let node = IstioNode::new(ip, name, namespace);
        let json = istio_bootstrap_json(&self.xds.to_string(), &node, certs);
        Bootstrap::from_json(&json.to_string()).expect("the Istio bootstrap parses")
    }

    /// [`Istiod::bootstrap`] (no certificates) speaking delta xDS to istiod (`delta_ads`).
    pub fn delta_bootstrap(&self, ip: IpAddr, name: &str, namespace: &str) -> Bootstrap {
        let node = IstioNode::new(ip, name, namespace);
        let mut json = istio_bootstrap_json(&self.xds.to_string(), &node, None);
        json["xds_servers"][0]["server_features"] = serde_json::json!(["xds_v3", "delta_ads"]);
        Bootstrap::from_json(&json.to_string()).expect("the Istio bootstrap parses")
    }
}

impl Drop for Istiod {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.config_dir);
    }
}

/// Appends one scenario's observed numbers to `<target>/istio/report.md` and, as the istiod
/// column, to the interop report `<target>/interop/report.md` (which the interop suite, run
/// just before in `cargo test`, has just written): a header once per test process, then a
/// row per scenario.
pub fn report(scenario: &str, observed: &str) {
    use std::io::Write;
    static HEADER_WRITTEN: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut written = HEADER_WRITTEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let header = if *written {
        ""
    } else {
        "\n## Under istiod (`tests/tests/istio.rs`, Istio release-1.31 discovery server)\n\n\
         | Scenario | client/server/control plane | Result |\n|---|---|---|\n"
    };
    *written = true;
    for dir in ["istio", "interop"] {
        let path = target_dir().join(dir).join("report.md");
        let _ = std::fs::create_dir_all(target_dir().join(dir));
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            let _ = writeln!(
                f,
                "{header}| {scenario} | ours/ours/istiod | PASS: {observed} |"
            );
        }
    }
}

/// Whether `GET /ready` on `addr` answers 200 (a bounded, blocking probe).
fn ready(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /ready HTTP/1.0\r\nHost: istiod\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).unwrap_or(0);
    buf[..n].starts_with(b"HTTP/1.0 200") || buf[..n].starts_with(b"HTTP/1.1 200")
}

/// A ServiceEntry for `host` (`MESH_INTERNAL`, STATIC) on gRPC `port`, selecting the
/// WorkloadEntries labelled `app: {app}`.
pub fn service_entry(name: &str, namespace: &str, host: &str, port: u16, app: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: {name}
  namespace: {namespace}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
    - number: {port}
      name: grpc
      protocol: GRPC
  workloadSelector:
    labels:
      app: {app}
"
    )
}

/// A WorkloadEntry `name` at `ip` labelled `app: {app}`, `version: {version}`, running as
/// service account `sa`.
pub fn workload_entry(
    name: &str,
    namespace: &str,
    ip: IpAddr,
    app: &str,
    version: &str,
    sa: &str,
) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: {name}
  namespace: {namespace}
spec:
  address: {ip}
  serviceAccount: {sa}
  labels:
    app: {app}
    version: {version}
"
    )
}
