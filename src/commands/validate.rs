//! `runbook validate`: check files and report every problem at once.

use std::path::{Path, PathBuf};

use crate::cli::ValidateFormat;
use crate::error::{Error, exit};
use crate::library::{file_diagnostics, folder_diagnostics, runbook_files};
use runbook_lang::diagnostic::{Diagnostic, Severity, render_all};

pub fn validate(
    paths: &[PathBuf],
    default_dir: &Path,
    format: Option<ValidateFormat>,
    strict: bool,
    color: bool,
) -> Result<(), Error> {
    let format = format.unwrap_or(if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        ValidateFormat::Github
    } else {
        ValidateFormat::Human
    });
    let mut files = Vec::new();
    let targets: Vec<PathBuf> = if paths.is_empty() { vec![default_dir.to_path_buf()] } else { paths.to_vec() };
    for target in &targets {
        if target.is_dir() {
            let found = runbook_files(target);
            if found.is_empty() {
                return Err(Error::Usage(format!("no runbook files (*.yaml, *.yml) in {}", target.display())));
            }
            files.push((target.clone(), true));
        } else if target.is_file() {
            files.push((target.clone(), false));
        } else if target.exists() {
            return Err(Error::Usage(format!("{}: not a runbook file or folder", target.display())));
        } else {
            return Err(Error::Usage(format!(
                "{}: {}",
                target.display(),
                unusable_path_reason(target, "no such file or folder")
            )));
        }
    }
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    let mut checked = 0;
    for (target, is_dir) in files {
        if is_dir {
            let files = folder_diagnostics(&target);
            checked += files.len();
            diagnostics.extend(files.into_iter().flatten());
        } else {
            checked += 1;
            diagnostics.extend(file_diagnostics(&target));
        }
    }
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = diagnostics.len() - errors;
    match format {
        ValidateFormat::Human => {
            eprint!("{}", render_all(&diagnostics, color));
            if errors + warnings == 0 {
                crate::output::print(&format!(
                    "{checked} runbook file{} checked: no problems\n",
                    if checked == 1 { "" } else { "s" }
                ));
            } else {
                eprintln!("{checked} runbook file(s) checked: {errors} error(s), {warnings} warning(s)");
            }
        }
        ValidateFormat::Json => crate::output::print(&(runbook_lang::diagnostic::to_json(&diagnostics) + "\n")),
        ValidateFormat::Github => {
            let lines: String =
                diagnostics.iter().map(|d| runbook_lang::diagnostic::github_annotation(d) + "\n").collect();
            crate::output::print(&lines);
        }
    }
    if errors > 0 || (strict && warnings > 0) { Err(Error::Reported(exit::STEP_FAILED)) } else { Ok(()) }
}

/// Why `path` is neither a file nor a folder we can use: `missing` only when it is really
/// absent; a symlink loop or an unreadable parent says so (the OS error).
pub(crate) fn unusable_path_reason(path: &std::path::Path, missing: &str) -> String {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => "a folder, not a runbook file".to_owned(),
        Ok(_) => "not a runbook file or folder".to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.to_owned(),
        Err(e) => format!("cannot be used: {e}"),
    }
}
