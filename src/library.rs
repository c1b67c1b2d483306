//! The runbook folder: every `*.yaml` file in it, checked.

use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::cache::SummaryCache;
use runbook_lang::checker::{Checked, check_file, check_read, read_file};
use runbook_lang::diagnostic::{Code, Diagnostic};
use runbook_lang::source::{Source, Span};
use runbook_lang::summary::Summary;

pub struct Library {
    pub dir: PathBuf,
    pub entries: Vec<Entry>,
}

pub struct Entry {
    pub path: PathBuf,
    pub checked: Checked,
}

impl Entry {
    /// The subcommand name: the `runbook:` key, or the file name when the file is broken.
    pub fn command_name(&self) -> String {
        command_name(self.checked.name.as_deref(), &self.path)
    }
}

fn command_name(name: Option<&str>, path: &Path) -> String {
    name.map(str::to_owned)
        .unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
}

impl Library {
    /// Reads the folder; a missing folder is an empty library (`list` says so).
    pub fn load(dir: &Path) -> Library {
        let entries = load_entries(&runbook_files(dir));
        let mut library = Library { dir: dir.to_path_buf(), entries };
        library.check_unique_names();
        library
    }

    /// The runbook a command name runs; never one named like a built-in (that name is an
    /// error in its file, and the built-in wins).
    pub fn find(&self, name: &str) -> Option<&Entry> {
        if runbook_lang::checker::builtins().contains(&name) {
            return None;
        }
        self.entries.iter().find(|e| e.command_name() == name)
    }

    /// Two files claiming the same command name: both are errors, each naming the other,
    /// so running that name refuses (exit 2) instead of silently picking one.
    fn check_unique_names(&mut self) {
        let mut by_name: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
        for (index, entry) in self.entries.iter().enumerate() {
            by_name.entry(entry.command_name()).or_default().push(index);
        }
        for (name, indices) in by_name {
            if indices.len() < 2 {
                continue;
            }
            for &index in &indices {
                let others: Vec<String> = indices
                    .iter()
                    .filter(|&&i| i != index)
                    .map(|&i| runbook_lang::source::display_path(&self.entries[i].path))
                    .collect();
                let entry = &mut self.entries[index];
                let source = entry.checked.source.clone();
                let span = name_span(&source.text);
                let diagnostic = Diagnostic::error(
                    Code::Duplicate,
                    &source,
                    span,
                    format!("runbook name `{name}` is also used by {}", others.join(", ")),
                )
                .help("each runbook in a folder needs its own name");
                entry.checked.diagnostics.push(diagnostic);
                entry.checked.runbook = None;
            }
        }
    }
}

fn name_span(text: &str) -> Span {
    text.find("runbook:").map_or_else(Span::default, |i| Span::new(i, i + "runbook".len()))
}

/// The entry's checked runbook, or the error that names every problem in it.
pub fn checked_runbook(entry: &Entry) -> Result<runbook_lang::model::RunbookRef, crate::error::Error> {
    // Rule 1: nothing runs unless the whole runbook checks out.
    entry.checked.runbook.clone().ok_or_else(|| {
        let diagnostics = entry.checked.diagnostics.clone();
        crate::error::Error::Invalid {
            path: entry.checked.source.display_path(),
            count: diagnostics.iter().filter(|d| d.severity == runbook_lang::diagnostic::Severity::Error).count(),
            diagnostics,
        }
    })
}

pub fn load_entry(path: &Path) -> Entry {
    entry_from(path, check_file(path))
}

/// The entry of a file whose check gave `result`; a file that cannot be read is an error
/// in it (a symbolic link says where it leads).
fn entry_from(path: &Path, result: Result<Checked, std::io::Error>) -> Entry {
    let checked = match result {
        Ok(checked) => checked,
        Err(err) => {
            let source = Source::new(path, String::new());
            let link = std::fs::read_link(path).ok().map(|target| match err.raw_os_error() {
                Some(40) => format!(" (a symbolic link to {} that loops)", target.display()),
                _ => format!(" (a symbolic link to {})", target.display()),
            });
            let diagnostic = Diagnostic::error(
                Code::Syntax,
                &source,
                Span::default(),
                format!("cannot read the file{}: {err}", link.unwrap_or_default()),
            );
            Checked { source, runbook: None, name: None, diagnostics: vec![diagnostic] }
        }
    };
    Entry { path: path.to_path_buf(), checked }
}

/// Checks the files, in their order, on every core: each file's check is independent.
fn load_entries(paths: &[PathBuf]) -> Vec<Entry> {
    parallel_map(paths, |p| load_entry(p))
}

/// `f` of every item, in their order, spread over the cores (no thread for one item).
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).min(items.len());
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let parts: Vec<_> =
            items.chunks(per_thread).map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>())).collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// `*.yaml` and `*.yml` files of a folder, sorted by name. A symbolic link that leads
/// nowhere (dangling, or a loop) is listed too: reading it reports the problem, where
/// skipping it would validate a folder as "no problems" with a runbook missing.
pub fn runbook_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| p.is_file() || (p.is_symlink() && std::fs::metadata(p).is_err()))
        .collect();
    files.sort();
    files
}

/// The runbook folder as start-up sees it: every file's [`Summary`], from the cache when
/// this binary already checked the same bytes, else from a full check (then cached). It
/// builds the command line and `list`; running a procedure fully checks that runbook again
/// ([`Listing::entry`]), and `validate` never uses it.
pub struct Listing {
    pub dir: PathBuf,
    pub entries: Vec<Listed>,
}

pub struct Listed {
    pub path: PathBuf,
    pub summary: Summary,
    /// Another file of the folder claims the same name (both are invalid).
    pub duplicate: bool,
}

impl Listed {
    /// The subcommand name: the `runbook:` key, or the file name when the file is broken.
    pub fn command_name(&self) -> String {
        command_name(self.summary.name.as_deref(), &self.path)
    }
}

impl Listing {
    pub fn load(dir: &Path) -> Listing {
        let paths = runbook_files(dir);
        let summaries = load_with_cache(&paths, Some, |summary, _| summary);
        let mut entries: Vec<Listed> = paths
            .into_iter()
            .zip(summaries)
            .map(|(path, summary)| Listed { path, summary, duplicate: false })
            .collect();
        let names: Vec<String> = entries.iter().map(Listed::command_name).collect();
        for (index, entry) in entries.iter_mut().enumerate() {
            if names.iter().enumerate().any(|(other, name)| other != index && *name == names[index]) {
                // As [`Library::load`] reports it: one more problem, and nothing to run.
                entry.duplicate = true;
                entry.summary.runbook = None;
                entry.summary.problems += 1;
            }
        }
        Listing { dir: dir.to_path_buf(), entries }
    }

    /// No runbooks: for commands that never look at the folder's (start-up time).
    pub fn empty(dir: &Path) -> Listing {
        Listing { dir: dir.to_path_buf(), entries: Vec::new() }
    }

    /// The runbook a command name runs (never one named like a built-in).
    pub fn find(&self, name: &str) -> Option<&Listed> {
        if runbook_lang::checker::builtins().contains(&name) {
            return None;
        }
        self.entries.iter().find(|e| e.command_name() == name)
    }

    /// The runbook of `listed`, fully checked now from the file as it is now; a name
    /// several files claim gets the error [`Library::load`] gives it.
    pub fn entry(&self, listed: &Listed) -> Entry {
        if !listed.duplicate {
            return load_entry(&listed.path);
        }
        let name = listed.command_name();
        let paths: Vec<PathBuf> =
            self.entries.iter().filter(|e| e.command_name() == name).map(|e| e.path.clone()).collect();
        let mut library = Library { dir: self.dir.clone(), entries: load_entries(&paths) };
        library.check_unique_names();
        let index = library.entries.iter().position(|e| e.path == listed.path).unwrap_or(0);
        library.entries.swap_remove(index)
    }
}

/// What the cache gave for a file: a result, or the bytes to check.
enum Loaded<R> {
    Hit(R),
    Miss(Vec<u8>, String),
    Unreadable,
}

/// For each file, in order: `hit` of its cached summary when it gives a result, else
/// `fresh` of a full check of the bytes read now (its summary is cached). Only files not
/// answered from the cache are checked, on every core.
fn load_with_cache<R: Send + Sync>(
    paths: &[PathBuf],
    hit: impl Fn(Summary) -> Option<R>,
    fresh: impl Fn(Summary, Checked) -> R + Sync,
) -> Vec<R> {
    let cache = SummaryCache::open();
    let loaded: Vec<Loaded<R>> = paths
        .iter()
        .map(|path| match read_file(path) {
            Err(_) => Loaded::Unreadable,
            Ok(bytes) => {
                let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
                match cache.as_ref().and_then(|c| c.get(&sha256)).and_then(&hit) {
                    Some(result) => Loaded::Hit(result),
                    None => Loaded::Miss(bytes, sha256),
                }
            }
        })
        .collect();
    let misses: Vec<usize> = (0..paths.len()).filter(|&i| !matches!(loaded[i], Loaded::Hit(_))).collect();
    let mut checked = parallel_map(&misses, |&i| {
        let (checked, sha256) = match &loaded[i] {
            Loaded::Miss(bytes, sha256) => (check_read(&paths[i], bytes), Some(sha256)),
            // Read again for the error in its own words (a looping link, a missing file).
            Loaded::Unreadable | Loaded::Hit(_) => (load_entry(&paths[i]).checked, None),
        };
        let summary = Summary::of(&checked);
        if let (Some(cache), Some(sha256)) = (&cache, sha256) {
            cache.put(sha256, &summary);
        }
        fresh(summary, checked)
    })
    .into_iter();
    loaded
        .into_iter()
        .filter_map(|l| match l {
            Loaded::Hit(result) => Some(result),
            Loaded::Miss(..) | Loaded::Unreadable => checked.next(),
        })
        .collect()
}

/// `validate` of a folder: every file's diagnostics, in file order. A file this binary
/// already checked clean with the same bytes (per the cache) has none and is not checked
/// again; every other file is checked in full. Names claimed twice need every file's
/// text: then the whole folder is checked as [`Library::load`] does.
pub fn folder_diagnostics(dir: &Path) -> Vec<Vec<Diagnostic>> {
    let paths = runbook_files(dir);
    let results = load_with_cache(
        &paths,
        |summary| (summary.problems == 0 && summary.runbook.is_some()).then_some((summary.name, Vec::new())),
        |_, checked| (checked.name, checked.diagnostics),
    );
    let names: Vec<String> =
        results.iter().zip(&paths).map(|((name, _), path)| command_name(name.as_deref(), path)).collect();
    let unique: std::collections::HashSet<&String> = names.iter().collect();
    if unique.len() < names.len() {
        return Library::load(dir).entries.into_iter().map(|e| e.checked.diagnostics).collect();
    }
    results.into_iter().map(|(_, diagnostics)| diagnostics).collect()
}

/// `validate` of one file: as [`folder_diagnostics`], for a file named on its own.
pub fn file_diagnostics(path: &Path) -> Vec<Diagnostic> {
    let paths = [path.to_path_buf()];
    let hit = |summary: Summary| (summary.problems == 0 && summary.runbook.is_some()).then(Vec::new);
    load_with_cache(&paths, hit, |_, checked| checked.diagnostics).into_iter().flatten().collect()
}
