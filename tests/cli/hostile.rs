//! The hostile corpus (`tests/hostile/*.case`, format in tests/hostile/README.md): each
//! case is a runbook file plus the command to run on it, the exit code and message
//! fragments it must give. Whatever the case, the binary must not panic or hang.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Sandbox, repo_root};

/// A case that takes longer than this is a hang.
const HANG: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Case {
    args: Vec<String>,
    exit: Option<i32>,
    stderr: Vec<String>,
    stdout: Vec<String>,
    absent: Vec<String>,
    env: Vec<(String, String)>,
    file: Option<String>,
    copies: Vec<String>,
    symlinks: Vec<(String, String)>,
    repeat: usize,
    body: Vec<u8>,
}

/// Header lines (`#! key: value`) first, then the runbook's bytes, untouched.
fn parse(name: &str, bytes: &[u8]) -> Case {
    let mut case = Case::default();
    let mut rest = bytes;
    while rest.starts_with(b"#!") {
        let end = rest.iter().position(|b| *b == b'\n').map_or(rest.len(), |i| i + 1);
        let line = String::from_utf8_lossy(&rest[2..end]).trim().to_owned();
        rest = &rest[end..];
        let (key, value) = line.split_once(':').unwrap_or_else(|| panic!("{name}: header `{line}` has no `:`"));
        let value = value.trim().to_owned();
        match key.trim() {
            "args" => case.args = shell_words::split(&value).unwrap_or_else(|e| panic!("{name}: args: {e}")),
            "exit" => case.exit = Some(value.parse().unwrap_or_else(|e| panic!("{name}: exit: {e}"))),
            "stderr" => case.stderr.push(value),
            "stdout" => case.stdout.push(value),
            "absent" => case.absent.push(value),
            "env" => {
                let (k, v) = value.split_once('=').unwrap_or_else(|| panic!("{name}: env needs K=V"));
                case.env.push((k.to_owned(), v.to_owned()));
            }
            "file" => case.file = Some(value),
            "copy" => case.copies.push(value),
            "symlink" => {
                let (link, target) = value.split_once("->").unwrap_or_else(|| panic!("{name}: symlink needs A -> B"));
                case.symlinks.push((link.trim().to_owned(), target.trim().to_owned()));
            }
            "repeat" => case.repeat = value.parse().unwrap_or_else(|e| panic!("{name}: repeat: {e}")),
            other => panic!("{name}: unknown header `{other}`"),
        }
    }
    case.body = rest.to_vec();
    if case.repeat > 0 {
        // The last line of the body, repeated: huge files without huge cases.
        let trimmed = case.body.strip_suffix(b"\n").unwrap_or(&case.body);
        let start = trimmed.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let line = case.body[start..].to_vec();
        for _ in 0..case.repeat {
            case.body.extend_from_slice(&line);
        }
    }
    case
}

fn cases() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("tests/hostile"))
        .unwrap_or_else(|e| panic!("tests/hostile: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, bytes)
        })
        .collect()
}

fn expand(text: &str, sandbox: &Path, file: &Path) -> String {
    text.replace("{file}", &file.display().to_string())
        .replace("{dir}", &sandbox.join("runbooks").display().to_string())
        .replace("{sandbox}", &sandbox.display().to_string())
}

/// Runs one case; returns what is wrong with the outcome, if anything.
fn run(case: &Case) -> Result<(), String> {
    let sandbox = Sandbox::new();
    let root = sandbox.path();
    let file = root.join("runbooks").join(case.file.as_deref().unwrap_or("case.yaml"));
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    std::fs::write(&file, &case.body).map_err(|e| e.to_string())?;
    for copy in &case.copies {
        std::fs::write(root.join("runbooks").join(copy), &case.body).map_err(|e| e.to_string())?;
    }
    for (link, target) in &case.symlinks {
        std::os::unix::fs::symlink(target, root.join("runbooks").join(link)).map_err(|e| e.to_string())?;
    }
    let args: Vec<String> = if case.args.is_empty() {
        vec!["validate".into(), file.display().to_string()]
    } else {
        case.args.iter().map(|a| expand(a, root, &file)).collect()
    };
    let mut run = crate::support::Run::new(root).args(&args);
    for (k, v) in &case.env {
        run = run.env(k, expand(v, root, &file));
    }
    let mut cmd = run.cmd;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    // Read the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out_pipe = child.stdout.take().ok_or("no stdout")?;
    let mut err_pipe = child.stderr.take().ok_or("no stderr")?;
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out_pipe, &mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err_pipe, &mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("did not finish within {HANG:?} (a hang)"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = String::from_utf8_lossy(&out_thread.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
    let code = status.code().unwrap_or(-1);
    let shown = || format!("exit {code}\n--- stdout\n{}\n--- stderr\n{}", clip(&stdout), clip(&stderr));
    if code == 101 || stderr.contains("panicked") || status.code().is_none() {
        return Err(format!("crashed: {}", shown()));
    }
    if let Some(expected) = case.exit
        && expected != code
    {
        return Err(format!("expected exit {expected}, got {}", shown()));
    }
    for fragment in &case.stderr {
        let fragment = expand(fragment, root, &file);
        if !stderr.contains(&fragment) {
            return Err(format!("stderr lacks `{fragment}`: {}", shown()));
        }
    }
    for fragment in &case.stdout {
        let fragment = expand(fragment, root, &file);
        if !stdout.contains(&fragment) {
            return Err(format!("stdout lacks `{fragment}`: {}", shown()));
        }
    }
    for fragment in &case.absent {
        if stdout.contains(fragment.as_str()) || stderr.contains(fragment.as_str()) {
            return Err(format!("output contains `{fragment}`, which it must not: {}", shown()));
        }
    }
    // Output is bounded whatever the input: a huge bad value is never echoed whole.
    if stdout.len() + stderr.len() > 64 * 1024 {
        return Err(format!("{} bytes of output: {}", stdout.len() + stderr.len(), shown()));
    }
    Ok(())
}

fn clip(text: &str) -> String {
    if text.len() <= 3000 {
        return text.to_owned();
    }
    let mut end = 3000;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

#[test]
fn hostile_corpus_every_case_holds() {
    let cases = cases();
    assert!(cases.len() >= 100, "the hostile corpus needs at least 100 cases, has {}", cases.len());
    let mut failures = Vec::new();
    for (name, bytes) in &cases {
        let case = parse(name, bytes);
        assert!(case.exit.is_some(), "{name}: every case states its exit code");
        assert!(!case.stderr.is_empty() || !case.stdout.is_empty(), "{name}: every case states a message");
        if let Err(problem) = run(&case) {
            failures.push(format!("{name}: {problem}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}
