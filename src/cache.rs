//! The start-up cache: a runbook file's [`Summary`], keyed by the sha256 of the file's bytes
//! and by the running binary, so `list` and building the command line do not check every
//! runbook of the folder again on every call.
//!
//! Where: `$XDG_CACHE_HOME/runbook/summaries` (else `~/.cache/runbook/summaries`), one small
//! JSON file per (binary, content). Never trusted blindly: the file records the binary and
//! the content hash it was made from, and is used only when both match this binary and the
//! file's bytes as read now; anything unreadable, truncated or foreign is a miss (the file
//! is checked afresh). Writers write a private temporary file and rename it into place, so
//! concurrent writers and readers only ever see whole files. At most [`MAX_ENTRIES`] files
//! are kept: a write past that removes the oldest. Any failure (no home, read-only disk,
//! full disk) only costs the time the cache would have saved.

use std::io::Read as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use runbook_lang::summary::Summary;

/// Most cache files kept; past it, a write removes the oldest down to half.
pub const MAX_ENTRIES: usize = 512;

/// Largest cache file read; a summary is a few KiB.
const MAX_CACHE_FILE_BYTES: u64 = 1 << 20;

pub struct SummaryCache {
    dir: PathBuf,
    /// This binary: its version and the size, mtime and inode of its executable, so a
    /// rebuilt binary (whose checks may differ) never reads an older one's results.
    binary: String,
}

#[derive(Serialize, Deserialize)]
struct Record {
    binary: String,
    sha256: String,
    summary: Summary,
}

impl SummaryCache {
    /// The cache of this binary, or `None` when there is nowhere to keep it.
    pub fn open() -> Option<SummaryCache> {
        let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()).or_else(|| {
            std::env::var_os("HOME").map(PathBuf::from).filter(|p| p.is_absolute()).map(|h| h.join(".cache"))
        })?;
        let exe = std::env::current_exe().ok()?;
        let meta = std::fs::metadata(exe).ok()?;
        let binary = format!(
            "{} {} {}.{} {}",
            env!("CARGO_PKG_VERSION"),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ino()
        );
        Some(SummaryCache { dir: base.join("runbook").join("summaries"), binary })
    }

    fn file(&self, sha256: &str) -> PathBuf {
        let key = Sha256::digest(format!("{}\n{sha256}", self.binary));
        self.dir.join(format!("{}.json", hex::encode(key)))
    }

    /// The summary of a file whose bytes hash to `sha256`, if this binary made one.
    pub fn get(&self, sha256: &str) -> Option<Summary> {
        let mut bytes = Vec::new();
        std::fs::File::open(self.file(sha256)).ok()?.take(MAX_CACHE_FILE_BYTES + 1).read_to_end(&mut bytes).ok()?;
        if bytes.len() as u64 > MAX_CACHE_FILE_BYTES {
            return None;
        }
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        (record.binary == self.binary && record.sha256 == sha256).then_some(record.summary)
    }

    /// Keeps a summary; failures are ignored (the next start-up checks the file again).
    pub fn put(&self, sha256: &str, summary: &Summary) {
        let record = Record { binary: self.binary.clone(), sha256: sha256.to_owned(), summary: summary.clone() };
        let Ok(json) = serde_json::to_vec(&record) else { return };
        if std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir).is_err() {
            return;
        }
        self.trim();
        let target = self.file(sha256);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let temp = self.dir.join(format!(".tmp-{}-{nanos}", std::process::id()));
        if write_new(&temp, &json).and_then(|()| std::fs::rename(&temp, &target)).is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }

    /// Past [`MAX_ENTRIES`] files, removes the oldest down to half of it.
    fn trim(&self) {
        let Ok(read) = std::fs::read_dir(&self.dir) else { return };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = read
            .filter_map(Result::ok)
            .filter_map(|e| {
                let modified = e.metadata().ok()?.modified().ok()?;
                Some((modified, e.path()))
            })
            .collect();
        if files.len() < MAX_ENTRIES {
            return;
        }
        files.sort();
        let excess = files.len() - MAX_ENTRIES / 2;
        for (_, path) in files.into_iter().take(excess) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.flush()
}
