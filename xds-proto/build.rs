//! Compiles the project's own protos with protox (pure Rust, no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/helloworld.proto",
        "proto/grpc/testing/empty.proto",
        "proto/grpc/testing/messages.proto",
        "proto/grpc/testing/test.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    copy_envoy_descriptor_set()?;
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

/// Copies the FileDescriptorSet that `envoy-types` ships (`src/generated/types.bin`) into
/// OUT_DIR, so proto-JSON tools (mesh-control's raw mode) can resolve Envoy types by name.
/// The crate's location comes from `cargo metadata` (offline: every dependency is already
/// downloaded when build scripts run).
fn copy_envoy_descriptor_set() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("envoy_types.bin");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest =
        std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("Cargo.toml");
    let target = std::env::var("TARGET")?;
    // Only the target's dependencies are needed (and downloaded); try offline first.
    let run = |offline: bool| {
        let mut c = std::process::Command::new(&cargo);
        c.args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &target,
        ]);
        if offline {
            c.arg("--offline");
        }
        c.arg("--manifest-path").arg(&manifest).output()
    };
    let mut meta = run(true)?;
    if !meta.status.success() {
        meta = run(false)?;
    }
    if !meta.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&meta.stderr)
        )
        .into());
    }
    let text = String::from_utf8(meta.stdout)?;
    // Find `"manifest_path":".../envoy-types-<v>/Cargo.toml"` without a JSON dependency.
    let path = text
        .split("\"manifest_path\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|p| {
            std::path::Path::new(p)
                .parent()
                .and_then(|d| d.file_name())
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("envoy-types-"))
        })
        .ok_or("envoy-types not found in cargo metadata")?;
    let bin = std::path::Path::new(path)
        .parent()
        .ok_or("bad envoy-types path")?
        .join("src/generated/types.bin");
    println!("cargo:rerun-if-changed={}", bin.display());
    std::fs::copy(&bin, &out).map_err(|e| format!("copying {}: {e}", bin.display()))?;
    Ok(())
}
