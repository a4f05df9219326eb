//! The workloads of the end-to-end bench (issue 9): what one call is (unary 100 B, unary
//! 10 KiB, a server-streaming call), how a cell (workload × concurrency) is driven (warm-up,
//! then a fixed measuring window) and how its latencies reduce to p50 / p99 / p99.9 and RPS.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Messages a server-streaming call returns.
pub const STREAM_MESSAGES: usize = 10;
/// Bytes of each streamed message.
pub const STREAM_MESSAGE_SIZE: usize = 100;

/// What one call of a cell is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Workload {
    /// A unary call with a 100-byte request payload and a 100-byte response payload.
    #[serde(rename = "unary-100B")]
    Unary100,
    /// A unary call with 10 KiB each way.
    #[serde(rename = "unary-10KiB")]
    Unary10K,
    /// A 100-byte request answered by [`STREAM_MESSAGES`] messages of
    /// [`STREAM_MESSAGE_SIZE`] bytes (latency: the whole call).
    #[serde(rename = "stream-10x100B")]
    Stream,
}

impl Workload {
    /// Every workload, in table order.
    pub const ALL: [Workload; 3] = [Workload::Unary100, Workload::Unary10K, Workload::Stream];

    /// The name used on the command line, in the table and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Unary100 => "unary-100B",
            Workload::Unary10K => "unary-10KiB",
            Workload::Stream => "stream-10x100B",
        }
    }

    /// Request payload bytes.
    pub fn request_size(self) -> usize {
        match self {
            Workload::Unary100 | Workload::Stream => 100,
            Workload::Unary10K => 10 * 1024,
        }
    }

    /// Response payload bytes (per message for [`Workload::Stream`]).
    pub fn response_size(self) -> usize {
        match self {
            Workload::Unary100 => 100,
            Workload::Unary10K => 10 * 1024,
            Workload::Stream => STREAM_MESSAGE_SIZE,
        }
    }

    /// Response messages per call.
    pub fn response_count(self) -> usize {
        match self {
            Workload::Unary100 | Workload::Unary10K => 1,
            Workload::Stream => STREAM_MESSAGES,
        }
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown workload {s:?} (expected unary-100B, unary-10KiB or stream-10x100B)"
                )
            })
    }
}

/// One cell: a workload at a concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// What each call is.
    pub workload: Workload,
    /// Concurrent callers (tasks, or connections for raw TCP).
    pub concurrency: usize,
}

impl Cell {
    /// `unary-100B:64`, the form the client roles take on the command line.
    pub fn spec(&self) -> String {
        format!("{}:{}", self.workload.name(), self.concurrency)
    }
}

impl FromStr for Cell {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (w, c) = s
            .split_once(':')
            .ok_or_else(|| format!("cell {s:?} is not WORKLOAD:CONCURRENCY"))?;
        let concurrency: usize = c
            .parse()
            .map_err(|_| format!("cell {s:?}: concurrency {c:?} is not a number"))?;
        if concurrency == 0 {
            return Err(format!("cell {s:?}: concurrency must be at least 1"));
        }
        Ok(Cell {
            workload: w.parse()?,
            concurrency,
        })
    }
}

/// The measured numbers of one cell, as a client role prints them (one JSON line each) and
/// the JSON report stores them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    /// The workload's name.
    pub workload: Workload,
    /// Concurrent callers.
    pub concurrency: usize,
    /// Calls completed inside the measuring window.
    pub calls: u64,
    /// Calls that failed inside the window (warm-up failures are not counted).
    pub errors: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// Length of the measuring window, seconds.
    pub seconds: f64,
    /// Median call latency, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Completed calls per second.
    pub rps: f64,
    /// CPU seconds (user + system) the client process used in the window, per call, µs.
    pub client_cpu_us_per_call: f64,
}

/// How long to warm up and to measure each cell.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Calls made and discarded first (connections, allocator, caches, TCP windows).
    pub warmup: Duration,
    /// The measuring window.
    pub duration: Duration,
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// One worker's way of making a call of the cell's workload.
pub trait Caller: Send + 'static {
    /// Makes one call and reads its whole response.
    fn call(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// A caller that could not be made: every call fails with why.
impl<C: Caller> Caller for Result<C, String> {
    async fn call(&mut self) -> Result<(), String> {
        match self {
            Ok(c) => c.call().await,
            Err(e) => Err(e.clone()),
        }
    }
}

/// Runs one cell: `concurrency` workers, each owning the caller `make(i)` returned and
/// calling it back to back; calls that start and end inside the measuring window are
/// timed. Bounded: every worker stops at the end of the window (an in-flight call is
/// awaited, at most `duration` + 30 s, then abandoned).
pub async fn drive<C: Caller>(
    cell: Cell,
    timing: Timing,
    mut make: impl FnMut(usize) -> C,
) -> CellResult {
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let mut tasks = Vec::with_capacity(cell.concurrency);
    for i in 0..cell.concurrency {
        let mut call = make(i);
        let phase = phase.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u64> = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                let before = phase.load(Ordering::Relaxed);
                if before == STOP {
                    break;
                }
                let start = Instant::now();
                let result = call.call().await;
                let nanos = start.elapsed().as_nanos() as u64;
                // Only calls wholly inside the window count.
                if before == MEASURE && phase.load(Ordering::Relaxed) == MEASURE {
                    match result {
                        Ok(()) => latencies.push(nanos),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                } else if let Err(e) = result
                    && before == WARMUP
                {
                    // A failing warm-up usually means nothing will work: stop burning CPU
                    // on it, but let the window report the failure.
                    first_error.get_or_insert(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            (latencies, errors, first_error)
        }));
    }
    tokio::time::sleep(timing.warmup).await;
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    phase.store(MEASURE, Ordering::Relaxed);
    tokio::time::sleep(timing.duration).await;
    phase.store(STOP, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let mut all = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    let limit = timing.duration + Duration::from_secs(30);
    for t in tasks {
        match tokio::time::timeout(limit, t).await {
            Ok(Ok((l, e, f))) => {
                all.extend(l);
                errors += e;
                if first_error.is_none() {
                    first_error = f;
                }
            }
            Ok(Err(e)) => {
                errors += 1;
                first_error.get_or_insert(format!("worker panicked: {e}"));
            }
            Err(_) => {
                errors += 1;
                first_error.get_or_insert("a call hung past the window".to_string());
            }
        }
    }
    summarize(cell, seconds, &mut all, errors, first_error, cpu)
}

/// Reduces latencies (ns) to a [`CellResult`].
pub fn summarize(
    cell: Cell,
    seconds: f64,
    latencies: &mut [u64],
    errors: u64,
    first_error: Option<String>,
    cpu_seconds: f64,
) -> CellResult {
    latencies.sort_unstable();
    let calls = latencies.len() as u64;
    CellResult {
        workload: cell.workload,
        concurrency: cell.concurrency,
        calls,
        errors,
        first_error,
        seconds,
        p50_us: percentile(latencies, 0.50),
        p99_us: percentile(latencies, 0.99),
        p999_us: percentile(latencies, 0.999),
        rps: if seconds > 0.0 {
            calls as f64 / seconds
        } else {
            0.0
        },
        client_cpu_us_per_call: if calls > 0 {
            1e6 * cpu_seconds / calls as f64
        } else {
            0.0
        },
    }
}

/// The `q` quantile (nearest rank) of sorted nanoseconds, in µs; 0 when empty.
pub fn percentile(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted_ns.len() as f64).ceil() as usize).clamp(1, sorted_ns.len());
    sorted_ns.get(rank - 1).copied().unwrap_or(0) as f64 / 1000.0
}

/// This process's CPU time (user + system), seconds, from `/proc/self/stat`; 0 elsewhere.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat (11 and 12 after the command name);
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 500.0);
        assert_eq!(percentile(&v, 0.99), 990.0);
        assert_eq!(percentile(&v, 0.999), 999.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[7000], 0.999), 7.0);
    }

    #[test]
    fn cells_parse() {
        let c: Cell = "unary-10KiB:64".parse().unwrap();
        assert_eq!(c.workload, Workload::Unary10K);
        assert_eq!(c.concurrency, 64);
        assert_eq!(c.spec(), "unary-10KiB:64");
        assert!("unary:1".parse::<Cell>().is_err());
        assert!("unary-100B:0".parse::<Cell>().is_err());
        assert!("unary-100B".parse::<Cell>().is_err());
    }
}
