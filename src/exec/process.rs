//! `run:` and `shell:` steps: one child in its own process group, output streamed live a
//! line at a time and captured up to a bound, the whole group ended on timeout or Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use process_wrap::tokio::{CommandWrap, KillOnDrop, ProcessGroup};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::event::Stream;

/// Lines longer than this are passed on in pieces, so one endless line cannot grow memory.
const MAX_LINE: usize = 64 * 1024;
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
    /// Stream stdout to the operator (not for `secret: true` steps).
    pub show_stdout: bool,
}

pub enum Ended {
    Exited { code: Option<i32>, signal: Option<i32>, captured: Vec<u8> },
    CaptureTooLarge { limit: usize },
    TimedOut,
    Interrupted,
}

/// Runs the process; `on_line` sees every output line as it arrives.
pub async fn run(
    spec: Spec<'_>,
    cancel: &CancellationToken,
    mut on_line: impl FnMut(Stream, &str),
) -> Result<Ended, String> {
    let (program, args) = spec.argv.split_first().ok_or("empty command")?;
    let program_path = resolve_program(program, &spec.cwd);
    let mut command = CommandWrap::with_new(&program_path, |c| {
        for name in &spec.remove_env {
            c.env_remove(name);
        }
        c.args(args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.cwd)
            .stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    });
    command.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
    let mut child = command.spawn().map_err(|err| spawn_error(program, &spec.cwd, &err))?;
    if let Some(text) = spec.stdin
        && let Some(mut stdin) = child.stdin().take()
    {
        // Written from a task: a child that does not read its stdin must not block us.
        tokio::spawn(async move {
            let _ = stdin.write_all(text.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
    }
    let (tx, mut rx) = mpsc::channel::<(Stream, Vec<u8>)>(64);
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout().take() {
        readers.push(tokio::spawn(read_lines(stdout, Stream::Stdout, tx.clone())));
    }
    if let Some(stderr) = child.stderr().take() {
        readers.push(tokio::spawn(read_lines(stderr, Stream::Stderr, tx.clone())));
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
            line = rx.recv(), if streams_open => match line {
                Some((stream, bytes)) => {
                    if stream == Stream::Stdout
                        && let Some(limit) = spec.capture_limit {
                            if captured.len() + bytes.len() > limit {
                                overflow = true;
                            } else {
                                captured.extend_from_slice(&bytes);
                            }
                        }
                    if stream == Stream::Stderr || spec.show_stdout {
                        let text = String::from_utf8_lossy(&bytes);
                        on_line(stream, text.trim_end_matches(['\n', '\r']));
                    }
                    if overflow {
                        break None;
                    }
                }
                None => streams_open = false,
            },
            status = child.wait(), if exit.is_none() => {
                let status = status.map_err(|e| format!("waiting for the process: {e}"))?;
                // Leave nothing behind: anything the step started in its group goes too,
                // which also closes pipes a background grandchild still holds.
                let _ = child.signal(nix::sys::signal::Signal::SIGKILL as i32);
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
            stop_group(child.as_mut()).await;
            ended
        }
        None if overflow => {
            stop_group(child.as_mut()).await;
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
    Ok(ended)
}

/// SIGTERM to the whole group, then SIGKILL if it is still there after the grace period.
async fn stop_group(child: &mut dyn process_wrap::tokio::ChildWrapper) {
    let _ = child.signal(nix::sys::signal::Signal::SIGTERM as i32);
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        let _ = child.start_kill();
    }
    let _ = child.signal(nix::sys::signal::Signal::SIGKILL as i32);
    let _ = tokio::time::timeout(GRACE, child.wait()).await;
}

async fn read_lines(mut reader: impl AsyncRead + Unpin, stream: Stream, tx: mpsc::Sender<(Stream, Vec<u8>)>) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut line = Vec::new();
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut rest = &buf[..n];
        while let Some(pos) = memchr(b'\n', rest) {
            line.extend_from_slice(&rest[..=pos]);
            rest = &rest[pos + 1..];
            if tx.send((stream, std::mem::take(&mut line))).await.is_err() {
                return;
            }
        }
        line.extend_from_slice(rest);
        if line.len() >= MAX_LINE && tx.send((stream, std::mem::take(&mut line))).await.is_err() {
            return;
        }
    }
    if !line.is_empty() {
        let _ = tx.send((stream, line)).await;
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
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
