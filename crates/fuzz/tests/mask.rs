//! Fuzz target `mask` (`scripts/fuzz mask [SECONDS]`): the stream masker on random secrets
//! (any bytes of UTF-8: multi-byte characters, regex metacharacters, line ends, secrets
//! inside secrets) in random output cut into random reads. Checks that no secret is
//! released, that the cut does not change the result, and that nothing panics.

use std::time::{Duration, Instant};

use runbook_engine::redact::{MIN_SECRET_LEN, Redactor, shown_bytes, shown_form};

use runbook_fuzz::Rng;

const PIECES: &[&str] = &[
    "a",
    "b",
    "é",
    "ß",
    "日",
    "🔑",
    ".",
    "*",
    "?",
    "\\",
    "$",
    "(",
    "\n",
    "\r\n",
    " ",
    "x",
    "0",
    "\u{1b}[0m",
    "\u{1b}[",
    "\u{1b}]8;;x\u{7}",
    "\u{1b}",
    "\u{1b}(B",
    "[",
    "m",
];

fn secret(rng: &mut Rng) -> String {
    loop {
        let len = MIN_SECRET_LEN + rng.below(12);
        // No `*`: the mask itself would look like such a secret.
        let s: String = (0..len).map(|_| PIECES[rng.below(PIECES.len())]).filter(|p| *p != "*").collect();
        if s.trim_end_matches(['\n', '\r']).chars().count() >= MIN_SECRET_LEN {
            return s;
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(haystack, needle).is_some()
}

/// One case; `Err` describes a failure.
fn case(rng: &mut Rng) -> Result<(), String> {
    let redactor = Redactor::default();
    let secrets: Vec<String> = (0..1 + rng.below(3)).map(|_| secret(rng)).collect();
    for s in &secrets {
        redactor.add(s);
    }
    let mut output = Vec::new();
    for _ in 0..rng.below(12) {
        match rng.below(4) {
            0 => output.extend_from_slice(secrets[rng.below(secrets.len())].as_bytes()),
            // A secret split by an escape sequence.
            1 if rng.below(2) == 0 => {
                let s = &secrets[rng.below(secrets.len())];
                let at = s.char_indices().nth(1 + rng.below(2)).map_or(s.len(), |(i, _)| i);
                output.extend_from_slice(&s.as_bytes()[..at]);
                output.extend_from_slice(["\u{1b}[0m", "\u{1b}]0;t\u{7}", "\u{1b}(B"][rng.below(3)].as_bytes());
                output.extend_from_slice(&s.as_bytes()[at..]);
            }
            1 => output.extend((0..rng.below(8)).map(|_| u8::try_from(rng.below(256)).unwrap_or(0))),
            2 => output.extend_from_slice(PIECES[rng.below(PIECES.len())].as_bytes()),
            _ => {
                // A secret's beginning or end alone.
                let s = secrets[rng.below(secrets.len())].as_bytes();
                let cut = rng.below(s.len());
                output.extend_from_slice(if rng.below(2) == 0 { &s[..cut] } else { &s[cut..] });
            }
        }
    }
    let run = |cuts: &[usize]| {
        let mut masker = redactor.stream();
        let mut out = Vec::new();
        let mut rest = &output[..];
        for &cut in cuts {
            let cut = cut.min(rest.len());
            masker.push(&rest[..cut], &mut out);
            rest = &rest[cut..];
        }
        masker.push(rest, &mut out);
        masker.finish(&mut out);
        out
    };
    let cuts: Vec<usize> = (0..rng.below(10)).map(|_| rng.below(24)).collect();
    let chunked = run(&cuts);
    let whole = run(&[]);
    if chunked != whole {
        return Err(format!("cuts {cuts:?} change the result for {secrets:?} in {output:?}"));
    }
    // A secret's lines are secrets too (see `add`); only the whole and those are checked.
    let shown = shown_bytes(&chunked);
    for s in &secrets {
        let s = s.trim_end_matches(['\n', '\r']);
        if contains(&chunked, s.as_bytes()) {
            return Err(format!("secret {s:?} written: {secrets:?} in {output:?}, cuts {cuts:?}"));
        }
        // As shown once escape sequences are removed (the secret's own included).
        let s = shown_form(s);
        if s.trim().chars().count() >= MIN_SECRET_LEN && contains(&shown, s.as_bytes()) {
            return Err(format!("secret {s:?} shown: {secrets:?} in {output:?}, cuts {cuts:?}"));
        }
    }
    Ok(())
}

fn run(seed: u64, budget: Duration, max_cases: u64) -> (u64, Vec<String>) {
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let mut executions = 0;
    let mut failures = Vec::new();
    while executions < max_cases && started.elapsed() < budget {
        if let Err(failure) = case(&mut rng) {
            failures.push(failure);
        }
        executions += 1;
    }
    (executions, failures)
}

/// Part of the normal suite: the same few thousand cases every time.
#[test]
fn fuzz_mask_short() {
    let (executions, failures) = run(0x5eed, Duration::from_secs(60), 5_000);
    assert!(failures.is_empty(), "{executions} cases, failures: {failures:#?}");
}

/// `scripts/fuzz mask SECONDS` (FUZZ_SECONDS, FUZZ_SEED).
#[test]
#[ignore = "long: run through scripts/fuzz"]
fn fuzz_mask_long() {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seconds = var("FUZZ_SECONDS").unwrap_or(60);
    let seed = var("FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs())
    });
    let started = Instant::now();
    let (executions, failures) = run(seed, Duration::from_secs(seconds), u64::MAX);
    eprintln!(
        "fuzz mask: seed {seed}, {executions} executions in {:.1}s, {} failure(s)",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(failures.is_empty(), "failures: {:#?}", failures.iter().take(5).collect::<Vec<_>>());
}
