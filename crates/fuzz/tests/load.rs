//! Fuzz target `load`: the loader and checker (and the rendering of what they report) on
//! arbitrary bytes. A mutation loop over seeds from `runbooks/`, `tests/broken/` and
//! `tests/hostile/`: every panic is a failure, and so is a case that does not finish.
//!
//! `scripts/fuzz load [SECONDS]` runs it for a while; the normal suite runs a few hundred
//! cases with a fixed seed. Crashing and hanging inputs are written to `target/fuzz/load/`;
//! keep each as a case in `tests/hostile/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runbook_fuzz::Rng;
use runbook_lang::checker::check_bytes;

/// Tokens that tend to reach interesting corners of YAML and of the checker.
const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "&a ",
    "*a",
    "!include ",
    "!!binary ",
    "!!str ",
    "<<: *a",
    "\t",
    "\r\n",
    "\r",
    "\0",
    "\u{feff}",
    "- ",
    ": ",
    "? ",
    "---\n",
    "...\n",
    "|\n",
    ">-\n",
    "\"",
    "'",
    "#",
    "include: ",
    "on_failure: ",
    "timeout: 0s",
    "timeout: -1s",
    "attempts: 4294967296",
    "99999999999999999999",
    "-0",
    ".nan",
    "~",
    "[",
    "]",
    "{",
    "}",
    "steps.",
    "params.",
    "vars.",
    "env.",
    "| upper",
    "| nosuch",
    "{{ x[1:] }}",
    "runbook: list",
    "runbook: simulate",
    "\u{202e}",
    "é",
    "../",
    "id: ",
    "run: [",
    "shell: ",
    "stages:\n",
    "procedures:\n",
];

fn seeds() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for dir in ["runbooks", "tests/broken", "tests/hostile", "examples"] {
        let Ok(read) = std::fs::read_dir(root.join(dir)) else { continue };
        let mut paths: Vec<PathBuf> = read.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let is_case = path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "case");
            // Cases of a few MB slow every mutation down; they are run by the corpus test.
            if is_case
                && let Ok(bytes) = std::fs::read(&path)
                && bytes.len() < 64 * 1024
            {
                out.push(bytes);
            }
        }
    }
    if out.is_empty() {
        out.push(b"runbook: x\nprocedures: {}\n".to_vec());
    }
    out
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        let at = rng.below(len + 1);
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 => input.insert(at, u8::try_from(rng.below(256)).unwrap_or(0)),
            2 if len > 0 => {
                let end = (at + rng.below(32)).min(len);
                input.drain(at..end);
            }
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(64)).min(len);
                let chunk = input[start..end].to_vec();
                input.splice(at..at, chunk);
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + 1 + rng.below(256)).min(other.len());
                    input.splice(at..at, other[start..end].iter().copied());
                }
            }
            5 => input.truncate(at),
            6 => {
                // Repeat a line: deep nesting, long include chains, many steps.
                let start = input[..at].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                let end = input[at..].iter().position(|b| *b == b'\n').map_or(len, |i| at + i + 1);
                let line = input[start..end].to_vec();
                for _ in 0..rng.below(40) {
                    input.splice(start..start, line.iter().copied());
                }
            }
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                input.splice(at..at, token.iter().copied());
            }
        }
    }
    input.truncate(1 << 20);
}

/// What one case exercises: load, check, and render every diagnostic in every format.
fn one_case(input: &[u8]) -> usize {
    let checked = check_bytes(Path::new("fuzz.yaml"), input);
    let mut size = runbook_lang::diagnostic::render_all(&checked.diagnostics, false).len();
    size += runbook_lang::diagnostic::to_json(&checked.diagnostics).len();
    for d in &checked.diagnostics {
        size += runbook_lang::diagnostic::github_annotation(d).len();
    }
    if let Some(runbook) = &checked.runbook {
        size += runbook_lang::docs::markdown(runbook).len();
    }
    size
}

pub struct Report {
    pub executions: u64,
    pub elapsed: Duration,
    pub failures: Vec<PathBuf>,
}

/// A case using more than 5 s of CPU is saved as `slow-*`; one using 10 s (or 5 minutes of
/// wall time) stops the run as a hang.
/// Runs cases until `budget` is spent or `max_cases` have run, on a thread with the stack
/// of the binary's main thread (8 MiB), so a stack overflow found here is one users hit.
/// Each input is written to `current.yaml` first: a stack overflow aborts the process, and
/// the next run keeps that input as `crash-*.yaml`.
pub fn run(seed: u64, budget: Duration, max_cases: u64, out_dir: &Path) -> Report {
    let _ = std::fs::create_dir_all(out_dir);
    let current = out_dir.join("current.yaml");
    let mut earlier = Vec::new();
    if let Ok(input) = std::fs::read(&current) {
        earlier.push(save(out_dir, "crash", &input));
        eprintln!("fuzz load: the last run aborted on an input; kept as {}", earlier[0].display());
    }
    let dir = out_dir.to_owned();
    let worker = std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || run_cases(seed, budget, max_cases, &dir))
        .and_then(|handle| handle.join().map_err(|_| std::io::Error::other("the fuzz thread panicked")));
    let mut report = match worker {
        Ok(report) => report,
        Err(err) => Report { executions: 0, elapsed: Duration::ZERO, failures: vec![PathBuf::from(err.to_string())] },
    };
    let _ = std::fs::remove_file(&current);
    report.failures.extend(earlier);
    report
}

fn run_cases(seed: u64, budget: Duration, max_cases: u64, out_dir: &Path) -> Report {
    let seeds = seeds();
    let mut rng = Rng(seed | 1);
    let current: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (current, progress, done, out_dir) = (current.clone(), progress.clone(), done.clone(), out_dir.to_owned());
        std::thread::spawn(move || {
            // CPU time, not wall time: a fuzz run at `nice 19` on a busy machine can wait
            // seconds for a core without any case being slow. Wall time is the backstop.
            let hang = Duration::from_secs(10);
            let mut last = (u64::MAX, cpu_time(), Instant::now());
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let now = progress.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, cpu_time(), Instant::now());
                } else if cpu_time().saturating_sub(last.1) > hang || last.2.elapsed() > 30 * hang {
                    let input = current.lock().map(|c| c.clone()).unwrap_or_default();
                    let path = save(&out_dir, "hang", &input);
                    eprintln!("fuzz load: case {now} ran for more than {hang:?}; input saved to {}", path.display());
                    std::process::exit(1);
                }
            }
        })
    };
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut executions = 0;
    while started.elapsed() < budget && executions < max_cases {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &seeds, &mut input);
        if let Ok(mut c) = current.lock() {
            c.clone_from(&input);
        }
        let _ = std::fs::write(out_dir.join("current.yaml"), &input);
        let case_started = cpu_time();
        let outcome = std::panic::catch_unwind(|| one_case(&input));
        if outcome.is_err() {
            failures.push(save(out_dir, "crash", &input));
        } else if cpu_time().saturating_sub(case_started) > Duration::from_secs(5) {
            failures.push(save(out_dir, "slow", &input));
        }
        executions += 1;
        progress.store(executions, Ordering::Relaxed);
    }
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    Report { executions, elapsed: started.elapsed(), failures }
}

/// CPU time this process has used (user + system), from /proc/self/stat; the fuzz thread
/// is the only busy one. Without /proc, zero: then only the wall-time backstop applies.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line: indices 11 and 12 after the name.
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok())).sum();
    // Clock ticks are 1/100 s on Linux.
    Duration::from_millis(ticks * 10)
}

fn save(dir: &Path, kind: &str, input: &[u8]) -> PathBuf {
    use sha2::Digest;
    let _ = std::fs::create_dir_all(dir);
    let name = format!("{kind}-{}.yaml", &hex::encode(sha2::Sha256::digest(input))[..16]);
    let path = dir.join(name);
    let _ = std::fs::write(&path, input);
    path
}

fn out_dir() -> PathBuf {
    std::env::var_os("FUZZ_OUT").map_or_else(
        || {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"), PathBuf::from);
            target.join("fuzz/load")
        },
        PathBuf::from,
    )
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn check(report: &Report) {
    eprintln!(
        "fuzz load: {} executions in {:.1}s ({:.0}/s), {} failure(s)",
        report.executions,
        report.elapsed.as_secs_f64(),
        report.executions as f64 / report.elapsed.as_secs_f64().max(0.001),
        report.failures.len()
    );
    assert!(report.failures.is_empty(), "inputs that crashed or were slow: {:?}", report.failures);
}

/// Part of the normal suite: a few hundred cases, always the same ones.
#[test]
fn fuzz_load_short() {
    let report = run(0x5eed, Duration::from_secs(120), 400, &out_dir());
    check(&report);
}

/// `scripts/fuzz load SECONDS` (FUZZ_SECONDS, FUZZ_SEED).
#[test]
#[ignore = "long: run through scripts/fuzz"]
fn fuzz_load_long() {
    let seconds = env_u64("FUZZ_SECONDS").unwrap_or(60);
    let seed = env_u64("FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs())
    });
    eprintln!("fuzz load: seed {seed}, {seconds}s");
    let report = run(seed, Duration::from_secs(seconds), u64::MAX, &out_dir());
    check(&report);
}

/// The hang watchdog depends on it: CPU time must grow while the process computes.
#[test]
fn cpu_time_grows_while_computing() {
    let before = cpu_time();
    let started = Instant::now();
    let mut x = 0u64;
    while cpu_time() <= before && started.elapsed() < Duration::from_secs(10) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    assert!(cpu_time() > before, "cpu time did not grow in 10 s ({x})");
}
