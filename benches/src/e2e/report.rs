//! The end-to-end bench's report: the machine it ran on, every row's cells, the JSON form
//! (written for tracking) and the Markdown table with ratios against each row's bare-tonic
//! baseline (plaintext rows against `tonic`, TLS rows against `tonic-tls`).

use serde::{Deserialize, Serialize};

use super::workload::CellResult;

/// Where and when the bench ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// `/proc/cpuinfo`'s model name.
    pub cpu_model: String,
    /// CPUs available to the bench.
    pub cpus: usize,
    /// (client CPU, server CPU) when pinned.
    pub pinned: Option<(usize, usize)>,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// The 1-minute load average when the bench started.
    pub load_before: f64,
    /// The 1-minute load average when it ended.
    pub load_after: f64,
    /// Seconds since the Unix epoch at the start.
    pub started_unix: u64,
}

fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

impl Machine {
    /// This machine now.
    pub fn now(cpus: usize, pinned: Option<(usize, usize)>) -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Machine {
            cpu_model,
            cpus,
            pinned,
            kernel,
            load_before: load(),
            load_after: 0.0,
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// Records the load at the end.
    pub fn finish(&mut self) {
        self.load_after = load();
    }
}

/// One row's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowReport {
    /// The row's name.
    pub row: String,
    /// What it runs.
    pub description: String,
    /// The row its ratios are against.
    pub baseline: String,
    /// Why it did not run, if it did not.
    pub skipped: Option<String>,
    /// Its cells.
    pub cells: Vec<CellResult>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// Warm-up per cell.
    pub warmup_ms: u64,
    /// Measuring window per cell.
    pub duration_ms: u64,
    /// Every row, in order.
    pub rows: Vec<RowReport>,
}

fn fmt_us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

impl Report {
    /// The cell of `row` for (workload, concurrency).
    pub fn cell(&self, row: &str, cell: &CellResult) -> Option<&CellResult> {
        self.rows
            .iter()
            .find(|r| r.row == row)?
            .cells
            .iter()
            .find(|c| c.workload == cell.workload && c.concurrency == cell.concurrency)
    }

    /// The Markdown table: one block per (workload, concurrency), one line per row, then
    /// the skipped rows and the legend.
    pub fn table(&self) -> String {
        let mut out = format!(
            "mesh-bench: {} CPUs ({}), {}, warm-up {} ms, window {} ms per cell, load {:.1} -> {:.1}\n\n",
            self.machine.cpus,
            self.machine.cpu_model,
            match self.machine.pinned {
                Some((c, s)) => format!("client on CPU {c}, server on CPU {s}"),
                None => "not pinned".to_string(),
            },
            self.warmup_ms,
            self.duration_ms,
            self.machine.load_before,
            self.machine.load_after,
        );
        out += "| workload | conc | row | p50 µs | p99 µs | p99.9 µs | RPS | RPS / base | p50 − base µs | p99 / base | client CPU µs/call | errors |\n";
        out +=
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
        let mut keys: Vec<(String, usize)> = Vec::new();
        for r in &self.rows {
            for c in &r.cells {
                let k = (c.workload.name().to_string(), c.concurrency);
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        for (workload, conc) in &keys {
            for r in &self.rows {
                let Some(c) = r
                    .cells
                    .iter()
                    .find(|c| c.workload.name() == workload && c.concurrency == *conc)
                else {
                    continue;
                };
                let base = self.cell(&r.baseline, c).filter(|b| b.calls > 0);
                let (rps_ratio, p50_delta, p99_ratio) = match base {
                    Some(b) if r.row != r.baseline => (
                        format!("{:.2}×", c.rps / b.rps),
                        format!("{:+.1}", c.p50_us - b.p50_us),
                        format!("{:.2}×", c.p99_us / b.p99_us.max(0.001)),
                    ),
                    Some(_) => ("1.00×".into(), "0".into(), "1.00×".into()),
                    None => ("–".into(), "–".into(), "–".into()),
                };
                out += &format!(
                    "| {workload} | {conc} | {} | {} | {} | {} | {:.0} | {rps_ratio} | {p50_delta} | {p99_ratio} | {:.1} | {} |\n",
                    r.row,
                    fmt_us(c.p50_us),
                    fmt_us(c.p99_us),
                    fmt_us(c.p999_us),
                    c.rps,
                    c.client_cpu_us_per_call,
                    c.errors,
                );
            }
        }
        out += "\n";
        for r in &self.rows {
            if let Some(why) = &r.skipped {
                out += &format!("- **{}** did not run: {why}\n", r.row);
            }
            for c in &r.cells {
                if let Some(e) = c.first_error.as_ref().filter(|_| c.errors > 0) {
                    out += &format!(
                        "- {} {}:{}: {} errors, first: {e}\n",
                        r.row,
                        c.workload.name(),
                        c.concurrency,
                        c.errors
                    );
                }
            }
        }
        out += "\nRows (ratios against `base`):\n\n";
        for r in &self.rows {
            out += &format!("- `{}` (base `{}`): {}\n", r.row, r.baseline, r.description);
        }
        out
    }
}
