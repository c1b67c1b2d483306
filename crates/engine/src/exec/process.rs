//! `run:` and `shell:` steps: one child in its own process group, output streamed live a
//! line at a time and captured up to a bound, the whole group ended on timeout or Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use runbook_state::event::Stream;

/// Lines longer than this are passed on in pieces, so one endless line cannot grow memory.
/// Secrets are masked before lines are cut, so a piece boundary never splits one.
const MAX_LINE: usize = 1024 * 1024;
/// One read from a child's pipe; the pipe is enlarged to this where Linux lets us
/// (`F_SETPIPE_SZ`, at most /proc/sys/fs/pipe-max-size), so a fast child wakes us less often.
const READ_SIZE: usize = 256 * 1024;
/// After SIGTERM, how long the group gets before SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

pub struct Spec<'a> {
    pub argv: &'a [String],
    pub env: Vec<(String, String)>,
    /// Inherited variables the child must not see.
    pub remove_env: Vec<String>,
    pub stdin: Option<String>,
    pub cwd: PathBuf,
    pub timeout: Duration,
    /// Capture stdout up to this many bytes; `None` captures nothing.
    pub capture_limit: Option<usize>,
    /// Stream stdout / stderr to the operator (not a `secret: true` step's stdout).
    pub show_stdout: bool,
    pub show_stderr: bool,
    /// Masks what is shown.
    pub redactor: crate::redact::Redactor,
}

pub enum Ended {
    Exited { code: Option<i32>, signal: Option<i32>, captured: Vec<u8> },
    CaptureTooLarge { limit: usize },
    TimedOut,
    Interrupted,
}

/// Runs the process; `on_output` sees every shown stream's output, masked, as it arrives:
/// complete lines (or a piece of a line longer than `MAX_LINE`, or the unterminated end of
/// the output), and `None` after each burst.
pub async fn run(
    spec: Spec<'_>,
    cancel: &CancellationToken,
    mut on_output: impl FnMut(Stream, Option<Vec<u8>>),
) -> Result<Ended, String> {
    let (program, args) = spec.argv.split_first().ok_or("empty command")?;
    let program_path = resolve_program(program, &spec.cwd);
    let mut command = Command::new(&program_path);
    for name in &spec.remove_env {
        command.env_remove(name);
    }
    command
        .args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: the terminal's Ctrl-C reaches runbook only, and ending
        // the step ends everything it started.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|err| spawn_error(program, &spec.cwd, &err))?;
    let group = Group(child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw));
    // Processes that began before the step are not its orphans, whatever their parent.
    let step_began = child.id().and_then(proc_stat).map_or(0, |(_, start)| start);
    if let Some(text) = spec.stdin
        && let Some(mut stdin) = child.stdin.take()
    {
        // Written from a task: a child that does not read its stdin must not block us.
        tokio::spawn(async move {
            let _ = stdin.write_all(text.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
    }
    // Bounded in bytes too: at most this many reads of `READ_SIZE` wait for the terminal.
    let (tx, mut rx) = mpsc::channel::<Chunk>(8);
    let mut readers = Vec::new();
    let masker = |shown: bool| shown.then(|| spec.redactor.stream());
    if let Some(stdout) = child.stdout.take() {
        enlarge_pipe(&stdout);
        let reader =
            Reader { stream: Stream::Stdout, masker: masker(spec.show_stdout), capture: spec.capture_limit.is_some() };
        readers.push(tokio::spawn(reader.run(stdout, tx.clone())));
    }
    if let Some(stderr) = child.stderr.take() {
        let reader = Reader { stream: Stream::Stderr, masker: masker(spec.show_stderr), capture: false };
        readers.push(tokio::spawn(reader.run(stderr, tx.clone())));
    }
    drop(tx);

    let mut captured = Vec::new();
    let mut overflow = false;
    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    let mut exit = None;
    let mut streams_open = true;
    let ended = loop {
        tokio::select! {
            chunk = rx.recv(), if streams_open => match chunk {
                Some(Chunk { stream, raw, shown }) => {
                    if let Some(limit) = spec.capture_limit && !raw.is_empty() {
                        if captured.len() + raw.len() > limit {
                            overflow = true;
                        } else {
                            captured.extend_from_slice(&raw);
                        }
                    }
                    if !shown.is_empty() {
                        on_output(stream, Some(shown));
                        on_output(stream, None);
                    }
                    if overflow {
                        break None;
                    }
                }
                None => streams_open = false,
            },
            // The leader only: waiting for the whole group would wait on anything the step
            // left running in the background.
            status = child.wait(), if exit.is_none() => {
                let status = status.map_err(|e| format!("waiting for the process: {e}"))?;
                // Leave nothing behind: what the step started in its group goes too, which
                // also closes pipes a background grandchild still holds.
                group.signal(Signal::SIGKILL);
                exit = Some(status);
            },
            () = &mut deadline => break Some(Ended::TimedOut),
            () = cancel.cancelled() => break Some(Ended::Interrupted),
        }
        if exit.is_some() && !streams_open {
            break None;
        }
    };
    let ended = match ended {
        Some(ended) => {
            stop(&mut child, &group).await;
            ended
        }
        None if overflow => {
            stop(&mut child, &group).await;
            Ended::CaptureTooLarge { limit: spec.capture_limit.unwrap_or(0) }
        }
        None => {
            use std::os::unix::process::ExitStatusExt;
            let status = exit.ok_or("the process ended without a status")?;
            Ended::Exited { code: status.code(), signal: status.signal(), captured }
        }
    };
    for reader in readers {
        reader.abort();
    }
    group.reap();
    end_orphans(child.id(), step_began);
    Ok(ended)
}

/// Ends what the step left behind outside its process group (a `setsid` or double-forked
/// daemon). runbook is the child subreaper, so once the step's own processes are gone,
/// anything still parented to runbook that started with or after the step (other than
/// its leader) can only come from the step: it is killed and reaped, and its children,
/// re-parented to runbook in turn, go the same way until none is left.
fn end_orphans(leader: Option<u32>, step_began: u64) {
    let me = std::process::id();
    let deadline = std::time::Instant::now() + GRACE;
    loop {
        // The full `/proc` scan costs ~75 file reads; most steps leave no child of runbook
        // at all, which one waitid(2) that neither blocks nor reaps tells us.
        if !has_children() {
            return;
        }
        let orphans: Vec<u32> = children_of(me, step_began).into_iter().filter(|pid| Some(*pid) != leader).collect();
        if orphans.is_empty() || std::time::Instant::now() > deadline {
            return;
        }
        for pid in &orphans {
            if let Ok(raw) = i32::try_from(*pid) {
                let pid = Pid::from_raw(raw);
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
        for pid in orphans {
            if let Ok(raw) = i32::try_from(pid) {
                // WNOHANG: one stuck in the kernel is looked at again on the next pass.
                let _ = waitpid(Pid::from_raw(raw), Some(WaitPidFlag::WNOHANG));
            }
        }
    }
}

/// Whether runbook has any child process at all, alive or exited, of any kind: false only
/// when the kernel says there is none (ECHILD); nothing is reaped (WNOWAIT).
fn has_children() -> bool {
    use nix::sys::wait::{Id, waitid};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT | WaitPidFlag::__WALL;
    !matches!(waitid(Id::All, flags), Err(nix::errno::Errno::ECHILD))
}

/// Processes whose parent is `parent` and that started at or after `since` (clock ticks
/// after boot), read from `/proc` (none where there is no `/proc`).
fn children_of(parent: u32, since: u64) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| proc_stat(*pid).is_some_and(|(ppid, start)| ppid == parent && start >= since))
        .collect()
}

/// The parent pid and start time of a process. One read of a page: the kernel hands
/// `/proc/PID/stat` (well under a page) over whole, where `read_to_string` would probe it in
/// six growing reads after a `statx`, on every step.
fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; 4096];
    let len = file.read(&mut buf).ok()?;
    parse_stat(std::str::from_utf8(buf.get(..len)?).ok()?)
}

/// The ppid (4th) and starttime (22nd) fields of `/proc/PID/stat`, counted after the
/// command name, which is in parentheses and may itself contain spaces and parentheses.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

/// A step's process group, by the leader's pid.
struct Group(Option<Pid>);

impl Group {
    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.0 {
            // ESRCH: the group is already gone, which is what we want.
            let _ = killpg(pgid, signal);
        }
    }

    /// Collects group members that runbook adopted as subreaper and that have exited.
    fn reap(&self) {
        let Some(pgid) = self.0 else { return };
        let group = Pid::from_raw(-pgid.as_raw());
        while let Ok(status) = waitpid(group, Some(WaitPidFlag::WNOHANG)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

/// SIGTERM to the whole group, then SIGKILL if the leader is still there after the grace
/// period; members that outlive the leader get SIGKILL regardless.
async fn stop(child: &mut tokio::process::Child, group: &Group) {
    group.signal(Signal::SIGTERM);
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        group.signal(Signal::SIGKILL);
        let _ = tokio::time::timeout(GRACE, child.wait()).await;
    }
    group.signal(Signal::SIGKILL);
}

/// What one read of a pipe gives the step: the bytes as read (for the capture) and what
/// may be shown of them now, masked.
struct Chunk {
    stream: Stream,
    raw: Vec<u8>,
    shown: Vec<u8>,
}

/// Reads one of the child's pipes until it closes.
struct Reader {
    stream: Stream,
    /// `None`: nothing of this stream is shown.
    masker: Option<crate::redact::StreamMasker>,
    capture: bool,
}

impl Reader {
    /// Bytes are scanned, never decoded: the masker works on the bytes as read (holding back
    /// the possible beginning of a secret until the next read), then complete lines go out,
    /// several per message, so a child printing millions of short lines costs one channel
    /// message per read, not one per line. A line longer than `MAX_LINE` goes in pieces.
    async fn run(mut self, mut reader: impl AsyncRead + Unpin, tx: mpsc::Sender<Chunk>) {
        let mut buf = Vec::new();
        // Masked bytes of the line not complete yet.
        let mut pending: Vec<u8> = Vec::new();
        let masking = self.masker.as_ref().is_some_and(crate::redact::StreamMasker::is_active);
        loop {
            // Without secrets to mask, a read lands straight after the pending bytes.
            let into = if masking || self.masker.is_none() { &mut buf } else { &mut pending };
            let scanned = into.len();
            into.reserve(READ_SIZE);
            let n = match reader.read_buf(into).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let raw = if self.capture { into[scanned..scanned + n].to_vec() } else { Vec::new() };
            let mut shown = Vec::new();
            if let Some(masker) = &mut self.masker {
                let scanned = if masking {
                    let scanned = pending.len();
                    masker.push(&buf, &mut pending);
                    buf.clear();
                    scanned
                } else {
                    scanned
                };
                match memchr::memrchr(b'\n', &pending[scanned..]) {
                    Some(last) => {
                        let rest = pending.split_off(scanned + last + 1);
                        shown = std::mem::replace(&mut pending, rest);
                    }
                    None if pending.len() >= MAX_LINE => shown = std::mem::take(&mut pending),
                    None => {}
                }
            } else {
                buf.clear();
            }
            if (!raw.is_empty() || !shown.is_empty())
                && tx.send(Chunk { stream: self.stream, raw, shown }).await.is_err()
            {
                return;
            }
        }
        if let Some(masker) = &mut self.masker {
            masker.finish(&mut pending);
        }
        if !pending.is_empty() {
            let _ = tx.send(Chunk { stream: self.stream, raw: Vec::new(), shown: pending }).await;
        }
    }
}

/// Asks for a pipe of `READ_SIZE`; a refusal (an unprivileged limit) keeps the default.
fn enlarge_pipe(pipe: &impl std::os::fd::AsFd) {
    use nix::fcntl::{FcntlArg, fcntl};
    let size = i32::try_from(READ_SIZE).unwrap_or(i32::MAX);
    let _ = fcntl(pipe, FcntlArg::F_SETPIPE_SZ(size));
}

/// `./scripts/x.sh` resolves against the step's directory; bare names go through PATH.
fn resolve_program(program: &str, cwd: &Path) -> PathBuf {
    let path = Path::new(program);
    if program.contains('/') && path.is_relative() { cwd.join(path) } else { path.to_path_buf() }
}

fn spawn_error(program: &str, cwd: &Path, err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound if !cwd.exists() => format!("working directory {} does not exist", cwd.display()),
        std::io::ErrorKind::NotFound if program.contains('/') => {
            format!("program `{program}` not found (relative to {})", cwd.display())
        }
        std::io::ErrorKind::NotFound => format!("program `{program}` not found on PATH"),
        std::io::ErrorKind::PermissionDenied => format!("program `{program}` is not executable"),
        _ => format!("cannot start `{program}`: {err}"),
    }
}
