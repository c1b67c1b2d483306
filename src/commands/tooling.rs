//! `runbook docs`, `runbook completions`, `runbook man`: the runbooks in a team's tooling.

use std::path::Path;

use crate::error::Error;
use crate::library::{Library, load_entry};

pub fn docs(library: &Library, target: &str) -> Result<(), Error> {
    let entry = match library.find(target) {
        Some(entry) => entry,
        None if Path::new(target).is_file() => &load_entry(Path::new(target)),
        None => {
            let names: Vec<String> = library.entries.iter().map(crate::library::Entry::command_name).collect();
            return Err(Error::Usage(format!(
                "no runbook `{target}` in {} and no such file (runbooks: {})",
                library.dir.display(),
                if names.is_empty() { "none".into() } else { names.join(", ") }
            )));
        }
    };
    let runbook = crate::library::checked_runbook(entry)?;
    crate::output::print(&(runbook_lang::docs::markdown(&runbook) + "\n"));
    Ok(())
}

pub fn completions(mut command: clap::Command, shell: clap_complete::Shell) {
    let mut buffer = Vec::new();
    clap_complete::generate(shell, &mut command, "runbook", &mut buffer);
    crate::output::print(&String::from_utf8_lossy(&buffer));
}

pub fn man(command: clap::Command, dir: Option<&Path>) -> Result<(), Error> {
    let Some(dir) = dir else {
        let mut buffer = Vec::new();
        clap_mangen::Man::new(command).render(&mut buffer).map_err(|e| Error::Io(e.to_string()))?;
        crate::output::print(&String::from_utf8_lossy(&buffer));
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
    clap_mangen::generate_to(command, dir).map_err(|e| Error::Io(format!("cannot write man pages: {e}")))?;
    eprintln!("man pages written to {}", dir.display());
    Ok(())
}
