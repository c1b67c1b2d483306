//! The runbook folder: every `*.yaml` file in it, checked.

use std::path::{Path, PathBuf};

use crate::checker::{Checked, check_file};
use crate::diagnostic::{Code, Diagnostic};
use crate::source::{Source, Span};

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
        self.checked
            .name
            .clone()
            .unwrap_or_else(|| self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
    }
}

impl Library {
    /// Reads the folder; a missing folder is an empty library (`list` says so).
    pub fn load(dir: &Path) -> Library {
        let entries = load_entries(&runbook_files(dir));
        let mut library = Library { dir: dir.to_path_buf(), entries };
        library.check_unique_names();
        library
    }

    /// No runbooks: for commands that never look at the folder's (start-up time).
    pub fn empty(dir: &Path) -> Library {
        Library { dir: dir.to_path_buf(), entries: Vec::new() }
    }

    /// The runbook a command name runs; never one named like a built-in (that name is an
    /// error in its file, and the built-in wins).
    pub fn find(&self, name: &str) -> Option<&Entry> {
        if crate::checker::builtins().iter().any(|b| b == name) {
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
                    .map(|&i| crate::source::display_path(&self.entries[i].path))
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

pub fn load_entry(path: &Path) -> Entry {
    let checked = match check_file(path) {
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
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).min(paths.len());
    if threads <= 1 {
        return paths.iter().map(|p| load_entry(p)).collect();
    }
    let per_thread = paths.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = paths
            .chunks(per_thread)
            .map(|part| scope.spawn(move || part.iter().map(|p| load_entry(p)).collect::<Vec<Entry>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// `*.yaml` and `*.yml` files of a folder, sorted by name.
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
