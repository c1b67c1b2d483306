//! The checked runbook: what execution and dry-run work from. Nothing here is raw YAML;
//! every value has been type-checked and every template reference resolved.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Serialize;

use crate::param::Param;
use crate::source::SourceRef;
use crate::step::Step;

#[derive(Debug, Serialize)]
pub struct Runbook {
    pub name: String,
    /// One line; optional prose (docs and help fall back to the name).
    pub title: Option<String>,
    pub description: Option<String>,
    pub notes: Option<String>,
    pub environments: IndexMap<String, Environment>,
    pub params: IndexMap<String, Param>,
    pub procedures: IndexMap<String, Procedure>,
    #[serde(skip)]
    pub source: SourceRef,
    /// sha256 of the file's bytes, recorded in the journal; resume refuses if it changed.
    pub sha256: String,
}

pub type RunbookRef = Arc<Runbook>;

#[derive(Debug, Serialize)]
pub struct Environment {
    pub name: String,
    pub protected: bool,
    /// Approvals a saved plan needs before `apply` runs it; a direct run needs `--break-glass`.
    pub approvals: u32,
    /// `approvals: {count: N, signers: FILE}`: approvals must be SSH signatures by keys the
    /// allowed-signers file lists (the path as resolved beside the runbook file).
    pub signers: Option<std::path::PathBuf>,
    pub description: Option<String>,
    pub vars: IndexMap<String, String>,
    /// `rehearsal:`: vars replaced in a rehearsal, each by a path on the local fake (`/app`).
    pub rehearsal: IndexMap<String, String>,
    /// `notify:`: webhooks that hear of the run (see [`crate::notify`]).
    pub notify: Vec<crate::notify::Notify>,
    /// `rehearsal: {notify: true}`: rehearsals notify too, each message marked `[REHEARSAL]`.
    pub rehearsal_notify: bool,
}

#[derive(Debug, Serialize)]
pub struct Procedure {
    pub name: String,
    /// One line; optional prose (docs and help fall back to the name).
    pub summary: Option<String>,
    pub description: Option<String>,
    /// Params it declares itself.
    pub params: Vec<String>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Serialize)]
pub struct Stage {
    pub name: String,
    pub description: Option<String>,
    pub steps: Vec<Step>,
}

impl Runbook {
    /// Params a procedure needs: its own, then those of the procedures it includes (and
    /// their `on_failure` procedures), in first-seen order.
    pub fn params_of(&self, procedure: &str) -> Vec<&Param> {
        let mut names: Vec<&str> = Vec::new();
        let mut seen_procs: Vec<&str> = Vec::new();
        self.collect_params(procedure, &mut names, &mut seen_procs);
        names.iter().filter_map(|n| self.params.get(*n)).collect()
    }

    fn collect_params<'a>(&'a self, procedure: &'a str, names: &mut Vec<&'a str>, seen: &mut Vec<&'a str>) {
        if seen.contains(&procedure) {
            return;
        }
        seen.push(procedure);
        let Some(proc) = self.procedures.get(procedure) else { return };
        for name in &proc.params {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        for step in proc.stages.iter().flat_map(|s| &s.steps) {
            for other in step.procedures_used() {
                self.collect_params(other, names, seen);
            }
        }
    }

    /// Whether any step that can run for this procedure mutates.
    pub fn mutates(&self, procedure: &str) -> bool {
        self.steps_of(procedure).iter().any(|step| step.mutates())
    }

    /// Every step that can run for this procedure, in order: its own, each followed by those
    /// of the procedures it includes (and their `on_failure` procedures), each procedure once.
    pub fn steps_of<'a>(&'a self, procedure: &'a str) -> Vec<&'a Step> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        self.collect_steps(procedure, &mut seen, &mut out);
        out
    }

    fn collect_steps<'a>(&'a self, procedure: &'a str, seen: &mut Vec<&'a str>, out: &mut Vec<&'a Step>) {
        if seen.contains(&procedure) {
            return;
        }
        seen.push(procedure);
        let Some(proc) = self.procedures.get(procedure) else { return };
        for step in proc.stages.iter().flat_map(|s| &s.steps) {
            out.push(step);
            for other in step.procedures_used() {
                self.collect_steps(other, seen, out);
            }
        }
    }
}
