//! Smoke test of the end-to-end bench `mesh-bench` (issue 9): its `--quick` mode over the
//! floor, bare tonic and mesh rows (mesh-control in the bench process, a MeshServer and a
//! MeshChannel in child processes) runs, and the JSON report parses with every cell
//! measured. Numbers are never checked: this is a benchmark's plumbing, not its timing.

use mesh_benches::e2e::report::Report;

#[test]
fn quick_mode_runs_and_reports() {
    let dir = std::env::temp_dir().join(format!("mesh-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mesh-bench"))
        .args([
            "--quick",
            "--no-pin",
            "--rows",
            "tcp,tonic,mesh",
            "--workloads",
            "unary-100B,stream-10x100B",
            "--concurrency",
            "1,4",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "mesh-bench failed:\n{stdout}\n{stderr}"
    );
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(report.rows.len(), 3);
    for row in &report.rows {
        assert!(
            row.skipped.is_none(),
            "{} skipped: {:?}",
            row.row,
            row.skipped
        );
        assert_eq!(row.cells.len(), 4, "{}", row.row);
        for cell in &row.cells {
            assert!(cell.calls > 0, "{} {:?}: no calls", row.row, cell);
            assert_eq!(cell.errors, 0, "{} {:?}", row.row, cell);
        }
    }
    assert!(stdout.contains("| unary-100B | 1 | mesh |"), "{stdout}");
}
