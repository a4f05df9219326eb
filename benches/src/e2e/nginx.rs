//! The sidecar model: nginx as an HTTP/2 `grpc_pass` proxy, one beside the client and one
//! beside the server, as a sidecar mesh puts them. Each runs in the foreground
//! (`daemon off; master_process off;`, one worker) with a generated config and every path
//! in its own temp directory, on loopback ports only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};

/// Where Debian's nginx lives, if installed (`$PATH` first).
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// How to get nginx, for the skip message.
pub const INSTALL_HINT: &str =
    "nginx is not installed: `apt-get install -y nginx-light` (Debian) to run the sidecar row";

/// The config of one proxy listening on `listen` and passing gRPC to `upstream`.
pub fn config(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let d = dir.display();
    // keepalive_requests: nginx closes an HTTP/2 connection after 1000 requests by
    // default, which would put reconnects into the measurement. nginx does not multiplex
    // upstream streams: one upstream connection per call in flight, kept alive for reuse.
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  http2_max_concurrent_streams 1024;
  client_max_body_size 0;
  upstream backend {{
    server {upstream};
    keepalive 256;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
  }}
  server {{
    listen {listen} http2;
    location / {{
      grpc_pass grpc://backend;
      grpc_read_timeout 600s;
      grpc_send_timeout 600s;
    }}
  }}
}}
"
    )
}

/// A running nginx; killed on drop.
#[derive(Debug)]
pub struct Nginx {
    child: tokio::process::Child,
    /// Where it listens.
    pub listen: SocketAddr,
}

impl Nginx {
    /// Writes the config into `dir` and starts `nginx` there (pinned to `cpu` when given),
    /// waiting (at most 10 s) until `listen` accepts connections.
    pub async fn start(
        nginx: &Path,
        dir: &Path,
        listen: SocketAddr,
        upstream: SocketAddr,
        cpu: Option<usize>,
    ) -> anyhow::Result<Nginx> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(dir, listen, upstream))
            .with_context(|| format!("writing {}", conf.display()))?;
        let mut cmd = super::run::pinned(cpu, nginx);
        cmd.arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting nginx")?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(listen).await.is_ok() {
                return Ok(Nginx { child, listen });
            }
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                bail!("nginx exited ({status}): {log}");
            }
            if tokio::time::Instant::now() > deadline {
                bail!("nginx did not listen on {listen} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
