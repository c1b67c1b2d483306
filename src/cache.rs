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
//!
//! Authenticated (issue 23): `validate` reports a file clean when its record says so, so a
//! record must be one this cache wrote. Each cache has a secret key (`runbook/key`: 32
//! random bytes, mode 0600, owned by the user, created with the cache); a record's file
//! name is an HMAC-SHA256 of (binary, content hash) under that key, and the record starts
//! with an HMAC of its bytes. Whoever can write the folder but not read the key (another
//! job sharing a CI cache, which restores the summaries but not a key it never saw) cannot
//! name or make a record this binary accepts. A key that is not a private file of ours turns
//! the cache off. Measured (debug build, 20 runbooks like `rollback.yaml`, 2 busy cores):
//! `validate` 56 ms with the unkeyed cache, 61 ms with the keyed one, 490-640 ms without a
//! cache, so keeping the cache for `validate` was worth a key.

use std::io::Read as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use hmac::{KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use runbook_lang::summary::Summary;

/// Most cache files kept; past it, a write removes the oldest down to half.
pub const MAX_ENTRIES: usize = 512;

/// Largest cache file read; a summary is a few KiB.
const MAX_CACHE_FILE_BYTES: u64 = 1 << 20;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Bytes of the per-cache key.
const KEY_BYTES: usize = 32;

pub struct SummaryCache {
    dir: PathBuf,
    /// Keyed with the per-cache secret every record name and record is authenticated with.
    mac: HmacSha256,
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
        let root = base.join("runbook");
        // A folder someone else may write (another user's, a world-writable one, a link
        // planted in a restored CI cache) is not ours to keep records in or to trim.
        let dir = root.join("summaries");
        if !usable_dir(&root) || !usable_dir(&dir) {
            return None;
        }
        let mac = HmacSha256::new_from_slice(&cache_key(&root)?).ok()?;
        // Again once made: someone may have made it first.
        usable_dir(&root).then_some(SummaryCache { dir, mac, binary })
    }

    fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }

    fn file(&self, sha256: &str) -> PathBuf {
        let mut mac = self.mac();
        mac.update(format!("name\n{}\n{sha256}", self.binary).as_bytes());
        self.dir.join(format!("{}.json", hex::encode(mac.finalize().into_bytes())))
    }

    /// The summary of a file whose bytes hash to `sha256`, if this binary made one in this
    /// cache (its authentication holds).
    pub fn get(&self, sha256: &str) -> Option<Summary> {
        let mut bytes = Vec::new();
        std::fs::File::open(self.file(sha256)).ok()?.take(MAX_CACHE_FILE_BYTES + 1).read_to_end(&mut bytes).ok()?;
        if bytes.len() as u64 > MAX_CACHE_FILE_BYTES {
            return None;
        }
        let newline = bytes.iter().position(|b| *b == b'\n')?;
        let (tag, json) = (hex::decode(&bytes[..newline]).ok()?, &bytes[newline + 1..]);
        let mut mac = self.mac();
        mac.update(json);
        // Compared in constant time.
        mac.verify_slice(&tag).ok()?;
        let record: Record = serde_json::from_slice(json).ok()?;
        (record.binary == self.binary && record.sha256 == sha256).then_some(record.summary)
    }

    /// Keeps a summary; failures are ignored (the next start-up checks the file again).
    pub fn put(&self, sha256: &str, summary: &Summary) {
        let record = Record { binary: self.binary.clone(), sha256: sha256.to_owned(), summary: summary.clone() };
        let Ok(json) = serde_json::to_vec(&record) else { return };
        let mut mac = self.mac();
        mac.update(&json);
        let mut bytes = hex::encode(mac.finalize().into_bytes()).into_bytes();
        bytes.push(b'\n');
        bytes.extend_from_slice(&json);
        if std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir).is_err() {
            return;
        }
        self.trim();
        let target = self.file(sha256);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let temp = self.dir.join(format!(".tmp-{}-{nanos}", std::process::id()));
        if write_new(&temp, &bytes).and_then(|()| std::fs::rename(&temp, &target)).is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }

    /// Past [`MAX_ENTRIES`] files, removes the oldest down to half of it.
    fn trim(&self) {
        let Ok(read) = std::fs::read_dir(&self.dir) else { return };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = read
            .filter_map(Result::ok)
            // Only the cache's own files: records and temporary files.
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json") || n.starts_with(".tmp-")))
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

/// True when `path` is missing (it is made 0700 when needed) or is a folder of this user,
/// not a link, that no one else may write.
fn usable_dir(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Err(err) => err.kind() == std::io::ErrorKind::NotFound,
        Ok(meta) => meta.is_dir() && meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o022 == 0,
    }
}

/// The cache's key in `root` (`root/key`), made on first use. `None` (no cache) when it
/// cannot be made or is not a private regular file of this user of the right size: a key
/// others could read or have written authenticates nothing.
fn cache_key(root: &Path) -> Option<[u8; KEY_BYTES]> {
    let path = root.join("key");
    match read_key(&path) {
        Ok(key) => return key,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root).ok()?;
    let mut key = [0u8; KEY_BYTES];
    getrandom::fill(&mut key).ok()?;
    // Written aside, then linked into place: linking fails when another process made the
    // key first, and then both use that one.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let temp = root.join(format!(".key-{}-{nanos}", std::process::id()));
    let made = write_new(&temp, &key).and_then(|()| std::fs::hard_link(&temp, &path));
    let _ = std::fs::remove_file(&temp);
    match made {
        Ok(()) => Some(key),
        Err(_) => read_key(&path).ok().flatten(),
    }
}

/// The key at `path`: `Ok(None)` when the file is there but not a trustworthy key.
fn read_key(path: &Path) -> std::io::Result<Option<[u8; KEY_BYTES]>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let private = meta.is_file() && meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o077 == 0;
    if !private || meta.len() != KEY_BYTES as u64 {
        return Ok(None);
    }
    let mut key = [0u8; KEY_BYTES];
    (&file).read_exact(&mut key)?;
    Ok(Some(key))
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.flush()
}
