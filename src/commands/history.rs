//! `runbook history`: every run, newest first, with the one status `show` gives.

use std::fmt::Write as _;

use crate::cli::OutputFormat;
use crate::error::Error;
use runbook_engine::session::Settings;
use runbook_lang::diagnostic::clip;
use runbook_state::journal::Summary;
use runbook_state::store::shown;

/// `rehearsals`: `Some(true)` lists only rehearsals, `Some(false)` only real runs;
/// `break_glass` only runs that broke glass.
pub fn history(
    settings: &Settings,
    format: OutputFormat,
    rehearsals: Option<bool>,
    break_glass: bool,
) -> Result<(), Error> {
    let store = settings.store()?;
    let mut summaries: Vec<Summary> = Vec::new();
    let running = runbook_state::store::running(store.as_ref());
    for (id, recorded) in store.history().map_err(Error::Io)? {
        match recorded {
            Ok(recorded) => {
                super::runs::warn_skipped(&id, &recorded);
                summaries.extend(recorded.summary(&id, running.contains(&id)));
            }
            // The store shows what it read escaped; the message itself is ours.
            Err(err) => eprintln!("warning: {err}"),
        }
    }
    if break_glass {
        summaries.retain(|s| s.break_glass.is_some());
    }
    summaries.retain(|s| rehearsals.is_none_or(|wanted| s.rehearsal == wanted));
    // Newest first by the time the run started (journals record milliseconds), then by id:
    // ids of older versions carry whole seconds only.
    let started = |s: &Summary| chrono::DateTime::parse_from_rfc3339(&s.started).ok();
    summaries.sort_by(|a, b| started(b).cmp(&started(a)).then_with(|| b.id.cmp(&a.id)));
    match format {
        OutputFormat::Json => {
            let json = serde_json::to_string_pretty(&summaries).map_err(|e| Error::Io(e.to_string()))?;
            crate::output::print(&(json + "\n"));
        }
        OutputFormat::Human => {
            if summaries.is_empty() {
                crate::output::print(&format!("no runs recorded in {}\n", store.location()));
                return Ok(());
            }
            let mut out = format!(
                "{:<28} {:<12} {:<16} {:<11} {:<9} {:<24} {:<20} {:<14} {}\n",
                "RUN", "RUNBOOK", "PROCEDURE", "ENV", "KIND", "USER", "STARTED", "STATUS", "RECOVERY"
            );
            for s in &summaries {
                // Every column but the status and the recovery came from the journal, which
                // anyone with write access to the store may have written.
                let _ = writeln!(
                    out,
                    "{:<28} {:<12} {:<16} {:<11} {:<9} {:<24} {:<20} {:<14} {}",
                    shown(clip, &s.id),
                    shown(clip, &s.runbook),
                    shown(clip, &s.procedure),
                    shown(clip, s.environment.as_deref().unwrap_or("-")),
                    if s.rehearsal { "rehearsal" } else { "real" },
                    shown(clip, &s.identity),
                    clip(s.started.get(..19).unwrap_or(&s.started)),
                    s.status,
                    recovery_column(s)
                );
                if let Some(reason) = &s.break_glass {
                    let _ = writeln!(out, "{:<24} BREAK GLASS: {}", "", shown(clip, reason));
                }
            }
            crate::output::print(&out);
        }
    }
    Ok(())
}

/// `history`'s time to recovery: the time, `not recovered`, or `-` (no recovery step).
fn recovery_column(summary: &Summary) -> String {
    match summary.time_to_recovery_s {
        Some(seconds) => {
            let whole = std::time::Duration::from_secs_f64(seconds.max(0.0).round());
            humantime::format_duration(whole).to_string()
        }
        None if summary.recovery == "not recovered" => "not recovered".to_owned(),
        None => "-".to_owned(),
    }
}
