//! Tests of the `mesh-control` binary: `validate` and `bootstrap`.

// Test helpers outside #[test] fns may panic: a failed wait is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mesh-control"))
}

#[test]
fn validate_prints_what_would_be_served() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mesh.yaml");
    let out = bin().args(["validate", example]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("listeners (1)"), "{stdout}");
    assert!(
        stdout.contains(
            "greeter.default:8080: mtls DISABLE, identity spiffe://cluster.local/ns/default/sa/greeter"
        ),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("chain inbound-plaintext: plaintext, routes inbound|50051||greeter.default"),
        "{stdout}"
    );
    assert!(stdout.contains("greeter.default:8080"), "{stdout}");
    assert!(
        stdout.contains("outbound|8080|v1|greeter.default"),
        "{stdout}"
    );
    assert!(stdout.contains("3 endpoint(s)"), "{stdout}");
    assert!(stdout.contains("inbound listeners (3)"), "{stdout}");
    assert!(
        stdout.contains("xds.istio.io/grpc/lds/inbound/127.0.0.1:50051"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rbac: allow [local-may-say-hello]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rbac shadow: deny [deny-mallory]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rbac for prefix /grpc.health.v1.Health/: disabled"),
        "{stdout}"
    );
}

#[test]
fn validate_fails_with_the_field_on_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mesh.yaml");
    std::fs::write(
        &path,
        "services:\n  - name: greeter.default\n    port: 8080\n    routes:\n      - destination: { subset: v3 }\n",
    )
    .unwrap();
    let out = bin().arg("validate").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            r#"services[0].routes[0].destination.subset: no subset "v3" in service greeter.default"#
        ),
        "{stderr}"
    );
    let missing = bin()
        .args(["validate", "/nonexistent/mesh.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn bootstrap_writes_json_to_stdout_and_file() {
    let out = bin()
        .args(["bootstrap", "--node", "n1", "--server", "127.0.0.1:1234"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json, mesh_control::bootstrap_json("127.0.0.1:1234", "n1"));
    assert_eq!(
        json["xds_servers"][0]["channel_creds"][0]["type"],
        "insecure"
    );
    assert_eq!(json["xds_servers"][0]["server_features"][0], "xds_v3");
    assert_eq!(
        json["server_listener_resource_name_template"],
        "xds.istio.io/grpc/lds/inbound/%s"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bootstrap.json");
    let status = bin()
        .args(["bootstrap", "--node", "n2", "--out"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["node"]["id"], "n2");
    assert_eq!(written["xds_servers"][0]["server_uri"], "127.0.0.1:18000");
}

#[test]
fn bootstrap_with_certs_adds_the_file_watcher_provider() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = bin()
        .args(["bootstrap", "--node", "n3", "--certs"])
        .arg(&certs)
        .args(["--refresh-interval", "1500ms"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json,
        mesh_control::bootstrap_json_with_cert_refresh(
            "127.0.0.1:18000",
            "n3",
            Some(&certs),
            std::time::Duration::from_millis(1500)
        )
    );
    let config = &json["certificate_providers"]["default"]["config"];
    assert_eq!(
        json["certificate_providers"]["default"]["plugin_name"],
        "file_watcher"
    );
    assert_eq!(
        config["certificate_file"],
        certs.join("cert-chain.pem").to_str().unwrap()
    );
    assert_eq!(
        config["private_key_file"],
        certs.join("key.pem").to_str().unwrap()
    );
    assert_eq!(
        config["ca_certificate_file"],
        certs.join("root-cert.pem").to_str().unwrap()
    );
    assert_eq!(config["refresh_interval"], "1.5s");

    let default = bin()
        .args(["bootstrap", "--node", "n3", "--certs"])
        .arg(&certs)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&default.stdout).unwrap();
    assert_eq!(
        json["certificate_providers"]["default"]["config"]["refresh_interval"],
        "10s"
    );

    // A refresh interval without certificates is a usage error.
    let alone = bin()
        .args(["bootstrap", "--node", "n3", "--refresh-interval", "5s"])
        .output()
        .unwrap();
    assert_eq!(alone.status.code(), Some(2));
}
