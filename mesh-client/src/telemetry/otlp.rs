//! OTLP/gRPC export of the mesh's metrics and spans (feature `otlp`): SDK providers with
//! an OTLP exporter to a collector (`http://127.0.0.1:4317` by convention).
//!
//! ```no_run
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mesh_client::telemetry::{Telemetry, otlp};
//! let meters = otlp::meter_provider("http://127.0.0.1:4317")?;
//! let telemetry = Telemetry::new(&meters);
//! let tracer_provider = otlp::tracer_provider("http://127.0.0.1:4317")?;
//! // install tracer_provider with tracing-opentelemetry as the application's layer
//! # Ok(()) }
//! ```

use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Why an OTLP exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter to {endpoint}: {message}")]
pub struct OtlpError {
    endpoint: String,
    message: String,
}

/// A `MeterProvider` that pushes to the OTLP/gRPC collector at `endpoint` every 60 s.
/// Must be called inside a tokio runtime.
pub fn meter_provider(endpoint: &str) -> Result<SdkMeterProvider, OtlpError> {
    let exporter = MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| OtlpError {
            endpoint: endpoint.to_string(),
            message: e.to_string(),
        })?;
    Ok(SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter).build())
        .build())
}

/// A `TracerProvider` that batches spans to the OTLP/gRPC collector at `endpoint`.
/// Must be called inside a tokio runtime.
pub fn tracer_provider(endpoint: &str) -> Result<SdkTracerProvider, OtlpError> {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| OtlpError {
            endpoint: endpoint.to_string(),
            message: e.to_string(),
        })?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build())
}
