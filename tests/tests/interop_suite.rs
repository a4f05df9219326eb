//! The xDS interop matrix (issue 4): every scenario under `tests/interop/scenarios/` for
//! every (client, server, control plane) row; writes and prints `target/interop/report.md`.
//!
//! Needs Go (it builds grpc-go's interop peers, json2pb and the go-control-plane program)
//! and, for the `python/*/*` rows, `python3` and PyPI (it makes a venv with grpcio).
//! Our `interop-client` / `interop-server` are built on demand into `target/debug/` (set
//! `MESH_INTEROP_SKIP_BUILD=1` to use what is there); a cell whose peer cannot be had
//! reports MISSING, which fails the suite unless `MESH_INTEROP_ALLOW_MISSING=1`. See
//! `tests/interop/README.md`.

use mesh_tests::interop::runner::{self, Outcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_matrix() {
    mesh_tests::init_tracing();
    let suite = runner::run_suite().await.expect("the suite runs");
    println!("{}", suite.report);
    println!("report written to {}", suite.report_path.display());
    let failures = suite.failures();
    for cell in &failures {
        println!("==== {} × {} ====", cell.scenario, cell.row);
        match &cell.outcome {
            Outcome::Fail(f) | Outcome::ExpectedFailMismatch(f) | Outcome::Missing(f) => {
                println!("{f}")
            }
            _ => {}
        }
        for o in &cell.observed {
            println!("  {o}");
        }
        if !cell.logs.is_empty() {
            println!("{}", cell.logs);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} interop cells failed (see the report above)",
        failures.len(),
        suite.cells.len()
    );
}
