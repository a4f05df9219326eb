//! Our own binaries used as separate processes (`interop-client`, `interop-server`,
//! `greeter-client`, `greeter-server`, package mesh-examples).
//!
//! They live in another package, so `CARGO_BIN_EXE_*` cannot name them. The first test
//! that needs them builds them with the same cargo that runs the tests (so they are never
//! stale), once per test process. `MESH_INTEROP_SKIP_BUILD=1` skips that build.

use std::path::PathBuf;
use std::sync::OnceLock;

/// `target/debug`, after building our binaries there; the error says what failed.
pub fn our_bin_dir() -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = crate::interop::gobuild::target_dir().join("debug");
        if std::env::var_os("MESH_INTEROP_SKIP_BUILD").is_none() {
            let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map(PathBuf::from)
                .ok_or("no workspace root")?;
            let status = std::process::Command::new(env!("CARGO"))
                .args([
                    "build",
                    "-p",
                    "mesh-examples",
                    "--bin",
                    "interop-client",
                    "--bin",
                    "interop-server",
                    "--bin",
                    "greeter-client",
                    "--bin",
                    "greeter-server",
                ])
                .current_dir(workspace)
                .status()
                .map_err(|e| format!("running cargo build: {e}"))?;
            if !status.success() {
                return Err("cargo build -p mesh-examples (interop binaries) failed".into());
            }
        }
        for bin in [
            "interop-server",
            "interop-client",
            "greeter-client",
            "greeter-server",
        ] {
            if !dir.join(bin).is_file() {
                return Err(format!("{bin} not found in {}", dir.display()));
            }
        }
        Ok(dir)
    })
    .clone()
}

/// The `greeter-server` example binary (an xDS-managed greeter, bootstrap from the
/// environment), built with the others by [`our_bin_dir`].
pub fn greeter_server_bin() -> Result<PathBuf, String> {
    Ok(our_bin_dir()?.join("greeter-server"))
}
