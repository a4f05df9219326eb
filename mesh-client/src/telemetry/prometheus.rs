//! Prometheus text exposition of the mesh's OpenTelemetry metrics (feature `prometheus`):
//! an SDK `MeterProvider` whose reader is a Prometheus registry, its text encoding, and a
//! tiny HTTP server for `GET /metrics`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mesh_client::telemetry::{Telemetry, prometheus::PrometheusMetrics};
//! let metrics = PrometheusMetrics::new()?;
//! let telemetry = Telemetry::new(metrics.meter_provider());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
//! tokio::spawn(metrics.clone().serve(listener));
//! # Ok(()) }
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};

/// Why the Prometheus exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("prometheus exporter: {0}")]
pub struct PrometheusError(String);

/// A `MeterProvider` exported through a Prometheus registry. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PrometheusMetrics {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
}

impl PrometheusMetrics {
    /// A fresh registry and the `MeterProvider` that feeds it.
    pub fn new() -> Result<Self, PrometheusError> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(|e| PrometheusError(e.to_string()))?;
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        Ok(PrometheusMetrics { registry, provider })
    }

    /// The provider to build a [`super::Telemetry`] from (or to set as the global one).
    pub fn meter_provider(&self) -> &SdkMeterProvider {
        &self.provider
    }

    /// The current metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Serves `GET /metrics` on `listener` until the task is dropped; other paths are 404.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let metrics = self.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let metrics = metrics.clone();
                        async move {
                            let resp = if req.uri().path() == "/metrics" {
                                Response::builder()
                                    .header("content-type", "text/plain; version=0.0.4")
                                    .body(Full::new(Bytes::from(metrics.encode())))
                            } else {
                                Response::builder()
                                    .status(StatusCode::NOT_FOUND)
                                    .body(Full::new(Bytes::from_static(b"try /metrics\n")))
                            };
                            Ok::<_, Infallible>(resp.unwrap_or_default())
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}
