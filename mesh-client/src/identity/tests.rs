//! End-to-end identity tests: real certificates from mesh-control's dev CA, real rustls
//! handshakes over TCP on 127.0.0.1.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh_control::ca::{DevCa, IssueOptions, Svid};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::config::StringMatchKind;

const TD: &str = "cluster.local";
const GREETER: &str = "spiffe://cluster.local/ns/default/sa/greeter";
const HOUR: Duration = Duration::from_secs(3600);

fn material(svid: &Svid) -> CertMaterial {
    let identity = Identity::from_pem(
        svid.cert_chain_pem.as_bytes(),
        svid.key_pem.as_bytes(),
        Path::new("cert-chain.pem"),
        Path::new("key.pem"),
    )
    .unwrap();
    let roots = Roots::from_pem(svid.root_cert_pem.as_bytes(), Path::new("root-cert.pem")).unwrap();
    CertMaterial::new(Some(identity), Some(roots))
}

fn svid(ca: &DevCa, sa: &str) -> Svid {
    ca.issue_svid("default", sa, HOUR).unwrap()
}

fn with(ca: &DevCa, edit: impl FnOnce(&mut IssueOptions)) -> Svid {
    let mut options = IssueOptions::svid(TD, "default", "greeter", HOUR);
    edit(&mut options);
    ca.issue(&options).unwrap()
}

fn expect(matcher: SanMatcher) -> PeerValidation {
    PeerValidation::default().with_san(matcher)
}

/// Both sides of one handshake: what each side learned about the other, or its error.
struct Outcome {
    client: Result<Option<PeerTlsIdentity>, String>,
    server: Result<Option<PeerTlsIdentity>, String>,
}

async fn handshake(client: Arc<ClientConfig>, server: Arc<ServerConfig>) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match TlsAcceptor::from(server).accept(tcp).await {
            Ok(mut tls) => {
                let (_, conn) = tls.get_ref();
                assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
                let peer = conn.peer_certificates().and_then(peer_identity);
                // One byte each way, so each side hears the other's verdict.
                let mut byte = [0u8; 1];
                match tokio::io::AsyncReadExt::read(&mut tls, &mut byte).await {
                    Err(e) => Err(describe(&e)),
                    Ok(_) => {
                        let _ = tokio::io::AsyncWriteExt::write_all(&mut tls, b"y").await;
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                        Ok(peer)
                    }
                }
            }
            Err(e) => Err(describe(&e)),
        }
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("greeter.default.svc").unwrap();
    let client = match TlsConnector::from(client).connect(name, tcp).await {
        Ok(mut tls) => {
            let peer = tls.get_ref().1.peer_certificates().and_then(peer_identity);
            // In TLS 1.3 the server judges our certificate after we finish; a write and a
            // read surface its alert, if any.
            let _ = tokio::io::AsyncWriteExt::write_all(&mut tls, b"x").await;
            let mut byte = [0u8; 1];
            match tokio::time::timeout(
                Duration::from_millis(200),
                tokio::io::AsyncReadExt::read(&mut tls, &mut byte),
            )
            .await
            {
                Ok(Err(e)) => Err(describe(&e)),
                _ => Ok(peer),
            }
        }
        Err(e) => Err(describe(&e)),
    };
    let server = tokio::time::timeout(Duration::from_secs(5), server_side)
        .await
        .unwrap()
        .unwrap();
    Outcome { client, server }
}

fn describe(e: &std::io::Error) -> String {
    match IdentityError::from_io(e) {
        Some(identity) => identity.to_string(),
        None => e.to_string(),
    }
}

fn client_cfg(
    m: &CertMaterial,
    roots: &CertMaterial,
    policy: &PeerValidation,
) -> Arc<ClientConfig> {
    client_config(Some(m), roots, policy).unwrap()
}

fn server_cfg(
    m: &CertMaterial,
    roots: &CertMaterial,
    policy: &PeerValidation,
) -> Arc<ServerConfig> {
    server_config(m, Some(roots), policy, true).unwrap()
}

#[tokio::test]
async fn identity_good_svids_both_sides() {
    let ca = DevCa::generate(TD).unwrap();
    let server = material(&svid(&ca, "greeter"));
    let client = material(&svid(&ca, "caller"));
    let out = handshake(
        client_cfg(&client, &client, &expect(SanMatcher::exact_uri(GREETER))),
        server_cfg(
            &server,
            &server,
            &expect(SanMatcher::new(
                SanType::Uri,
                StringMatchKind::Prefix("spiffe://cluster.local/ns/default/".into()),
                false,
            )),
        ),
    )
    .await;
    let seen_by_client = out.client.unwrap().unwrap();
    assert_eq!(seen_by_client.spiffe_id.unwrap().to_string(), GREETER);
    assert_eq!(
        seen_by_client.serial_hex,
        server.identity().unwrap().serial_hex()
    );
    assert_eq!(seen_by_client.cert.subject, "O=cluster.local");
    let seen_by_server = out.server.unwrap().unwrap();
    assert_eq!(
        seen_by_server.spiffe_id.unwrap().istio_workload(),
        Some(("default", "caller"))
    );
    assert_eq!(
        seen_by_server.cert.uri_sans,
        ["spiffe://cluster.local/ns/default/sa/caller"]
    );
}

/// The server presents `bad`; the client must reject it with a message containing `want`.
async fn client_rejects(ca: &DevCa, bad: &Svid, policy: PeerValidation, want: &str) {
    let client = material(&svid(ca, "caller"));
    let server = CertMaterial::new(material(bad).identity().cloned(), client.roots().cloned());
    let out = handshake(
        client_cfg(&client, &client, &policy),
        server_cfg(&server, &client, &PeerValidation::default()),
    )
    .await;
    let err = out.client.expect_err("client must reject the server");
    assert!(err.contains(want), "error {err:?} lacks {want:?}");
}

#[tokio::test]
async fn identity_client_rejects_bad_server_certificates() {
    let ca = DevCa::generate(TD).unwrap();
    let any = PeerValidation::default();
    let now = SystemTime::now();

    client_rejects(
        &ca,
        &svid(&ca, "other"),
        expect(SanMatcher::new(SanType::Any, StringMatchKind::Exact(GREETER.into()), false)),
        r#"peer certificate identity "spiffe://cluster.local/ns/default/sa/other" does not match any of [exact "spiffe://cluster.local/ns/default/sa/greeter"]"#,
    )
    .await;
    let other_ca = DevCa::generate(TD).unwrap();
    client_rejects(
        &ca,
        &svid(&other_ca, "greeter"),
        any.clone(),
        r#"peer certificate "spiffe://cluster.local/ns/default/sa/greeter" is not trusted: its issuer"#,
    )
    .await;
    client_rejects(
        &ca,
        &with(&ca, |o| {
            o.not_before = now - 2 * HOUR;
            o.not_after = now - HOUR;
        }),
        any.clone(),
        "is not trusted: it expired at",
    )
    .await;
    client_rejects(
        &ca,
        &with(&ca, |o| {
            o.not_before = now + HOUR;
            o.not_after = now + 2 * HOUR;
        }),
        any.clone(),
        "is not trusted: it is not valid until",
    )
    .await;
    client_rejects(
        &ca,
        &with(&ca, |o| {
            o.uri_sans
                .push("spiffe://cluster.local/ns/default/sa/second".into())
        }),
        any.clone(),
        "is not an X.509-SVID: it has 2 URI SANs; an X.509-SVID has exactly one",
    )
    .await;
    client_rejects(
        &ca,
        &with(&ca, |o| o.is_ca = true),
        any.clone(),
        "is not an X.509-SVID: it is a CA certificate (basicConstraints cA=true)",
    )
    .await;
    client_rejects(
        &ca,
        &with(&ca, |o| o.key_cert_sign = true),
        any.clone(),
        "keyUsage has keyCertSign or cRLSign",
    )
    .await;
    client_rejects(
        &ca,
        &with(&ca, |o| {
            o.uri_sans = vec!["https://greeter.example.com/x".into()]
        }),
        any.clone(),
        r#"URI SAN "https://greeter.example.com/x" is not a valid SPIFFE ID"#,
    )
    .await;
    client_rejects(
        &ca,
        &with(&ca, |o| {
            o.uri_sans.clear();
            o.dns_sans = vec!["greeter.default.svc".into()];
        }),
        any.clone(),
        r#"peer certificate "greeter.default.svc" is not an X.509-SVID: it has no URI SAN"#,
    )
    .await;
}

#[tokio::test]
async fn identity_dns_matcher_never_matches_uri_san() {
    let ca = DevCa::generate(TD).unwrap();
    let both = with(&ca, |o| o.dns_sans = vec!["greeter.default.svc".into()]);
    // The SPIFFE ID as a DNS matcher: no match, though the URI SAN has exactly that text.
    client_rejects(
        &ca,
        &both,
        expect(SanMatcher::new(
            SanType::Dns,
            StringMatchKind::Exact(GREETER.into()),
            false,
        )),
        r#"does not match any of [dns exact "spiffe://cluster.local/ns/default/sa/greeter"]"#,
    )
    .await;
    // And a DNS name as a URI matcher: no match either.
    client_rejects(
        &ca,
        &both,
        expect(SanMatcher::new(
            SanType::Uri,
            StringMatchKind::Exact("greeter.default.svc".into()),
            false,
        )),
        r#"[uri exact "greeter.default.svc"]"#,
    )
    .await;
    // Typed right, both match.
    let client = material(&svid(&ca, "caller"));
    let server = CertMaterial::new(material(&both).identity().cloned(), client.roots().cloned());
    for matcher in [
        SanMatcher::new(
            SanType::Dns,
            StringMatchKind::Exact("GREETER.default.svc".into()),
            true,
        ),
        SanMatcher::new(SanType::Dns, StringMatchKind::Suffix(".svc".into()), false),
        SanMatcher::new(
            SanType::Uri,
            StringMatchKind::Regex(
                regex::Regex::new("^spiffe://cluster\\.local/ns/[^/]+/sa/greeter$").unwrap(),
            ),
            false,
        ),
        SanMatcher::new(
            SanType::Uri,
            StringMatchKind::Contains("/sa/greeter".into()),
            false,
        ),
    ] {
        let out = handshake(
            client_cfg(&client, &client, &expect(matcher.clone())),
            server_cfg(&server, &client, &PeerValidation::default()),
        )
        .await;
        assert!(out.client.is_ok(), "{matcher}: {:?}", out.client);
    }
}

#[tokio::test]
async fn identity_server_checks_client_certificates() {
    let ca = DevCa::generate(TD).unwrap();
    let server = material(&svid(&ca, "greeter"));
    let only_caller = expect(SanMatcher::exact_uri(
        "spiffe://cluster.local/ns/default/sa/caller",
    ));

    // Wrong client identity: the server rejects with both identities named.
    let intruder = material(&svid(&ca, "intruder"));
    let out = handshake(
        client_cfg(&intruder, &intruder, &PeerValidation::default()),
        server_cfg(&server, &server, &only_caller),
    )
    .await;
    assert_eq!(
        out.server.unwrap_err(),
        r#"peer certificate identity "spiffe://cluster.local/ns/default/sa/intruder" does not match any of [uri exact "spiffe://cluster.local/ns/default/sa/caller"]"#
    );
    assert!(out.client.is_err(), "the client hears the alert");

    // Client from another CA.
    let stranger = material(&svid(&DevCa::generate(TD).unwrap(), "caller"));
    let out = handshake(
        client_config(Some(&stranger), &server, &PeerValidation::default()).unwrap(),
        server_cfg(&server, &server, &only_caller),
    )
    .await;
    assert!(out.server.unwrap_err().contains("is not trusted"));

    // No client certificate: refused when required, admitted (without identity) otherwise.
    let out = handshake(
        client_config(None, &server, &PeerValidation::default()).unwrap(),
        server_cfg(&server, &server, &only_caller),
    )
    .await;
    assert!(out.server.is_err());
    let out = handshake(
        client_config(None, &server, &PeerValidation::default()).unwrap(),
        server_config(&server, Some(&server), &only_caller, false).unwrap(),
    )
    .await;
    assert_eq!(out.server.unwrap(), None);
    assert!(out.client.unwrap().is_some());

    // TLS without client authentication at all.
    let out = handshake(
        client_config(None, &server, &PeerValidation::default()).unwrap(),
        server_config(&server, None, &PeerValidation::default(), false).unwrap(),
    )
    .await;
    assert_eq!(out.server.unwrap(), None);
    assert_eq!(
        server_config(&server, None, &PeerValidation::default(), true).unwrap_err(),
        TlsConfigError::RequireWithoutValidation
    );
}

#[tokio::test]
async fn identity_spiffe_bundle_map_selects_roots_by_trust_domain() {
    let a = DevCa::generate("a.example").unwrap();
    let b = DevCa::generate("b.example").unwrap();
    let c = DevCa::generate("c.example").unwrap();
    let map =
        TrustBundleMap::from_json(DevCa::spiffe_bundle_map_json(&[&a, &b]).as_bytes()).unwrap();
    let bundles = CertMaterial::new(None, Some(Roots::SpiffeBundles(map)));
    let client = material(&a.issue_svid("default", "caller", HOUR).unwrap());
    let run = |server: Svid| {
        let client = client.clone();
        let bundles = bundles.clone();
        async move {
            let server = material(&server);
            handshake(
                client_config(Some(&client), &bundles, &PeerValidation::default()).unwrap(),
                server_config(&server, None, &PeerValidation::default(), false).unwrap(),
            )
            .await
        }
    };
    // A server of trust domain b, verified with b's bundle.
    let out = run(b.issue_svid("default", "greeter", HOUR).unwrap()).await;
    assert_eq!(
        out.client
            .unwrap()
            .unwrap()
            .spiffe_id
            .unwrap()
            .trust_domain(),
        "b.example"
    );
    // No bundle for c.
    let out = run(c.issue_svid("default", "greeter", HOUR).unwrap()).await;
    assert_eq!(
        out.client.unwrap_err(),
        r#"peer certificate identity "spiffe://c.example/ns/default/sa/greeter" is from trust domain "c.example", which has no SPIFFE trust bundle"#
    );
    // Claims trust domain b but is signed by a: b's roots do not verify it.
    let mut options = IssueOptions::svid("b.example", "default", "greeter", HOUR);
    options.common_name = Some("impostor".into());
    let out = run(a.issue(&options).unwrap()).await;
    assert!(out.client.unwrap_err().contains("is not trusted"));
}

// ---- file_watcher ----

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.path(name), contents).unwrap();
    }

    fn config(&self, refresh: &str) -> FileWatcherConfig {
        FileWatcherConfig::from_json(&serde_json::json!({
            "certificate_file": self.path("cert.pem"),
            "private_key_file": self.path("key.pem"),
            "ca_certificate_file": self.path("ca.pem"),
            "refresh_interval": refresh,
        }))
        .unwrap()
    }

    fn put(&self, svid: &Svid) {
        self.write("cert.pem", &svid.cert_chain_pem);
        self.write("key.pem", &svid.key_pem);
        self.write("ca.pem", &svid.root_cert_pem);
    }
}

fn serial(provider: &FileWatcherProvider) -> String {
    provider
        .current()
        .unwrap()
        .identity()
        .unwrap()
        .serial_hex()
        .to_owned()
}

#[test]
fn identity_file_watcher_config_parsing() {
    let config = FileWatcherConfig::from_json(&serde_json::json!({
        "certificate_file": "/c", "private_key_file": "/k", "refresh_interval": "0.1s"
    }))
    .unwrap();
    assert_eq!(config.refresh_interval, Duration::from_millis(100));
    let config =
        FileWatcherConfig::from_json(&serde_json::json!({"ca_certificate_file": "/ca"})).unwrap();
    assert_eq!(config.refresh_interval, Duration::from_secs(600));
    for (bad, want) in [
        (
            serde_json::json!({"certificate_file": "/c"}),
            "set together",
        ),
        (serde_json::json!({}), "set certificate_file"),
        (
            serde_json::json!({"ca_certificate_file": "/ca", "refresh_interval": "10m"}),
            "refresh_interval",
        ),
        (
            serde_json::json!({"ca_certificate_file": 7}),
            "must be a string",
        ),
        (serde_json::json!([1]), "JSON object"),
    ] {
        let err = FileWatcherConfig::from_json(&bad).unwrap_err();
        assert!(err.to_string().contains(want), "{bad}: {err}");
    }
    let entry = crate::bootstrap::CertificateProviderConfig {
        plugin_name: "meshca".into(),
        config: serde_json::json!({}),
    };
    assert!(
        FileWatcherConfig::from_bootstrap(&entry)
            .unwrap_err()
            .to_string()
            .contains("meshca")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_file_watcher_bad_reloads_keep_old_material() {
    let ca = DevCa::generate(TD).unwrap();
    let files = Files::new();
    let first = svid(&ca, "greeter");
    files.put(&first);
    // Long interval: the test drives refreshes itself.
    let provider = FileWatcherProvider::start(files.config("600s")).unwrap();
    assert_eq!(serial(&provider), first.serial_hex);
    assert_eq!(provider.reload_failures(), 0);
    assert!(
        !provider.refresh_now().unwrap(),
        "unchanged files publish nothing"
    );

    // Unparsable certificate.
    files.write(
        "cert.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    assert!(matches!(
        provider.refresh_now(),
        Err(ProviderError::Parse { .. })
    ));
    assert_eq!(provider.reload_failures(), 1);
    assert_eq!(serial(&provider), first.serial_hex);
    // The same bad bytes again are not counted again.
    assert!(!provider.refresh_now().unwrap());
    assert_eq!(provider.reload_failures(), 1);

    // A new certificate with the old key: rejected as a mismatch.
    let second = svid(&ca, "greeter");
    files.write("cert.pem", &second.cert_chain_pem);
    let err = provider.refresh_now().unwrap_err();
    assert!(matches!(err, ProviderError::KeyMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("does not match the certificate"),
        "{err}"
    );
    assert_eq!(provider.reload_failures(), 2);
    assert_eq!(serial(&provider), first.serial_hex);

    // Unreadable (missing) key file.
    std::fs::remove_file(files.path("key.pem")).unwrap();
    assert!(matches!(
        provider.refresh_now(),
        Err(ProviderError::Read { .. })
    ));
    assert_eq!(provider.reload_failures(), 3);
    assert_eq!(serial(&provider), first.serial_hex);

    // Fixed: the new pair loads.
    files.write("key.pem", &second.key_pem);
    assert!(provider.refresh_now().unwrap());
    assert_eq!(serial(&provider), second.serial_hex);
    assert_eq!(provider.reload_failures(), 3);

    // Expiry signal: about an hour left.
    let left = provider.seconds_to_expiry().unwrap();
    assert!((3500..=3600).contains(&left), "{left}");
    let expired = with(&ca, |o| {
        o.not_before = SystemTime::now() - 2 * HOUR;
        o.not_after = SystemTime::now() - HOUR;
    });
    files.put(&expired);
    assert!(
        provider.refresh_now().unwrap(),
        "an expired own certificate still loads"
    );
    let left = provider.seconds_to_expiry().unwrap();
    assert!((-3700..=-3500).contains(&left), "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_file_watcher_first_load_failure_then_recovery() {
    let ca = DevCa::generate(TD).unwrap();
    let files = Files::new();
    let provider = FileWatcherProvider::start(files.config("0.1s")).unwrap();
    assert!(provider.current().is_none());
    assert_eq!(provider.reload_failures(), 1);
    assert_eq!(provider.seconds_to_expiry(), None);
    let mut rx = provider.subscribe();
    files.put(&svid(&ca, "greeter"));
    tokio::time::timeout(Duration::from_secs(3), rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(provider.current().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_file_watcher_symlink_rotation_reaches_new_handshakes() {
    let ca = DevCa::generate(TD).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = svid(&ca, "greeter");
    first.write_istio_layout(dir.path()).unwrap();
    let config = FileWatcherConfig::from_json(&serde_json::json!({
        "certificate_file": dir.path().join("cert-chain.pem"),
        "private_key_file": dir.path().join("key.pem"),
        "ca_certificate_file": dir.path().join("root-cert.pem"),
        "refresh_interval": "0.1s",
    }))
    .unwrap();
    let provider = FileWatcherProvider::start(config).unwrap();
    assert_eq!(serial(&provider), first.serial_hex);

    let servers = watch_server_config(
        provider.subscribe(),
        Some(provider.subscribe()),
        PeerValidation::default(),
        true,
    );
    let client = material(&svid(&ca, "caller"));
    let client_cfg = client_config(Some(&client), &client, &PeerValidation::default()).unwrap();
    let out = handshake(client_cfg.clone(), servers.borrow().clone().unwrap()).await;
    assert_eq!(out.client.unwrap().unwrap().serial_hex, first.serial_hex);

    // Rotate by swapping the ..data symlink; the provider picks it up within ~100 ms.
    let mut rx = servers.clone();
    let second = svid(&ca, "greeter");
    second.write_istio_layout(dir.path()).unwrap();
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            rx.changed().await.unwrap();
            if serial(&provider) == second.serial_hex {
                break;
            }
        }
    })
    .await
    .expect("rotation picked up");
    assert!(started.elapsed() < Duration::from_secs(2));
    let out = handshake(client_cfg, servers.borrow().clone().unwrap()).await;
    assert_eq!(out.client.unwrap().unwrap().serial_hex, second.serial_hex);
    assert_eq!(provider.reload_failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_istio_layout_from_mesh_control_loads_via_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let ca_dir = dir.path().join("ca");
    let server_svid =
        mesh_control::ca::issue_to_dir(&ca_dir, Some(TD), "default", "greeter", HOUR, &certs, true)
            .unwrap();
    let bootstrap = crate::bootstrap::Bootstrap::from_json(&format!(
        r#"{{
          "xds_servers": [{{"server_uri": "unix:///etc/istio/proxy/XDS", "channel_creds": [{{"type": "insecure"}}], "server_features": ["xds_v3"]}}],
          "node": {{"id": "sidecar~10.0.0.1~greeter-abc.default~default.svc.cluster.local"}},
          "certificate_providers": {{
            "default": {{
              "plugin_name": "file_watcher",
              "config": {{
                "certificate_file": "{0}/cert-chain.pem",
                "private_key_file": "{0}/key.pem",
                "ca_certificate_file": "{0}/root-cert.pem",
                "refresh_interval": "900s"
              }}
            }}
          }},
          "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s"
        }}"#,
        certs.display()
    ))
    .unwrap();
    let provider =
        FileWatcherProvider::from_bootstrap(&bootstrap.certificate_providers["default"]).unwrap();
    assert_eq!(provider.config().refresh_interval, Duration::from_secs(900));
    assert_eq!(serial(&provider), server_svid.serial_hex);
    let material = provider.current().unwrap();
    assert_eq!(material.identity().unwrap().uri_sans(), [GREETER]);

    let caller = mesh_control::ca::DevCa::load(&ca_dir)
        .unwrap()
        .issue_svid("default", "caller", HOUR)
        .unwrap();
    let caller = self::material(&caller);
    let clients = watch_client_config(
        Some(tokio::sync::watch::channel(Some(Arc::new(caller))).1),
        provider.subscribe(),
        expect(SanMatcher::new(
            SanType::Any,
            StringMatchKind::Exact(GREETER.into()),
            false,
        )),
    );
    let out = handshake(
        clients.borrow().clone().unwrap(),
        server_config(&material, Some(&material), &PeerValidation::default(), true).unwrap(),
    )
    .await;
    assert_eq!(
        out.client.unwrap().unwrap().spiffe_id.unwrap().to_string(),
        GREETER
    );
    assert_eq!(
        out.server.unwrap().unwrap().spiffe_id.unwrap().to_string(),
        "spiffe://cluster.local/ns/default/sa/caller"
    );
}
