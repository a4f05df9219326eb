//! Builds the Go programs of the interop suite (grpc-go's xDS interop client and server, the
//! `json2pb` converter) once per test process into `$CARGO_TARGET_DIR/interop/`, skipping the
//! build when the binary is newer than the module's sources (`*.go`, `go.mod`, `go.sum`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail};

/// Bound on one `go build`; from a cold module cache it downloads and compiles grpc-go.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// `<workspace>/tests`.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory: `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let workspace = tests_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(tests_dir);
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir), // an absolute dir replaces the base
        None => workspace.join("target"),
    }
}

/// `<target>/interop`, where the suite's binaries and its report go.
pub fn interop_dir() -> PathBuf {
    target_dir().join("interop")
}

/// The paths of grpc-go's xDS interop binaries.
#[derive(Debug, Clone)]
pub struct GrpcGoPeers {
    /// `google.golang.org/grpc/interop/xds/client`.
    pub client: PathBuf,
    /// `google.golang.org/grpc/interop/xds/server`.
    pub server: PathBuf,
}

/// Builds grpc-go's xDS interop client and server from `tests/interop/grpc-go` (once per
/// process) into `<target>/interop/grpc-go-{client,server}`.
pub fn grpc_go_peers() -> anyhow::Result<GrpcGoPeers> {
    static BUILT: OnceLock<Result<GrpcGoPeers, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let module = tests_dir().join("interop/grpc-go");
            let out = interop_dir();
            let client = go_build(
                &module,
                "google.golang.org/grpc/interop/xds/client",
                &out.join("grpc-go-client"),
            )?;
            let server = go_build(
                &module,
                "google.golang.org/grpc/interop/xds/server",
                &out.join("grpc-go-server"),
            )?;
            Ok(GrpcGoPeers { client, server })
        })
        .clone()
        .map_err(|e: String| anyhow!(e))
}

/// Builds `tests/interop/json2pb` (once per process) into `<target>/interop/json2pb`.
pub fn json2pb() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            go_build(
                &tests_dir().join("interop/json2pb"),
                ".",
                &interop_dir().join("json2pb"),
            )
        })
        .clone()
        .map_err(|e: String| anyhow!(e))
}

/// Builds `tests/interop/csds-go` (our Go CSDS client, grpcdebug's `xds config` command
/// line) once per process into `<target>/interop/csds-go`.
pub fn csds_go() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            go_build(
                &tests_dir().join("interop/csds-go"),
                ".",
                &interop_dir().join("csds-go"),
            )
        })
        .clone()
        .map_err(|e: String| anyhow!(e))
}

/// The newest modification time among a module's top-level `*.go`, `go.mod`, `go.sum`.
fn newest_source(dir: &Path) -> anyhow::Result<SystemTime> {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".go") || name == "go.mod" || name == "go.sum" {
            newest = newest.max(std::fs::metadata(&path)?.modified()?);
        }
    }
    Ok(newest)
}

/// `go build -o output package` in `module`, unless `output` is newer than the sources.
/// Errors are strings so a failed build is cached for the process like a good one.
pub fn go_build(module: &Path, package: &str, output: &Path) -> Result<PathBuf, String> {
    build_inner(module, package, output).map_err(|e| format!("{e:#}"))
}

fn build_inner(module: &Path, package: &str, output: &Path) -> anyhow::Result<PathBuf> {
    match std::process::Command::new("go")
        .arg("version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => bail!("`go version` failed ({})", o.status),
        Err(e) => bail!(
            "the `go` toolchain is needed for the interop suite (Go 1.26, see \
             tests/interop/grpc-go/go.mod): {e}"
        ),
    }
    if let Ok(built) = std::fs::metadata(output).and_then(|m| m.modified())
        && built > newest_source(module)?
    {
        return Ok(output.to_path_buf());
    }
    let out_dir = output.parent().ok_or_else(|| anyhow!("bad output path"))?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let file = output.file_name().and_then(|n| n.to_str()).unwrap_or("bin");
    // Build beside the final name and rename, so a concurrent process never runs a
    // half-written binary; log to a file so a full pipe cannot stall the bounded wait.
    let tmp = out_dir.join(format!("{file}.tmp.{}", std::process::id()));
    let log_path = out_dir.join(format!("{file}.build.{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = std::process::Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&tmp)
        .arg(package)
        .current_dir(module)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("running `go build`")?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > BUILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`go build {package}` in {} did not finish within {BUILD_TIMEOUT:?} (log: {})",
                module.display(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "`go build {package}` in {} failed ({status}):\n{log_text}",
            module.display()
        );
    }
    std::fs::rename(&tmp, output)
        .with_context(|| format!("moving {} to {}", tmp.display(), output.display()))?;
    Ok(output.to_path_buf())
}
