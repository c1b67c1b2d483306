//! `runbook list`: runbooks, procedures, params and environments.

use std::fmt::Write as _;

use crate::library::Listing;

pub fn list(library: &Listing) -> String {
    let mut out = String::new();
    if library.entries.is_empty() {
        let _ = writeln!(out, "no runbooks in {} (set --dir or RUNBOOK_DIR)", library.dir.display());
        return out;
    }
    for entry in &library.entries {
        let path = runbook_lang::source::display_path(&entry.path);
        let Some(runbook) = &entry.summary.runbook else {
            let errors = entry.summary.problems;
            let _ = writeln!(
                out,
                "{}  ({path}: invalid, {errors} problem(s); run `runbook validate {path}`)\n",
                entry.command_name()
            );
            continue;
        };
        let title = runbook.title.as_deref().map(|t| format!(" — {t}")).unwrap_or_default();
        let _ = writeln!(out, "{}{title}  ({path})", runbook.name);
        if !runbook.environments.is_empty() {
            let envs: Vec<String> = runbook
                .environments
                .iter()
                .map(|e| match (e.protected, e.approvals) {
                    (false, 0) => e.name.clone(),
                    (true, 0) => format!("{} (protected)", e.name),
                    (protected, n) => format!(
                        "{} ({}{n} {}approval{} of a saved plan)",
                        e.name,
                        if protected { "protected, " } else { "" },
                        if e.signed { "signed " } else { "" },
                        if n == 1 { "" } else { "s" }
                    ),
                })
                .collect();
            let _ = writeln!(out, "  environments: {}", envs.join(", "));
        }
        for procedure in &runbook.procedures {
            let summary = procedure.summary.as_deref().map(|s| format!(" — {s}")).unwrap_or_default();
            let _ = writeln!(out, "  {}{summary}", procedure.name);
            for param in &procedure.params {
                let required = if param.required { ", required" } else { "" };
                let secret = if param.secret { ", secret" } else { "" };
                let _ = writeln!(out, "      --{} <{}{required}{secret}>", param.flag, param.type_name);
            }
        }
        out.push('\n');
    }
    out
}
