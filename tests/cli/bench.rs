//! `scripts/bench/run --smoke`: the benchmark of issue 13 at tiny sizes, so it cannot rot.
//! Only that it completes and prints every row is checked; its figures are not.

use crate::support::{binary, repo_root};

#[test]
fn the_benchmark_smoke_run_completes_and_prints_every_row_of_the_table() {
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/bench/run"))
        .arg("--smoke")
        .env("RUNBOOK_BIN", binary())
        .env("BENCH_SIZE", "200000")
        .output()
        .unwrap_or_else(|e| panic!("cannot start scripts/bench/run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/bench/run --smoke failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    for row in [
        "| case | runbook | baseline | ratio | target | verdict |",
        "| 200 steps of /bin/true, --yes, journal on | ",
        "| a step printing ",
        "| the same with one secret registered | ",
        "| runbook list, 20 runbooks like rollback.yaml | ",
        "| runbook validate runbooks/, the same 20 | ",
        "| validate of one runbook with 200 steps | ",
        "| runbook --version | ",
        "| list, start-up cache off (cold) | ",
        "| validate runbooks/, cache off (cold) | ",
        "| validate 200 steps, cache off (cold) | ",
    ] {
        assert!(stdout.contains(row), "no `{row}` in the table:\n{stdout}");
    }
    // Every row has a figure and a verdict, not an empty cell from a failed median.
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| case")).collect();
    assert_eq!(rows.len(), 10, "{stdout}");
    for row in rows {
        assert!(row.contains(" ms") || row.contains(" s "), "a row without a time: {row}");
        assert!(row.ends_with("| met |") || row.contains("MISSED"), "a row without a verdict: {row}");
    }
}
