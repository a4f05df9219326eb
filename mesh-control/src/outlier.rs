//! Outlier detection in `mesh.yaml` (a service's `outlier_detection`), validated and
//! translated into the CDS `Cluster.outlier_detection` that gRFC A50 clients read.
//!
//! ```yaml
//! outlier_detection:
//!   interval: 1s               # default 10s
//!   base_ejection_time: 5s     # default 30s
//!   max_ejection_time: 300s    # default 300s
//!   max_ejection_percent: 34   # default 10
//!   failure_percentage:        # present: enabled
//!     threshold: 50            # default 85
//!     minimum_hosts: 3         # default 5
//!     request_volume: 10       # default 50
//!   success_rate:              # present: enabled
//!     stdev_factor: 1.9        # default 1.9 (sent × 1000)
//!     minimum_hosts: 5
//!     request_volume: 100
//! ```
//!
//! Unset fields are left unset in xDS, so the client's A50 defaults apply. An algorithm that
//! is absent is disabled: success rate by `enforcing_success_rate: 0` (unset would mean
//! 100), failure percentage by leaving `enforcing_failure_percentage` unset (0).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use xds_proto::envoy::envoy::config::cluster::v3::OutlierDetection as OutlierDetectionProto;
use xds_proto::protobuf::{Duration as ProtoDuration, UInt32Value};

use crate::error::ConfigError;

/// A service's outlier detection (gRFC A50); see the module docs for the YAML.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    /// Time between ejection sweeps (`1s`); default 10 s.
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    /// Base ejection time, multiplied by the ejection count; default 30 s.
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub base_ejection_time: Option<Duration>,
    /// Longest ejection (at least the base time applies); default 300 s.
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_ejection_time: Option<Duration>,
    /// Most endpoints ejected at once, in percent (0..=100); default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
    /// Success-rate ejection; absent: disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<SuccessRate>,
    /// Failure-percentage ejection; absent: disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_percentage: Option<FailurePercentage>,
}

/// Success-rate ejection: endpoints below `mean - stdev × stdev_factor` are ejected.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuccessRate {
    /// The stdev factor, e.g. `1.9` (the default); sent as `success_rate_stdev_factor` × 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdev_factor: Option<f64>,
    /// Chance in percent that a detected outlier is ejected (1..=100); default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement_percentage: Option<u32>,
    /// Endpoints with enough requests needed to run; default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_hosts: Option<u32>,
    /// Requests per interval for an endpoint to count; default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_volume: Option<u32>,
}

/// Failure-percentage ejection: endpoints failing more than `threshold` % are ejected.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailurePercentage {
    /// Failure percentage above which an endpoint is ejected (0..=100); default 85.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    /// Chance in percent that a detected outlier is ejected (1..=100); default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement_percentage: Option<u32>,
    /// Endpoints the service needs for the algorithm to run; default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_hosts: Option<u32>,
    /// Requests per interval for an endpoint to count; default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_volume: Option<u32>,
}

/// The largest stdev factor that still fits `success_rate_stdev_factor` (× 1000, a u32).
const MAX_STDEV_FACTOR: f64 = u32::MAX as f64 / 1000.0;

impl OutlierDetection {
    /// Checks what the clients would NACK (A50: percentages at most 100) and what cannot be
    /// translated; `at` is the field path of `outlier_detection`.
    pub(crate) fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let percent = |field: &str, v: Option<u32>, min: u32| match v {
            Some(v) if v < min || v > 100 => Err(ConfigError::invalid(
                format!("{at}.{field}"),
                format!("{v} is not in {min}..=100"),
            )),
            _ => Ok(()),
        };
        percent("max_ejection_percent", self.max_ejection_percent, 0)?;
        if let Some(sr) = &self.success_rate {
            // 0 would disable the algorithm: leave `success_rate` out instead.
            percent(
                "success_rate.enforcement_percentage",
                sr.enforcement_percentage,
                1,
            )?;
            if let Some(f) = sr.stdev_factor
                && !(0.0..=MAX_STDEV_FACTOR).contains(&f)
            {
                return Err(ConfigError::invalid(
                    format!("{at}.success_rate.stdev_factor"),
                    format!("{f} is not in 0..={MAX_STDEV_FACTOR:.0} (e.g. 1.9)"),
                ));
            }
        }
        if let Some(fp) = &self.failure_percentage {
            percent("failure_percentage.threshold", fp.threshold, 0)?;
            percent(
                "failure_percentage.enforcement_percentage",
                fp.enforcement_percentage,
                1,
            )?;
        }
        Ok(())
    }

    /// The CDS `outlier_detection` (gRFC A50 field mapping).
    pub(crate) fn to_proto(&self) -> OutlierDetectionProto {
        let u32v = |v: Option<u32>| v.map(|value| UInt32Value { value });
        let mut od = OutlierDetectionProto {
            interval: self.interval.map(proto_duration),
            base_ejection_time: self.base_ejection_time.map(proto_duration),
            max_ejection_time: self.max_ejection_time.map(proto_duration),
            max_ejection_percent: u32v(self.max_ejection_percent),
            // A50: unset means 100 (enabled); 0 disables success-rate ejection.
            enforcing_success_rate: u32v(Some(0)),
            ..Default::default()
        };
        if let Some(sr) = &self.success_rate {
            od.enforcing_success_rate = u32v(sr.enforcement_percentage);
            od.success_rate_stdev_factor = u32v(
                sr.stdev_factor
                    .map(|f| (f * 1000.0).round().clamp(0.0, u32::MAX as f64) as u32),
            );
            od.success_rate_minimum_hosts = u32v(sr.minimum_hosts);
            od.success_rate_request_volume = u32v(sr.request_volume);
        }
        if let Some(fp) = &self.failure_percentage {
            // A50: unset or 0 disables failure-percentage ejection, so enabling sets it.
            od.enforcing_failure_percentage = u32v(Some(fp.enforcement_percentage.unwrap_or(100)));
            od.failure_percentage_threshold = u32v(fp.threshold);
            od.failure_percentage_minimum_hosts = u32v(fp.minimum_hosts);
            od.failure_percentage_request_volume = u32v(fp.request_volume);
        }
        od
    }
}

fn proto_duration(d: Duration) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MeshConfig, translate};
    use prost::Message;
    use xds_proto::envoy::envoy::config::cluster::v3::Cluster;

    fn yaml(outlier: &str) -> String {
        format!(
            "services:\n  - name: greeter.default\n    port: 8080\n    endpoints:\n      - address: 127.0.0.1:50051\n    subsets:\n      - name: v1\n        labels: {{ version: v1 }}\n{outlier}"
        )
    }

    fn clusters(text: &str) -> Vec<Cluster> {
        let config = MeshConfig::from_yaml(text).unwrap();
        let snapshot = translate(&config).unwrap();
        snapshot
            .of_type(xds_proto::type_url::CLUSTER)
            .iter()
            .map(|(_, any)| Cluster::decode(any.value.as_slice()).unwrap())
            .collect()
    }

    #[test]
    fn translates_every_field_to_every_cluster_of_the_service() {
        let cs = clusters(&yaml(
            "    outlier_detection:\n      interval: 1500ms\n      base_ejection_time: 2s\n      max_ejection_time: 1m\n      max_ejection_percent: 34\n      success_rate: { stdev_factor: 1.5, enforcement_percentage: 90, minimum_hosts: 3, request_volume: 20 }\n      failure_percentage: { threshold: 50, enforcement_percentage: 80, minimum_hosts: 2, request_volume: 10 }\n",
        ));
        assert_eq!(cs.len(), 2, "the service and its subset");
        for c in cs {
            let od = c.outlier_detection.unwrap();
            let v = |x: Option<UInt32Value>| x.map(|x| x.value);
            assert_eq!(
                od.interval,
                Some(ProtoDuration {
                    seconds: 1,
                    nanos: 500_000_000
                })
            );
            assert_eq!(od.base_ejection_time.map(|d| d.seconds), Some(2));
            assert_eq!(od.max_ejection_time.map(|d| d.seconds), Some(60));
            assert_eq!(v(od.max_ejection_percent), Some(34));
            assert_eq!(v(od.success_rate_stdev_factor), Some(1500));
            assert_eq!(v(od.enforcing_success_rate), Some(90));
            assert_eq!(v(od.success_rate_minimum_hosts), Some(3));
            assert_eq!(v(od.success_rate_request_volume), Some(20));
            assert_eq!(v(od.failure_percentage_threshold), Some(50));
            assert_eq!(v(od.enforcing_failure_percentage), Some(80));
            assert_eq!(v(od.failure_percentage_minimum_hosts), Some(2));
            assert_eq!(v(od.failure_percentage_request_volume), Some(10));
        }
    }

    #[test]
    fn absent_algorithms_are_disabled_and_defaults_left_to_the_client() {
        let cs = clusters(&yaml(
            "    outlier_detection:\n      failure_percentage: {}\n",
        ));
        let od = cs[0].outlier_detection.clone().unwrap();
        assert_eq!(od.enforcing_success_rate, Some(UInt32Value { value: 0 }));
        assert_eq!(
            od.enforcing_failure_percentage,
            Some(UInt32Value { value: 100 })
        );
        assert_eq!(od.interval, None);
        assert_eq!(od.failure_percentage_threshold, None);
        assert_eq!(od.max_ejection_percent, None);
        // Without `outlier_detection`, the clusters have none.
        assert!(clusters(&yaml(""))[0].outlier_detection.is_none());
    }

    #[test]
    fn the_client_reads_the_translation_as_configured() {
        let cs = clusters(&yaml(
            "    outlier_detection:\n      interval: 1s\n      failure_percentage: { threshold: 50, minimum_hosts: 3, request_volume: 10 }\n",
        ));
        let od = cs[0].outlier_detection.clone().unwrap();
        // The same rules as mesh-client's A50 validation: success rate off, FP on.
        assert_eq!(od.enforcing_success_rate.map(|v| v.value), Some(0));
        assert_eq!(od.enforcing_failure_percentage.map(|v| v.value), Some(100));
    }

    #[test]
    fn invalid_values_name_the_field() {
        for (outlier, field) in [
            (
                "      max_ejection_percent: 101\n",
                "services[0].outlier_detection.max_ejection_percent",
            ),
            (
                "      failure_percentage: { threshold: 150 }\n",
                "services[0].outlier_detection.failure_percentage.threshold",
            ),
            (
                "      failure_percentage: { enforcement_percentage: 0 }\n",
                "services[0].outlier_detection.failure_percentage.enforcement_percentage",
            ),
            (
                "      success_rate: { enforcement_percentage: 0 }\n",
                "services[0].outlier_detection.success_rate.enforcement_percentage",
            ),
            (
                "      success_rate: { stdev_factor: -1 }\n",
                "services[0].outlier_detection.success_rate.stdev_factor",
            ),
        ] {
            let text = yaml(&format!("    outlier_detection:\n{outlier}"));
            let err = MeshConfig::from_yaml(&text).unwrap_err();
            assert_eq!(err.field(), Some(field), "{err}");
        }
        let typo = yaml("    outlier_detection:\n      intervall: 1s\n");
        assert!(
            MeshConfig::from_yaml(&typo).is_err(),
            "unknown fields are rejected"
        );
    }
}
