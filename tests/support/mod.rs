//! A small builder that runs the real binary in a temporary folder.

#![allow(dead_code)]

pub mod gcs;
pub mod http;

use std::path::{Path, PathBuf};
use std::process::Output;

use tempfile::TempDir;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_runbook"))
}

/// A temporary working folder with a `runbooks/` folder and a private state dir.
pub struct Sandbox {
    pub dir: TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new().prefix("runbook-test-").tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        std::fs::create_dir_all(dir.path().join("runbooks")).unwrap_or_else(|e| panic!("mkdir: {e}"));
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `runbooks/<name>`, or a path relative to the sandbox when it has a `/`.
    pub fn file(&self, relative: &str, text: &str) -> PathBuf {
        let path = if relative.contains('/') {
            self.path().join(relative)
        } else {
            self.path().join("runbooks").join(relative)
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    pub fn copy_rollback(&self) {
        let text = std::fs::read_to_string(repo_root().join("runbooks/rollback.yaml"))
            .unwrap_or_else(|e| panic!("read rollback.yaml: {e}"));
        self.file("rollback.yaml", &text);
        let signers = std::fs::read_to_string(repo_root().join("runbooks/allowed_signers"))
            .unwrap_or_else(|e| panic!("read allowed_signers: {e}"));
        self.file("allowed_signers", &signers);
    }

    pub fn runbook(&self) -> Run {
        Run::new(self.path())
    }

    /// Journals of the runs in this sandbox's state dir, oldest first (ids sort by time).
    /// A run killed while creating its journal leaves only `<id>.jsonl.new`: it never started.
    pub fn journals(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.path().join("state/runs"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
        files.sort();
        files
    }

    pub fn last_run_id(&self) -> String {
        self.journals().last().and_then(|p| p.file_stem()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// Stand-in programs that record every call into `calls.log` (and fail), to prove
    /// that a dry-run spawns nothing. Returns (folder to put first on PATH, log file).
    pub fn recording_path(&self, programs: &[&str]) -> (PathBuf, PathBuf) {
        let bin = self.path().join("recording-bin");
        let log = self.path().join("calls.log");
        for program in programs {
            let script = format!("#!/bin/sh\necho \"{program} $*\" >> '{}'\nexit 99\n", log.display());
            write_executable(&bin.join(program), &script);
        }
        (bin, log)
    }
}

pub fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write: {e}"));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap_or_else(|e| panic!("chmod: {e}"));
}

#[must_use]
pub struct Run {
    pub cmd: std::process::Command,
    stdin: Option<String>,
}

impl Run {
    pub fn new(cwd: &Path) -> Run {
        let mut cmd = std::process::Command::new(binary());
        cmd.current_dir(cwd);
        for var in [
            "RUNBOOK_DIR",
            "GITHUB_ACTIONS",
            "RUST_LOG",
            "XDG_STATE_HOME",
            "RUNBOOK_STATE_URL",
            "STORAGE_EMULATOR_HOST",
            "GITHUB_ACTOR",
            "CLOUDSDK_CORE_ACCOUNT",
            "CLOUDSDK_ACTIVE_CONFIG_NAME",
        ] {
            cmd.env_remove(var);
        }
        // Who runs is the active gcloud account (issue 20): the tests' gcloud set-up is their
        // own, never the developer's (tests that rehearse point it at theirs).
        cmd.env("CLOUDSDK_CONFIG", cwd.join("gcloud-config"));
        cmd.env("RUNBOOK_STATE_DIR", cwd.join("state")).env("NO_COLOR", "1").env("COLUMNS", "100");
        // The start-up cache of the tests is theirs, not the user's (tests of the cache set
        // their own).
        cmd.env("XDG_CACHE_HOME", Path::new(env!("CARGO_TARGET_TMPDIR")).join("cache"));
        Run { cmd, stdin: None }
    }

    pub fn args<I, S>(mut self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Run {
        self.cmd.env(key, value);
        self
    }

    /// The same run under `program args...` (strace, unshare): the wrapper runs the binary with
    /// this run's arguments, environment and folder.
    pub fn wrapped(self, program: &str, args: &[&str]) -> Run {
        let mut cmd = std::process::Command::new(program);
        cmd.args(args).arg(self.cmd.get_program()).args(self.cmd.get_args());
        for (key, value) in self.cmd.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = self.cmd.get_current_dir() {
            cmd.current_dir(dir);
        }
        Run { cmd, stdin: self.stdin }
    }

    pub fn stdin(mut self, text: &str) -> Run {
        self.stdin = Some(text.to_owned());
        self
    }

    pub fn output(mut self) -> Finished {
        use std::io::Write;
        use std::process::Stdio;
        self.cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.cmd.spawn().unwrap_or_else(|e| panic!("spawn runbook: {e}"));
        if let Some(mut stdin) = child.stdin.take()
            && let Some(text) = &self.stdin
        {
            let _ = stdin.write_all(text.as_bytes());
        }
        let output = child.wait_with_output().unwrap_or_else(|e| panic!("wait: {e}"));
        Finished { output }
    }
}

pub struct Finished {
    pub output: Output,
}

impl Finished {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    #[track_caller]
    pub fn status(self, expected: i32) -> Self {
        assert_eq!(self.code(), expected, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout(), self.stderr());
        self
    }

    #[track_caller]
    pub fn success(self) -> Self {
        self.status(0)
    }
}

/// A timestamp one hour ago: inside `not_after: now` and `not_before: now-7d`.
pub fn recent_timestamp() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let secs = now - 3600;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = i64::try_from(secs / 86400).unwrap_or(0);
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Processes whose command line contains `needle`, zombies excluded.
pub fn live_processes(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let state = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        let zombie = state.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if cmdline.contains(needle) && !zombie {
            found.push(format!("{}: {cmdline}", path.display()));
        }
    }
    found
}

/// Sends a signal (`STOP`, `CONT`, `KILL`, ...) to a process with kill(1).
pub fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill").args([format!("-{name}"), pid.to_string()]).status();
}
