//! `runbook lock status [RUNBOOK] [--env ENV]` and `runbook lock break RUNBOOK --env ENV
//! --reason TEXT`: the run locks, local or shared.

use std::fmt::Write as _;
use std::io::IsTerminal;

use crate::cli::{LockCommand, OutputFormat};
use crate::error::Error;
use runbook_engine::session::Settings;
use runbook_lang::diagnostic::clip;
use runbook_state::store::{Broken, LockName, shown};

pub fn lock(settings: &Settings, command: LockCommand) -> Result<(), Error> {
    match command {
        LockCommand::Status { runbook, env, format } => status(settings, runbook.as_deref(), env.as_deref(), format),
        LockCommand::Break { runbook, env, reason, confirm } => {
            breaks(settings, LockName { runbook, environment: env }, &reason, confirm.as_deref())
        }
    }
}

fn status(settings: &Settings, runbook: Option<&str>, env: Option<&str>, format: OutputFormat) -> Result<(), Error> {
    let store = settings.store()?;
    let (locks, unreadable): (Vec<_>, Vec<_>) =
        store.status(runbook, env).map_err(Error::Io)?.into_iter().partition(|l| l.unreadable.is_none());
    // Junk under `locks/` is named once and skipped; every readable lock is still listed.
    for lock in &unreadable {
        let Some(junk) = &lock.unreadable else { continue };
        eprintln!("warning: skipped an object that is not a run lock: {}", junk.why);
        if junk.in_a_locks_place {
            eprintln!(
                "         it blocks `{}`: free it with `runbook lock break {}`",
                shown(clip, &lock.name.display()),
                break_args(&lock.name)
            );
        } else {
            eprintln!("         it blocks no lock");
        }
    }
    if format == OutputFormat::Json {
        let list: Vec<serde_json::Value> = locks
            .iter()
            .map(|l| {
                serde_json::json!({
                    "lock": l.name.display(), "runbook": l.name.runbook, "environment": l.name.environment,
                    "held": l.holder.is_some(), "holder": l.holder, "renewed_ago_seconds": l.renewed_ago,
                    "lease_seconds": l.lease,
                })
            })
            .collect();
        let json = serde_json::to_string_pretty(&list).map_err(|e| Error::Io(e.to_string()))?;
        crate::output::print(&(json + "\n"));
        return Ok(());
    }
    let mut out = String::new();
    for lock in &locks {
        let name = shown(clip, &lock.name.display());
        match &lock.holder {
            None => {
                let _ = writeln!(out, "{name:<28} free");
            }
            Some(holder) => {
                let lease = match (lock.renewed_ago, lock.lease) {
                    (Some(ago), Some(lease)) if ago > i64::try_from(lease).unwrap_or(i64::MAX) => {
                        format!("; lease expired {}s ago (can be taken over)", ago - i64::try_from(lease).unwrap_or(0))
                    }
                    (Some(ago), Some(lease)) => format!("; renewed {ago}s ago, lease {lease}s"),
                    _ => String::new(),
                };
                let _ = writeln!(out, "{name:<28} held: {}{lease}", holder.describe(clip));
            }
        }
    }
    if locks.is_empty() {
        let _ = writeln!(out, "no run locks in {}", shown(clip, &store.location()));
    }
    crate::output::print(&out);
    Ok(())
}

fn breaks(settings: &Settings, name: LockName, reason: &str, confirm: Option<&str>) -> Result<(), Error> {
    if reason.trim().is_empty() {
        return Err(Error::Usage("--reason must say why the lock is broken".into()));
    }
    // A lock is named after a runbook (and environment): refuse what cannot be one before
    // echoing it back, so an escape sequence in the argument never reaches the terminal raw.
    for part in std::iter::once(&name.runbook).chain(name.environment.as_ref()) {
        if part.is_empty() || part.chars().any(|c| c.is_control() || c == '/' || c == '\\') || part.contains("..") {
            return Err(Error::Usage(format!(
                "`{}` is not a runbook or environment name (see `runbook lock status`)",
                shown(clip, part)
            )));
        }
    }
    let expected = name.display();
    let store = settings.store()?;
    if let Some(warning) = holder_alive(&*store, &name) {
        eprintln!("warning: {warning}");
    }
    // Like a destructive step: the operator types the lock's name; `--yes` never stands in.
    let confirmed = match confirm {
        Some(typed) => typed == expected,
        None if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() => {
            eprintln!("Breaking the lock lets another run start while `{expected}` may still be running.");
            let typed: String = dialoguer::Input::new()
                .with_prompt(format!("Type `{expected}` to break its lock"))
                .allow_empty(true)
                .interact_text()
                .map_err(|e| Error::Usage(format!("cannot ask for confirmation: {e}")))?;
            typed.trim() == expected
        }
        None => {
            return Err(Error::Usage(format!(
                "breaking a lock needs typed confirmation and there is no terminal: pass --confirm {expected}"
            )));
        }
    };
    if !confirmed {
        eprintln!("The lock of `{expected}` was not broken: the name typed did not match.");
        return Err(Error::Reported(runbook_state::exit::ABORTED));
    }
    let by = runbook_state::identity::Identity::current().display();
    let broken =
        store.break_lock(&name, &by, reason).map_err(|err| Error::Usage(with_rehearsal_hint(&*store, &name, err)))?;
    let ts = chrono::Utc::now().to_rfc3339();
    match broken {
        Broken::Held(holder) => {
            // Journaled in the run that held it, so its story says who broke its lock and why.
            let event = serde_json::json!({"event": "lock_broken", "lock": expected, "by": by, "reason": reason, "holder": holder});
            let line = serde_json::to_string(&runbook_state::journal::Record::Event { ts, event })
                .map_err(|e| Error::Io(e.to_string()))?;
            let journaled = store.put_note(&holder.run_id, "lock_broken", &line);
            eprintln!("Broke the lock of `{expected}` held by {}.", holder.describe(clip));
            if let Err(err) = journaled {
                eprintln!("warning: the break is not in run {}'s journal: {err}", shown(clip, &holder.run_id));
            }
        }
        Broken::Unreadable(why) => {
            // No run to journal it in: a note of its own in the store says who, why and what.
            let event = serde_json::json!({"event": "lock_broken", "lock": expected, "by": by, "reason": reason, "holder": null, "unreadable": why});
            let line = serde_json::to_string(&runbook_state::journal::Record::Event { ts, event })
                .map_err(|e| Error::Io(e.to_string()))?;
            eprintln!("Freed the lock of `{expected}`, whose object was not a lock: {why}.");
            match store.put_lock_note(&name, "lock_broken", &line) {
                Ok(at) => eprintln!("The break is recorded in {}.", shown(clip, &at)),
                Err(err) => eprintln!("warning: the break is not recorded: {err}"),
            }
        }
    }
    Ok(())
}

/// `demo --env staging --reason …`, as `lock break` takes a lock's name.
fn break_args(name: &LockName) -> String {
    let env = name.environment.as_deref().map(|e| format!(" --env {}", shown(clip, e))).unwrap_or_default();
    format!("{}{env} --reason …", shown(clip, &name.runbook))
}

/// Why the lock's holder looks alive, if it does: a shared lease renewed within its lease (the
/// holder renews every third of it), or a local holder whose process still runs on this
/// machine. Breaking such a lock lets a second run start beside a live one.
fn holder_alive(store: &dyn runbook_state::store::Store, name: &LockName) -> Option<String> {
    let locks = store.status(Some(&name.runbook), name.environment.as_deref()).ok()?;
    let lock = locks.iter().find(|l| l.name.key() == name.key())?;
    let holder = lock.holder.as_ref()?;
    let who = holder.describe(clip);
    let ago = lock.renewed_ago.and_then(|a| u64::try_from(a).ok());
    match (ago, lock.lease) {
        (Some(ago), Some(lease)) if ago < lease => Some(format!(
            "its holder, {who}, renewed the lease {ago}s ago (lease {lease}s): that run is most likely still going. \
             Breaking it lets a second run start beside it; unless that machine is gone, wait {}s for the lease \
             to run out, or ask them",
            lease - ago
        )),
        (_, None) if holder.host == runbook_state::identity::Identity::current().host && pid_alive(holder.pid) => {
            Some(format!("its holder, {who}, is a process still running on this machine"))
        }
        _ => None,
    }
}

/// Whether a process with this id exists (signal 0 checks without signalling).
fn pid_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

/// A lock that is not held, when the rehearsal lock of the same runbook and environment is:
/// the operator most likely meant that one (`lock status` lists it as `NAME.rehearsal/ENV`).
fn with_rehearsal_hint(store: &dyn runbook_state::store::Store, name: &LockName, err: String) -> String {
    if name.runbook.ends_with(".rehearsal") {
        return err;
    }
    let rehearsal = LockName { runbook: format!("{}.rehearsal", name.runbook), environment: name.environment.clone() };
    let held = store
        .status(Some(&name.runbook), name.environment.as_deref())
        .ok()
        .is_some_and(|locks| locks.iter().any(|l| l.name.key() == rehearsal.key() && l.holder.is_some()));
    if !held {
        return err;
    }
    let env = name.environment.as_deref().map(|e| format!(" --env {e}")).unwrap_or_default();
    format!(
        "{err}; the rehearsal lock `{}` is held — to break that one: runbook lock break {}{env}",
        rehearsal.display(),
        rehearsal.runbook
    )
}
