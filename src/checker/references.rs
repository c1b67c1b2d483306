//! Second pass: what templates refer to, where secrets go, how procedures connect.

use std::collections::{BTreeSet, HashMap};

use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::model::{Procedure, Runbook};
use crate::source::{SourceRef, Span};
use crate::step::{Choices, Step, StepKind};
use crate::template::{Expr, ROOTS, Template};

pub fn check(runbook: &Runbook) -> Vec<Diagnostic> {
    let mut checker = References { runbook, source: runbook.source.clone(), diagnostics: Vec::new() };
    checker.procedure_links();
    let cyclic = checker.cycles();
    for procedure in runbook.procedures.values() {
        checker.procedure(procedure, &cyclic);
    }
    checker.warnings();
    checker.diagnostics
}

struct References<'a> {
    runbook: &'a Runbook,
    source: SourceRef,
    diagnostics: Vec<Diagnostic>,
}

/// Where a template is used decides whether a secret may flow into it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sink {
    /// Reaches a child privately (stdin, env, HTTP header or body) or is only evaluated.
    Private,
    /// Visible to others: argv, a URL, a path, text shown on the terminal.
    Public(&'static str),
}

impl<'a> References<'a> {
    fn error(&mut self, code: Code, span: Span, message: String) -> &mut Diagnostic {
        self.diagnostics.push(Diagnostic::error(code, &self.source, span, message));
        let last = self.diagnostics.len() - 1;
        &mut self.diagnostics[last]
    }

    fn all_steps(&self) -> impl Iterator<Item = &'a Step> + use<'a> {
        let runbook = self.runbook;
        runbook.procedures.values().flat_map(|p| p.stages.iter().flat_map(|s| &s.steps))
    }

    /// `include:` and `on_failure:` must name procedures of this runbook.
    fn procedure_links(&mut self) {
        let names: Vec<&str> = self.runbook.procedures.keys().map(String::as_str).collect();
        for step in self.all_steps() {
            for name in step.procedures_used() {
                if self.runbook.procedures.contains_key(name) {
                    continue;
                }
                let span = match &step.kind {
                    StepKind::Include(include) if include.procedure == name => include.span,
                    _ => step.span,
                };
                let help = did_you_mean(name, names.iter().copied()).unwrap_or_else(|| {
                    format!("procedures are {}; `on_failure` also takes abort or continue", names.join(", "))
                });
                self.error(
                    Code::UnknownProcedure,
                    span,
                    format!("step `{}` refers to procedure `{name}`, which does not exist", step.id),
                )
                .help = Some(help);
            }
        }
    }

    /// Procedures that can reach themselves through `include`/`on_failure`; each cycle is
    /// reported once, at the step that closes it.
    fn cycles(&mut self) -> BTreeSet<String> {
        let mut cyclic = BTreeSet::new();
        let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
        for start in self.runbook.procedures.keys() {
            let mut path = vec![start.clone()];
            if let Some((cycle, span)) = self.find_cycle(start, &mut path) {
                cyclic.extend(cycle.iter().cloned());
                let mut key = cycle.clone();
                key.sort();
                if reported.insert(key) {
                    let chain =
                        cycle.iter().chain(cycle.first()).map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" → ");
                    self.error(
                        Code::IncludeCycle,
                        span,
                        format!("procedures include each other in a cycle: {chain}"),
                    )
                    .help = Some("a procedure may not include or hand over to itself, directly or indirectly".into());
                }
            }
        }
        cyclic
    }

    fn find_cycle(&self, current: &str, path: &mut Vec<String>) -> Option<(Vec<String>, Span)> {
        let procedure = self.runbook.procedures.get(current)?;
        for step in procedure.stages.iter().flat_map(|s| &s.steps) {
            for next in step.procedures_used() {
                if let Some(pos) = path.iter().position(|p| p == next) {
                    let span = match &step.kind {
                        StepKind::Include(i) => i.span,
                        _ => step.span,
                    };
                    if pos == 0 {
                        return Some((path.clone(), span));
                    }
                    continue;
                }
                path.push(next.to_owned());
                if let Some(found) = self.find_cycle(next, path) {
                    return Some(found);
                }
                path.pop();
            }
        }
        None
    }

    /// Steps that have run before each step of `procedure`, including included procedures.
    fn procedure(&mut self, procedure: &'a Procedure, cyclic: &BTreeSet<String>) {
        let mut visible: HashMap<&'a str, &'a Step> = HashMap::new();
        let mut included: Vec<String> = Vec::new();
        for step in procedure.stages.iter().flat_map(|s| &s.steps) {
            self.step(procedure, step, &visible);
            visible.insert(step.id.as_str(), step);
            if let StepKind::Include(include) = &step.kind
                && !cyclic.contains(&include.procedure)
            {
                self.flatten(&include.procedure, &mut visible);
                // A step runs at most once per run: the journal and resume know steps by id.
                let mut brought = Vec::new();
                self.reach(&include.procedure, &mut brought);
                if let Some(again) = brought.iter().find(|p| included.contains(p)) {
                    self.error(
                        Code::Duplicate,
                        include.span,
                        format!("procedure `{again}` would run a second time in `{}`", procedure.name),
                    )
                    .help =
                        Some("a step runs at most once per run (resume tracks steps by id); include it once".into());
                }
                included.extend(brought);
            }
        }
    }

    /// A procedure and every procedure it includes, each once.
    fn reach(&self, name: &str, out: &mut Vec<String>) {
        if out.iter().any(|p| p == name) {
            return;
        }
        out.push(name.to_owned());
        let Some(procedure) = self.runbook.procedures.get(name) else { return };
        for step in procedure.stages.iter().flat_map(|s| &s.steps) {
            if let StepKind::Include(include) = &step.kind {
                self.reach(&include.procedure, out);
            }
        }
    }

    fn flatten(&self, name: &str, visible: &mut HashMap<&'a str, &'a Step>) {
        let Some(procedure) = self.runbook.procedures.get(name) else { return };
        for step in procedure.stages.iter().flat_map(|s| &s.steps) {
            visible.insert(step.id.as_str(), step);
            if let StepKind::Include(include) = &step.kind {
                self.flatten(&include.procedure, visible);
            }
        }
    }

    fn step(&mut self, procedure: &Procedure, step: &Step, visible: &HashMap<&'a str, &'a Step>) {
        let scope = Scope { procedure, visible, step };
        let mut templates: Vec<(&Template, Sink)> = Vec::new();
        let mut exprs: Vec<(&Expr, bool)> = Vec::new();
        match &step.kind {
            StepKind::Run(run) => {
                templates.extend(run.argv.iter().map(|t| (t, Sink::Public("on a command line"))));
                templates.extend(run.process.templates());
            }
            StepKind::Shell(shell) => {
                if shell.script.contains("{{") || shell.script.contains("{%") {
                    let span = shell.script_span;
                    self.error(Code::TemplateInShell, span, format!("step `{}`: `shell:` text is never rendered as a template", step.id))
                        .help = Some("pass values as `args:` (they become $1, $2, ...) or through `env:`, and quote them in the script: \"$1\"".into());
                }
                templates.extend(shell.args.iter().map(|t| (t, Sink::Public("on a command line"))));
                templates.extend(shell.process.templates());
            }
            StepKind::Http(http) => {
                templates.push((&http.url, Sink::Public("in a URL")));
                templates.extend(http.headers.iter().map(|(_, t)| (t, Sink::Private)));
                templates.extend(http.body.iter().map(|t| (t, Sink::Private)));
                // An unmet expectation is reported with what was expected.
                templates.extend(http.expect.body_contains.iter().map(|t| (t, Sink::Public("in an error message"))));
            }
            StepKind::Manual(text) => templates.push((text, Sink::Public("in text shown on the terminal"))),
            StepKind::Prompt(prompt) => {
                templates.push((&prompt.question, Sink::Public("in text shown on the terminal")));
                templates.extend(prompt.default.iter().map(|t| (t, Sink::Public("in text shown on the terminal"))));
                if let Some(Choices::Expr(expr)) = &prompt.choices {
                    // The choices are listed on the terminal.
                    match expr.references() {
                        Ok(refs) => self.references(
                            &scope,
                            expr.span,
                            &expr.text,
                            &refs,
                            Sink::Public("in the choices shown on the terminal"),
                            false,
                        ),
                        Err(err) => {
                            self.error(
                                Code::TemplateSyntax,
                                expr.span,
                                format!("expression does not parse: {}", err.message),
                            );
                        }
                    }
                }
                // `label:` / `value:` see each choice as `item`.
                for template in prompt.label.iter().chain(&prompt.value) {
                    match template.references() {
                        Ok(refs) => {
                            let refs = refs.into_iter().filter(|r| r != "item" && !r.starts_with("item.")).collect();
                            let sink = Sink::Public("in the choices shown on the terminal");
                            self.references(&scope, template.span, &template.text, &refs, sink, false);
                        }
                        Err(err) => {
                            self.error(
                                Code::TemplateSyntax,
                                template.span,
                                format!("template does not parse: {}", err.message),
                            );
                        }
                    }
                }
            }
            StepKind::Assert(assert) => {
                exprs.push((&assert.expr, false));
                templates.extend(assert.message.iter().map(|t| (t, Sink::Public("in an error message"))));
            }
            StepKind::Include(_) => {}
        }
        templates.extend(step.confirm.iter().map(|t| (t, Sink::Public("in text shown on the terminal"))));
        exprs.extend(step.when.iter().map(|e| (e, false)));
        if let Some(until) = step.retry.as_ref().and_then(|r| r.until.as_ref()) {
            exprs.push((until, true));
        }
        for (template, sink) in templates {
            match template.references() {
                Ok(refs) => self.references(&scope, template.span, &template.text, &refs, sink, false),
                Err(err) => {
                    self.error(
                        Code::TemplateSyntax,
                        template.span,
                        format!("template does not parse: {}", err.message),
                    );
                }
            }
        }
        for (expr, allows_result) in exprs {
            match expr.references() {
                Ok(refs) => self.references(&scope, expr.span, &expr.text, &refs, Sink::Private, allows_result),
                Err(err) => {
                    self.error(Code::TemplateSyntax, expr.span, format!("expression does not parse: {}", err.message));
                }
            }
        }
    }

    fn references(
        &mut self,
        scope: &Scope<'_, 'a>,
        span: Span,
        text: &str,
        refs: &BTreeSet<String>,
        sink: Sink,
        allows_result: bool,
    ) {
        for reference in refs {
            let span = narrow(&self.source, span, text, reference);
            let parts: Vec<&str> = reference.split('.').collect();
            match parts.as_slice() {
                ["result", ..] if allows_result => {}
                ["params", name, ..] => self.param(scope, span, name, sink),
                ["vars", name, ..] => self.var(span, name),
                ["steps", id, rest @ ..] => self.output(scope, span, id, rest.first().copied(), sink),
                // Secret params may come in as RUNBOOK_PARAM_<NAME>: reading them through
                // `env` is reading the secret.
                ["env", name, ..] if name.starts_with("RUNBOOK_PARAM_") => {
                    if let Sink::Public(place) = sink {
                        self.secret_exposed(span, &format!("`env.{name}` (a secret param's variable)"), place);
                    }
                }
                // `params` or `steps` whole (or subscripted: `params['token']`) may hold secrets.
                [root @ ("params" | "steps" | "env")] => {
                    let secret_exists = match *root {
                        "params" => self.runbook.params.values().any(|p| p.secret),
                        "steps" => self.all_steps().any(|s| s.output_is_secret()),
                        _ => true,
                    };
                    if let (true, Sink::Public(place)) = (secret_exists, sink) {
                        self.secret_exposed(span, &format!("`{root}` as a whole (it holds secrets)"), place);
                    }
                }
                ["env" | "environment", ..] => {}
                [root] if ROOTS.contains(root) => {}
                [root, ..] => {
                    let mut roots: Vec<&str> = ROOTS.to_vec();
                    if allows_result {
                        roots.push("result");
                    }
                    let help = did_you_mean(root, roots.iter().copied())
                        .unwrap_or_else(|| format!("templates can use {}", roots.join(", ")));
                    self.error(Code::UnknownVariable, span, format!("unknown name `{root}` in a template")).help =
                        Some(help);
                }
                [] => {}
            }
        }
    }

    fn param(&mut self, scope: &Scope<'_, 'a>, span: Span, name: &str, sink: Sink) {
        let Some(param) = self.runbook.params.get(name) else {
            let help = did_you_mean(name, self.runbook.params.keys().map(String::as_str))
                .unwrap_or_else(|| "declare it under the top-level `params:`".into());
            self.error(Code::UndeclaredParam, span, format!("`params.{name}` is not a declared param")).help =
                Some(help);
            return;
        };
        if !scope.procedure.params.iter().any(|p| p == name) {
            self.error(
                Code::ParamNotTaken,
                span,
                format!("procedure `{}` does not take param `{name}`", scope.procedure.name),
            )
            .help = Some(format!("add `{name}` to the `params:` list of procedure `{}`", scope.procedure.name));
        }
        if let (true, Sink::Public(place)) = (param.secret, sink) {
            self.secret_exposed(span, &format!("secret param `{name}`"), place);
        }
    }

    fn var(&mut self, span: Span, name: &str) {
        if self.runbook.environments.is_empty() {
            self.error(Code::MissingVar, span, format!("`vars.{name}` is used, but the runbook has no environments"))
                .help = Some("define it under `environments: <name>: vars:`".into());
            return;
        }
        let missing: Vec<&str> = self
            .runbook
            .environments
            .values()
            .filter(|e| !e.vars.contains_key(name))
            .map(|e| e.name.as_str())
            .collect();
        if !missing.is_empty() {
            let envs = missing.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ");
            let defined_there: BTreeSet<&str> = self
                .runbook
                .environments
                .values()
                .filter(|e| missing.contains(&e.name.as_str()))
                .flat_map(|e| e.vars.keys().map(String::as_str))
                .collect();
            let help = did_you_mean(name, defined_there.iter().copied())
                .map(|m| format!("{m} (the name used there)"))
                .unwrap_or_else(|| format!("define `{name}` in every environment"));
            self.error(Code::MissingVar, span, format!("var `{name}` is not defined in environment {envs}")).help =
                Some(help);
        }
    }

    fn output(&mut self, scope: &Scope<'_, 'a>, span: Span, id: &str, field: Option<&str>, sink: Sink) {
        let Some(target) = scope.visible.get(id).copied().or_else(|| self.all_steps().find(|s| s.id == id)) else {
            let help = did_you_mean(id, self.all_steps().map(|s| s.id.as_str()));
            let diagnostic = self.error(Code::StepNotYetRun, span, format!("there is no step `{id}`"));
            diagnostic.help = help;
            return;
        };
        if target.id == scope.step.id {
            self.error(Code::StepNotYetRun, span, format!("step `{id}` uses its own output")).help =
                Some("in `retry.until`, use `result` for the current attempt".into());
            return;
        }
        if !scope.visible.contains_key(id) {
            self.error(
                Code::StepNotYetRun,
                span,
                format!("step `{id}` has not run yet when step `{}` runs", scope.step.id),
            )
            .help =
                Some(format!("move `{}` after `{id}`, or include the procedure that runs `{id}` first", scope.step.id));
            return;
        }
        let outputs = target.outputs();
        let captures_nothing = outputs.iter().all(|o| *o == "status");
        match field {
            Some(field) if outputs.contains(&field) => {}
            Some("output" | "json" | "lines") | None if captures_nothing => {
                self.error(Code::NotCaptured, span, format!("step `{id}` captures no output")).help =
                    Some(format!("add `capture: text` (or json, lines) to step `{id}`"));
                return;
            }
            Some(field) if !outputs.contains(&field) => {
                let help = match field {
                    "json" | "lines" => format!("set `capture: {field}` on step `{id}`"),
                    _ => format!(
                        "step `{id}` provides {}",
                        outputs.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
                    ),
                };
                self.error(Code::NotCaptured, span, format!("step `{id}` has no `{field}`")).help = Some(help);
                return;
            }
            _ => {}
        }
        if let (true, Sink::Public(place)) = (target.output_is_secret(), sink) {
            self.secret_exposed(span, &format!("the secret output of step `{id}`"), place);
        }
        if target.when.is_some() && scope.step.when.is_none() {
            self.diagnostics.push(
                Diagnostic::warning(
                    Code::ConditionalOutput,
                    &self.source,
                    span,
                    format!(
                        "step `{}` uses the output of `{id}`, which is skipped when its `when:` is false",
                        scope.step.id
                    ),
                )
                .help(format!("give step `{}` a `when:` too, or drop the condition on `{id}`", scope.step.id)),
            );
        }
    }

    /// Things that work but that a careful reviewer would question; they fail only `--strict`.
    fn warnings(&mut self) {
        self.prompts_after_mutation();
        for step in self.all_steps() {
            if step.mutates() && step.timeout.is_none() {
                let default = humantime::format_duration(step.timeout_or_default());
                self.diagnostics.push(
                    Diagnostic::warning(
                        Code::NoTimeout,
                        &self.source,
                        step.span,
                        format!("mutating step `{}` has no explicit timeout", step.id),
                    )
                    .help(format!("the default of {default} applies; say how long this step may take with `timeout:`")),
                );
            }
            if let StepKind::Shell(shell) = &step.kind {
                let special = |c: char| "|&;<>()$`*?[]{}~#\\'\"=\n".contains(c);
                if !shell.script.contains(special) {
                    let argv: Vec<&str> = shell.script.split_whitespace().collect();
                    self.diagnostics.push(
                        Diagnostic::warning(
                            Code::ShellCouldBeRun,
                            &self.source,
                            shell.script_span,
                            format!("step `{}` needs no shell", step.id),
                        )
                        .help(format!("write it as `run: [{}]`: no shell, no quoting surprises", argv.join(", "))),
                    );
                }
            }
        }
    }

    /// Ask first, act after: a decision taken after something changed can leave the target
    /// half-changed when the answer turns out wrong (RB104). Included procedures count.
    fn prompts_after_mutation(&mut self) {
        let mut reported: BTreeSet<&str> = BTreeSet::new();
        for procedure in self.runbook.procedures.values() {
            let mut order = Vec::new();
            in_order(self.runbook, procedure, &mut Vec::new(), &mut order);
            let mut mutated: Option<&Step> = None;
            for step in order {
                if let (StepKind::Prompt(_), Some(before)) = (&step.kind, mutated)
                    && reported.insert(step.id.as_str())
                {
                    self.diagnostics.push(
                        Diagnostic::warning(
                            Code::PromptAfterMutation,
                            &self.source,
                            step.span,
                            format!(
                                "prompt `{}` is asked after the mutating step `{}` in procedure `{}`",
                                step.id, before.id, procedure.name
                            ),
                        )
                        .help("ask every decision before the first mutating step (read what it needs in a preflight stage)"),
                    );
                }
                if step.mutates() && mutated.is_none() {
                    mutated = Some(step);
                }
            }
        }
    }

    fn secret_exposed(&mut self, span: Span, what: &str, place: &str) {
        self.error(Code::SecretExposed, span, format!("{what} would appear {place}")).help =
            Some("secrets reach a child only through `stdin`, `env`, or an HTTP header or body".into());
    }
}

/// Steps as they run, included procedures inline; an include cycle is cut where it closes.
fn in_order<'a>(runbook: &'a Runbook, procedure: &'a Procedure, path: &mut Vec<&'a str>, out: &mut Vec<&'a Step>) {
    if path.contains(&procedure.name.as_str()) {
        return;
    }
    path.push(&procedure.name);
    for step in procedure.stages.iter().flat_map(|s| &s.steps) {
        out.push(step);
        if let StepKind::Include(include) = &step.kind
            && let Some(inner) = runbook.procedures.get(&include.procedure)
        {
            in_order(runbook, inner, path, out);
        }
    }
    path.pop();
}

struct Scope<'s, 'a> {
    procedure: &'s Procedure,
    visible: &'s HashMap<&'a str, &'a Step>,
    step: &'s Step,
}

impl crate::step::Process {
    fn templates(&self) -> Vec<(&Template, Sink)> {
        let mut out: Vec<(&Template, Sink)> = self.env.iter().map(|(_, t)| (t, Sink::Private)).collect();
        out.extend(self.stdin.iter().map(|t| (t, Sink::Private)));
        out.extend(self.cwd.iter().map(|t| (t, Sink::Public("in a working directory path"))));
        out
    }
}

/// Points at the reference inside the template text when it can be found there.
fn narrow(source: &SourceRef, span: Span, text: &str, reference: &str) -> Span {
    let written = source.text.get(span.start..span.end).unwrap_or("");
    // Look for the first segments (`steps.a`), which are written verbatim even when the
    // rest is a subscript such as `steps.a.json[0]`.
    let needle: String = reference.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
    match written.find(&needle).or_else(|| if written.is_empty() { None } else { text.find(&needle).and(None) }) {
        Some(at) => Span::new(span.start + at, span.start + at + reference.len().min(written.len() - at)),
        None => span,
    }
}
