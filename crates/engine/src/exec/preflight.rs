//! Before anything runs: a run that would need an answer it cannot get is refused.

use crate::plan::Plan;
use runbook_lang::step::{Step, StepKind};

use super::Runner;

impl Runner<'_> {
    /// Refuses, before anything runs, a run that would need an answer it cannot get.
    pub fn preflight(&self) -> Result<(), String> {
        let plan = self.plan;
        let runbook = &plan.runbook;
        let what = format!("`{} {}`", runbook.name, plan.procedure);
        self.preflight_confirmations(&what)?;
        self.preflight_programs()?;
        if self.options.interactive {
            return Ok(());
        }
        if !plan.missing_secrets.is_empty() {
            let names: Vec<String> = plan
                .missing_secrets
                .iter()
                .map(|n| {
                    format!("--{} (or {})", runbook_lang::param::flag_name(n), runbook_lang::param::secret_env_name(n))
                })
                .collect();
            return Err(format!("{what} needs the secret {} and there is no terminal to ask for it", names.join(", ")));
        }
        if self.options.yes {
            let unanswered: Vec<String> = steps_of(plan)
                .into_iter()
                .filter(|s| {
                    matches!(&s.kind, StepKind::Prompt(p) if p.default.is_none()) && !plan.answers.contains_key(&s.id)
                })
                .map(|s| format!("--answer {}=VALUE", s.id))
                .collect();
            if !unanswered.is_empty() {
                return Err(format!("{what} asks questions and there is no terminal: give {}", unanswered.join(" ")));
            }
            return Ok(());
        }
        if runbook.mutates(&plan.procedure) {
            return Err(format!(
                "refusing to run {what} without a terminal: it changes things and nobody can confirm the stages; run it from a terminal, or pass --yes (and --answer for prompts) to confirm ahead"
            ));
        }
        if plan.environment().is_some_and(|e| e.protected) {
            return Err(format!(
                "{what} targets a protected environment and there is no terminal to confirm it; pass --yes"
            ));
        }
        let unanswered: Vec<String> = steps_of(plan)
            .into_iter()
            .filter(|s| {
                matches!(s.kind, StepKind::Prompt(_) | StepKind::Manual(_)) && !plan.answers.contains_key(&s.id)
            })
            .map(|s| s.id.clone())
            .collect();
        if !unanswered.is_empty() {
            return Err(format!(
                "{what} needs answers and there is no terminal: give --answer ID=VALUE (or --yes for manual steps) for {}",
                unanswered.join(", ")
            ));
        }
        Ok(())
    }

    /// A program a later step runs by a relative path (`./scripts/smoke.sh`) is there and
    /// executable now, before the first change — not found missing after the rollback.
    fn preflight_programs(&self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt as _;
        for step in steps_of(self.plan) {
            let StepKind::Run(run) = &step.kind else { continue };
            if run.process.cwd.is_some() || self.completed.contains_key(&step.id) {
                continue;
            }
            let Some(program) = run.argv.first().map(|a| a.text.as_str()) else { continue };
            if program.contains("{{") || !program.contains('/') || program.starts_with('/') {
                continue;
            }
            let path = self.options.base_dir.join(program);
            let runnable = std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if !runnable {
                return Err(format!(
                    "step `{}` runs `{program}`, which is not an executable file in {}: run runbook from the folder that holds it (the application checkout) or fix the path; nothing was run",
                    step.id,
                    self.options.base_dir.display()
                ));
            }
        }
        Ok(())
    }

    /// A protected environment's name typed ahead must be right, and without a terminal it
    /// must be there (`what` names the run or the undo in the refusal).
    pub(super) fn protected_env_typed_ahead(&self, what: &str) -> Result<(), String> {
        let Some(env) = self.plan.environment().filter(|e| e.protected) else { return Ok(()) };
        match &self.options.confirmations.env {
            Some(name) if *name != env.name => {
                Err(format!("--confirm-env {name}: the run targets the protected environment `{}`", env.name))
            }
            None if !self.options.interactive => Err(format!(
                "{what} targets the protected environment `{0}` and there is no terminal to type its name: pass --confirm-env {0} (--yes does not confirm it)",
                env.name
            )),
            _ => Ok(()),
        }
    }

    /// Names typed ahead must be right, and without a terminal they must be there:
    /// `--yes` does not stand in for a protected environment or a typed target.
    fn preflight_confirmations(&self, what: &str) -> Result<(), String> {
        let plan = self.plan;
        let given = &self.options.confirmations;
        if plan.environment().is_some_and(|e| e.protected) {
            self.protected_env_typed_ahead(what)?;
        } else if let Some(name) = &given.env
            && plan.environment.as_deref() != Some(name.as_str())
        {
            // The name of an unprotected target is accepted (a workflow passes it for every
            // environment); any other name is a mistake.
            let target = plan.environment.as_deref().map_or("no environment".to_owned(), |e| format!("`{e}`"));
            return Err(format!("--confirm-env {name}: the run targets {target}"));
        }
        let mut typed: Vec<&Step> = steps_of(plan).into_iter().filter(|s| s.confirm.is_some()).collect();
        // `--on-failure undo` may run undo steps: their typed targets are needed up front too,
        // not half-way through an undo.
        if self.on_failure_undo {
            typed.extend(steps_of(plan).into_iter().flat_map(|s| &s.undo).filter(|u| u.confirm.is_some()));
        }
        for id in given.targets.keys() {
            if !typed.iter().any(|s| s.id == *id) {
                return Err(format!("--confirm-target {id}=…: {what} has no `confirm: typed` step `{id}`"));
            }
        }
        if !self.options.interactive {
            let missing: Vec<String> = typed
                .iter()
                .filter(|s| !given.targets.contains_key(&s.id) && !plan.answers.contains_key(&s.id))
                .filter(|s| !self.completed.contains_key(&s.id))
                .map(|s| format!("--confirm-target {}=VALUE", s.id))
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "{what} has steps that need their target typed and there is no terminal: give {} (--yes does not confirm them)",
                    missing.join(" ")
                ));
            }
        }
        Ok(())
    }
}

/// Every step that can run for the plan's procedure (includes and on_failure handlers).
fn steps_of(plan: &Plan) -> Vec<&Step> {
    plan.reachable_steps()
}
