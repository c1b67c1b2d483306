//! Second pass: what templates refer to, where secrets go, how procedures connect.

use std::collections::{BTreeSet, HashMap};

use crate::diagnostic::{Code, Diagnostic, did_you_mean};
use crate::model::{Procedure, Runbook};
use crate::source::{SourceRef, Span};
use crate::step::{Choices, Step, StepKind};
use crate::template::{Expr, ROOTS, Template};

pub fn check(runbook: &Runbook) -> Vec<Diagnostic> {
    let graph = Graph::new(runbook);
    let mut checker =
        References { runbook, source: runbook.source.clone(), diagnostics: Vec::new(), steps: HashMap::new() };
    checker.index_steps();
    checker.procedure_links();
    checker.restart_links();
    let cyclic = checker.cycles(&graph);
    let reach = checker.reach(&graph, &cyclic);
    for (index, procedure) in runbook.procedures.values().enumerate() {
        checker.procedure(index, procedure, &cyclic, &reach);
    }
    checker.warnings();
    checker.diagnostics
}

/// Procedures may include each other this deep; planning and running expand includes, so
/// the bound keeps every later stage bounded too.
pub const MAX_INCLUDE_DEPTH: usize = 64;

struct References<'a> {
    runbook: &'a Runbook,
    source: SourceRef,
    diagnostics: Vec<Diagnostic>,
    /// Every step by id (the first one when an id is repeated): procedure index, position.
    steps: HashMap<&'a str, (usize, usize, &'a Step)>,
}

/// How procedures refer to each other, by index into `runbook.procedures`.
struct Graph {
    /// `include:` edges: (procedure included, span of the `include` value).
    includes: Vec<Vec<(usize, Span)>>,
    /// `include:` and `on_failure:` edges, for cycles.
    links: Vec<Vec<(usize, Span)>>,
}

impl Graph {
    fn new(runbook: &Runbook) -> Graph {
        let mut includes = Vec::new();
        let mut links = Vec::new();
        for procedure in runbook.procedures.values() {
            let mut inc = Vec::new();
            let mut all = Vec::new();
            for step in procedure.stages.iter().flat_map(|s| &s.steps) {
                for name in step.procedures_used() {
                    let Some(target) = runbook.procedures.get_index_of(name) else { continue };
                    let span = match &step.kind {
                        StepKind::Include(include) if include.procedure == name => {
                            inc.push((target, include.span));
                            include.span
                        }
                        _ => step.on_failure_span.unwrap_or(step.span),
                    };
                    all.push((target, span));
                }
            }
            includes.push(inc);
            links.push(all);
        }
        Graph { includes, links }
    }
}

/// Where a template is used decides whether a secret may flow into it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sink {
    /// Reaches a child privately (stdin, env, HTTP header or body) or is only evaluated.
    Private,
    /// Visible to others: argv, a URL, a path, text shown on the terminal.
    Public(&'static str),
}

/// A set of procedure indices.
#[derive(Clone, Default)]
struct Set(Vec<u64>);

impl Set {
    fn insert(&mut self, i: usize) {
        if self.0.len() <= i / 64 {
            self.0.resize(i / 64 + 1, 0);
        }
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    fn union(&mut self, other: &Set) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }
    fn first_common(&self, other: &Set) -> Option<usize> {
        self.0.iter().zip(&other.0).enumerate().find_map(|(w, (a, b))| {
            let both = a & b;
            (both != 0).then(|| w * 64 + both.trailing_zeros() as usize)
        })
    }
}

/// Strongly connected components (Tarjan's algorithm, without recursion).
fn components(edges: &[Vec<(usize, Span)>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut edge)) = work.last_mut() {
            if let Some(&(w, _)) = edges[v].get(*edge) {
                *edge += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                component.sort_unstable();
                out.push(component);
            }
        }
    }
    out
}

/// The shortest cycle from `start` back to itself inside `members`, and the span of the
/// reference that closes it.
fn cycle_through(edges: &[Vec<(usize, Span)>], start: usize, members: &Set) -> Option<(Vec<usize>, Span)> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &(w, span) in &edges[v] {
            if w == start {
                let mut path = vec![v];
                let mut at = v;
                while let Some(&p) = parent.get(&at) {
                    path.push(p);
                    at = p;
                }
                path.reverse();
                return Some((path, span));
            }
            if members.contains(w) && w != start && !parent.contains_key(&w) {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    None
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

    /// `restarts_from:` names a step that comes earlier in the walk of the same procedure
    /// (its own stages, or procedures it includes).
    fn restart_links(&mut self) {
        let runbook = self.runbook;
        for procedure in runbook.procedures.values() {
            if !procedure.stages.iter().flat_map(|s| &s.steps).any(|s| s.restarts_from.is_some()) {
                continue;
            }
            // Each procedure expanded once: linear on include diamonds, finite on cycles
            // (reported on their own).
            let mut order = Vec::new();
            first_walk(runbook, procedure, &mut std::collections::HashSet::new(), &mut order);
            for step in procedure.stages.iter().flat_map(|s| &s.steps) {
                let Some(target) = &step.restarts_from else { continue };
                let position = order.iter().position(|s| std::ptr::eq(*s, step));
                let earlier = order.iter().position(|s| s.id == *target).filter(|t| Some(*t) < position);
                if earlier.is_some() {
                    continue;
                }
                let before: Vec<&str> =
                    position.map_or(&order[..0], |p| &order[..p]).iter().map(|s| s.id.as_str()).collect();
                let span = step.restarts_from_span.unwrap_or(step.span);
                let help = did_you_mean(target, before.iter().copied()).unwrap_or_else(|| {
                    if before.is_empty() {
                        "no step comes before it in this procedure".to_owned()
                    } else {
                        format!("steps before it in procedure `{}`: {}", procedure.name, before.join(", "))
                    }
                });
                self.error(
                    Code::StepNotYetRun,
                    span,
                    format!(
                        "step `{}` restarts from `{target}`, which is not an earlier step of procedure `{}`",
                        step.id, procedure.name
                    ),
                )
                .help = Some(help);
            }
        }
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
                    _ => step.on_failure_span.unwrap_or(step.span),
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

    fn index_steps(&mut self) {
        for (p, procedure) in self.runbook.procedures.values().enumerate() {
            for (i, step) in procedure.stages.iter().flat_map(|s| &s.steps).enumerate() {
                self.steps.entry(step.id.as_str()).or_insert((p, i, step));
            }
        }
    }

    /// Procedures that can reach themselves through `include`/`on_failure`; each group of
    /// such procedures is reported once, at the reference that closes a cycle.
    fn cycles(&mut self, graph: &Graph) -> Set {
        let mut cyclic = Set::default();
        let names: Vec<&String> = self.runbook.procedures.keys().collect();
        for component in components(&graph.links) {
            let [first, ..] = component[..] else { continue };
            let self_loop = graph.links[first].iter().any(|(w, _)| *w == first);
            if component.len() == 1 && !self_loop {
                continue;
            }
            let mut members = Set::default();
            for &p in &component {
                members.insert(p);
                cyclic.insert(p);
            }
            let Some((cycle, span)) = cycle_through(&graph.links, first, &members) else { continue };
            let chain = cycle.iter().chain(cycle.first()).map(|p| format!("`{}`", names[*p])).collect::<Vec<_>>();
            self.error(
                Code::IncludeCycle,
                span,
                format!("procedures include each other in a cycle: {}", chain.join(" → ")),
            )
            .help = Some("a procedure may not include or hand over to itself, directly or indirectly".into());
        }
        cyclic
    }

    /// Per procedure: itself and every procedure it includes, directly or not (memoised, so
    /// linear in the size of the runbook times the number of procedures / 64). Includes
    /// nested deeper than [`MAX_INCLUDE_DEPTH`] are reported.
    fn reach(&mut self, graph: &Graph, cyclic: &Set) -> Vec<Set> {
        let n = graph.includes.len();
        let mut reach: Vec<Option<Set>> = vec![None; n];
        let mut depth = vec![0usize; n];
        for root in 0..n {
            if cyclic.contains(root) || reach[root].is_some() {
                continue;
            }
            let mut work = vec![root];
            while let Some(&v) = work.last() {
                let pending: Vec<usize> = graph.includes[v]
                    .iter()
                    .map(|(w, _)| *w)
                    .filter(|w| !cyclic.contains(*w) && reach[*w].is_none())
                    .collect();
                if !pending.is_empty() {
                    work.extend(pending);
                    continue;
                }
                work.pop();
                if reach[v].is_some() {
                    continue;
                }
                let mut set = Set::default();
                set.insert(v);
                let mut deepest = 0;
                for &(w, span) in &graph.includes[v] {
                    if let Some(sub) = &reach[w] {
                        set.union(sub);
                        deepest = deepest.max(depth[w]);
                        if depth[w] == MAX_INCLUDE_DEPTH {
                            let name = self.runbook.procedures.get_index(w).map_or("", |(k, _)| k.as_str());
                            self.error(
                                Code::IncludeCycle,
                                span,
                                format!(
                                    "includes nested more than {MAX_INCLUDE_DEPTH} procedures deep (through `{name}`)"
                                ),
                            )
                            .help = Some("flatten the chain: include the procedures one after another".into());
                        }
                    }
                }
                depth[v] = deepest + 1;
                reach[v] = Some(set);
            }
        }
        reach.into_iter().map(Option::unwrap_or_default).collect()
    }

    /// Steps that have run before each step of `procedure`, including included procedures.
    fn procedure(&mut self, index: usize, procedure: &'a Procedure, cyclic: &Set, reach: &[Set]) {
        let mut included = Set::default();
        for (position, step) in procedure.stages.iter().flat_map(|s| &s.steps).enumerate() {
            let visible = Visible { procedure: index, position, included: &included };
            self.step(procedure, step, &visible, &[]);
            // An undo step sees what its owner saw, the owner's own output and the undo
            // steps listed before it.
            let after = Visible { procedure: index, position: position + 1, included: &included };
            for (i, undo) in step.undo.iter().enumerate() {
                self.step(procedure, undo, &after, &step.undo[..i]);
            }
            if let StepKind::Include(include) = &step.kind
                && let Some(target) = self.runbook.procedures.get_index_of(&include.procedure)
                && !cyclic.contains(target)
            {
                let brought = &reach[target];
                // A step runs at most once per run: the journal and resume know steps by id.
                if let Some(again) = included.first_common(brought) {
                    let again = self.runbook.procedures.get_index(again).map_or("", |(k, _)| k.as_str());
                    self.error(
                        Code::Duplicate,
                        include.span,
                        format!("procedure `{again}` would run a second time in `{}`", procedure.name),
                    )
                    .help =
                        Some("a step runs at most once per run (resume tracks steps by id); include it once".into());
                }
                included.union(brought);
            }
        }
    }

    fn step(&mut self, procedure: &Procedure, step: &Step, visible: &Visible<'_>, undo: &[Step]) {
        let scope = Scope { procedure, visible, step, undo };
        let mut templates: Vec<(&Template, Sink)> = Vec::new();
        let mut exprs: Vec<(&Expr, Option<&'static str>)> = Vec::new();
        // A watch's templates are its sample's, rendered afresh for each sample with the time
        // it starts as `now`; `pass` and `fail` see the sample as `sample`.
        let kind = match &step.kind {
            StepKind::Watch(watch) => {
                exprs.push((&watch.pass, Some("sample")));
                exprs.extend(watch.fail.iter().map(|e| (e, Some("sample"))));
                self.watch_timing(&scope, watch);
                &*watch.sample
            }
            kind => kind,
        };
        match kind {
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
                            None,
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
                            self.references(&scope, template.span, &template.text, &refs, sink, None);
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
                exprs.push((&assert.expr, None));
                templates.extend(assert.message.iter().map(|t| (t, Sink::Public("in an error message"))));
            }
            StepKind::Include(_) | StepKind::Watch(_) => {}
        }
        // What the watch's body reads: `now` besides the usual roots.
        let body = if matches!(step.kind, StepKind::Watch(_)) { templates.len() } else { 0 };
        templates.extend(step.confirm.iter().map(|t| (t, Sink::Public("in text shown on the terminal"))));
        templates.extend(step.on_interrupt.iter().map(|t| (t, Sink::Public("in text shown on the terminal"))));
        exprs.extend(step.when.iter().map(|e| (e, None)));
        exprs.extend(step.done_if.iter().map(|e| (e, None)));
        if let Some(until) = step.retry.as_ref().and_then(|r| r.until.as_ref()) {
            exprs.push((until, Some("result")));
        }
        for (index, (template, sink)) in templates.into_iter().enumerate() {
            match template.references() {
                Ok(refs) => {
                    self.filters(template.span, &template.text, false);
                    let current = (index < body).then_some("now");
                    self.references(&scope, template.span, &template.text, &refs, sink, current);
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
        // A watch's `value` is shown and journaled: what it reads must not be a secret.
        let shown = match &step.kind {
            StepKind::Watch(watch) => watch.value.as_ref(),
            _ => None,
        };
        let exprs = exprs.into_iter().map(|(e, c)| (e, c, Sink::Private));
        for (expr, current, sink) in
            exprs.chain(shown.map(|e| (e, Some("sample"), Sink::Public("in a watch sample's value"))))
        {
            match expr.references() {
                Ok(refs) => {
                    self.filters(expr.span, &expr.text, true);
                    self.references(&scope, expr.span, &expr.text, &refs, sink, current);
                }
                Err(err) => {
                    self.error(Code::TemplateSyntax, expr.span, format!("expression does not parse: {}", err.message));
                }
            }
        }
    }

    /// Every `| name` must be a filter the engine knows (it would fail only at render time).
    fn filters(&mut self, span: Span, text: &str, is_expression: bool) {
        for name in super::filters::used(text, is_expression) {
            if crate::template::has_filter(&name) {
                continue;
            }
            // Point at the name when the template is written verbatim in the file.
            let written = self.source.text.get(span.start..span.end).unwrap_or("");
            let span =
                written.find(&format!("| {name}")).or_else(|| written.find(&format!("|{name}"))).map_or(span, |i| {
                    let start = span.start + i + written[i..].find(&name).unwrap_or(0);
                    Span::new(start, start + name.len())
                });
            self.error(Code::TemplateSyntax, span, format!("unknown filter `{name}`")).help =
                Some("see the MiniJinja filters and `replace_host`, `utc`, `epoch`, `minus` in docs/format.md".into());
        }
    }

    fn references(
        &mut self,
        scope: &Scope<'_>,
        span: Span,
        text: &str,
        refs: &BTreeSet<String>,
        sink: Sink,
        // The value an expression sees besides the usual roots: `result` (the attempt in
        // `retry.until`) or `sample` (a watch's sample in `pass` and `fail`).
        current: Option<&'static str>,
    ) {
        for reference in refs {
            let span = narrow(&self.source, span, text, reference);
            let parts: Vec<&str> = reference.split('.').collect();
            match parts.as_slice() {
                ["sample", field, ..] if current == Some("sample") => self.sample_field(scope, span, field),
                [root, ..] if current == Some(*root) => {}
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
                ["run", field, ..] if !crate::refs::RUN_FIELDS.contains(field) => {
                    let fields = crate::refs::RUN_FIELDS.iter().map(|f| format!("`run.{f}`")).collect::<Vec<_>>();
                    self.error(Code::UnknownVariable, span, format!("unknown name `run.{field}` in a template")).help =
                        Some(format!("a run has {}", fields.join(", ")));
                }
                ["run", ..] => {}
                [root] if ROOTS.contains(root) => {}
                // MiniJinja's global functions (`{% for i in range(3) %}`).
                [root, ..] if ["range", "dict", "namespace", "debug"].contains(root) => {}
                [root, ..] => {
                    let mut roots: Vec<&str> = ROOTS.to_vec();
                    roots.extend(current);
                    let help = did_you_mean(root, roots.iter().copied())
                        .unwrap_or_else(|| format!("templates can use {}", roots.join(", ")));
                    self.error(Code::UnknownVariable, span, format!("unknown name `{root}` in a template")).help =
                        Some(help);
                }
                [] => {}
            }
        }
    }

    /// A watch's `every`, `within` and `hold` written as templates: resolved when the plan is
    /// bound, so they read only what is known then (`vars`, `params`, `env`), and they are shown
    /// (dry-run, the journal): no secret.
    fn watch_timing(&mut self, scope: &Scope<'_>, watch: &crate::step::WatchStep) {
        for (key, template) in watch.timing_templates() {
            let refs = match template.references() {
                Ok(refs) => refs,
                Err(err) => {
                    self.error(
                        Code::TemplateSyntax,
                        template.span,
                        format!("template does not parse: {}", err.message),
                    );
                    continue;
                }
            };
            self.filters(template.span, &template.text, false);
            let later: Vec<&String> = refs.iter().filter(|r| r.split('.').next() == Some("steps")).collect();
            if let Some(reference) = later.first() {
                let span = narrow(&self.source, template.span, &template.text, reference);
                self.error(
                    Code::InvalidValue,
                    span,
                    format!("a watch's `{key}` is known before the run starts; it cannot read `{reference}`"),
                )
                .help =
                    Some("use `vars` (an environment's `rehearsal:` block can shorten them), `params` or `env`".into());
                continue;
            }
            self.references(
                scope,
                template.span,
                &template.text,
                &refs,
                Sink::Public("in a watch's timing, which is shown"),
                None,
            );
        }
    }

    /// `sample.<field>` in a watch: only what the watch captures.
    fn sample_field(&mut self, scope: &Scope<'_>, span: Span, field: &str) {
        let outputs = scope.step.outputs();
        if outputs.contains(&field) {
            return;
        }
        let help = match field {
            "output" | "json" | "lines" => {
                format!("set `capture: {}` on the watch", if field == "output" { "text" } else { field })
            }
            _ => format!("a sample has {}", outputs.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")),
        };
        self.error(Code::NotCaptured, span, format!("the watch's samples have no `{field}`")).help = Some(help);
    }

    fn param(&mut self, scope: &Scope<'_>, span: Span, name: &str, sink: Sink) {
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

    fn output(&mut self, scope: &Scope<'_>, span: Span, id: &str, field: Option<&str>, sink: Sink) {
        if let Some(target) = scope.undo.iter().find(|s| s.id == id) {
            self.output_fields(scope, span, target, field, sink);
            return;
        }
        let Some(&(proc_index, position, target)) = self.steps.get(id) else {
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
        if !scope.visible.contains((proc_index, position)) {
            self.error(
                Code::StepNotYetRun,
                span,
                format!("step `{id}` has not run yet when step `{}` runs", scope.step.id),
            )
            .help =
                Some(format!("move `{}` after `{id}`, or include the procedure that runs `{id}` first", scope.step.id));
            return;
        }
        self.output_fields(scope, span, target, field, sink);
    }

    /// A visible step's output: captured, and kept secret where it goes.
    fn output_fields(&mut self, scope: &Scope<'_>, span: Span, target: &Step, field: Option<&str>, sink: Sink) {
        let id = target.id.as_str();
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
            // A step without an id already has an error; a warning naming it `` helps no one.
            if step.id.is_empty() {
                continue;
            }
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
        let mut memo = HashMap::new();
        let mut found: Vec<(&Step, &Step, &str)> = Vec::new();
        for procedure in self.runbook.procedures.values() {
            let mut mutated: Option<&Step> = None;
            for step in procedure.stages.iter().flat_map(|s| &s.steps) {
                if let (StepKind::Prompt(_), Some(before)) = (&step.kind, mutated)
                    && reported.insert(step.id.as_str())
                {
                    found.push((step, before, &procedure.name));
                }
                if step.mutates() && mutated.is_none() {
                    mutated = Some(step);
                }
                if let StepKind::Include(include) = &step.kind
                    && let Some(inner) = self.runbook.procedures.get(&include.procedure)
                {
                    let inner = flow_summary(self.runbook, inner, &mut memo, &mut BTreeSet::new());
                    // Prompts after a mutation inside the included procedure are found when
                    // that procedure is walked; here, those after one of ours.
                    if let Some(before) = mutated {
                        for prompt in &inner.prompts {
                            if reported.insert(prompt.id.as_str()) {
                                found.push((prompt, before, &procedure.name));
                            }
                        }
                    }
                    mutated = mutated.or(inner.first_mutation);
                }
            }
        }
        for (step, before, procedure) in found {
            self.diagnostics.push(
                Diagnostic::warning(
                    Code::PromptAfterMutation,
                    &self.source,
                    step.span,
                    format!(
                        "prompt `{}` is asked after the mutating step `{}` in procedure `{procedure}`",
                        step.id, before.id
                    ),
                )
                .help("ask every decision before the first mutating step (read what it needs in a preflight stage)"),
            );
        }
    }

    fn secret_exposed(&mut self, span: Span, what: &str, place: &str) {
        self.error(Code::SecretExposed, span, format!("{what} would appear {place}")).help =
            Some("secrets reach a child only through `stdin`, `env`, or an HTTP header or body".into());
    }
}

/// A procedure as it runs, included procedures inline: its first mutating step and every
/// prompt it asks. Memoised per procedure, so a diamond of includes costs one walk each.
#[derive(Default)]
struct FlowSummary<'a> {
    first_mutation: Option<&'a Step>,
    prompts: Vec<&'a Step>,
}

fn flow_summary<'a>(
    runbook: &'a Runbook,
    procedure: &'a Procedure,
    memo: &mut HashMap<&'a str, std::rc::Rc<FlowSummary<'a>>>,
    visiting: &mut BTreeSet<&'a str>,
) -> std::rc::Rc<FlowSummary<'a>> {
    if let Some(done) = memo.get(procedure.name.as_str()) {
        return done.clone();
    }
    // An include cycle is reported elsewhere; here it is cut where it closes.
    if !visiting.insert(&procedure.name) {
        return std::rc::Rc::default();
    }
    let mut summary = FlowSummary::default();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for step in procedure.stages.iter().flat_map(|s| &s.steps) {
        if matches!(step.kind, StepKind::Prompt(_)) && seen.insert(&step.id) {
            summary.prompts.push(step);
        }
        if step.mutates() && summary.first_mutation.is_none() {
            summary.first_mutation = Some(step);
        }
        if let StepKind::Include(include) = &step.kind
            && let Some(inner) = runbook.procedures.get(&include.procedure)
        {
            let inner = flow_summary(runbook, inner, memo, visiting);
            for prompt in &inner.prompts {
                if seen.insert(&prompt.id) {
                    summary.prompts.push(prompt);
                }
            }
            summary.first_mutation = summary.first_mutation.or(inner.first_mutation);
        }
    }
    visiting.remove(procedure.name.as_str());
    let summary = std::rc::Rc::new(summary);
    memo.insert(&procedure.name, summary.clone());
    summary
}

struct Scope<'s> {
    procedure: &'s Procedure,
    visible: &'s Visible<'s>,
    step: &'s Step,
    /// For an undo step: the undo steps listed before it (their outputs are visible).
    undo: &'s [Step],
}

/// Which steps have run before the step being checked: earlier steps of its procedure and
/// every step of the procedures it included so far.
struct Visible<'s> {
    procedure: usize,
    position: usize,
    included: &'s Set,
}

impl Visible<'_> {
    fn contains(&self, at: (usize, usize)) -> bool {
        (at.0 == self.procedure && at.1 < self.position) || self.included.contains(at.0)
    }
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

/// Steps in walk order, each included procedure expanded at its first include only.
fn first_walk<'a>(
    runbook: &'a crate::model::Runbook,
    procedure: &'a crate::model::Procedure,
    seen: &mut std::collections::HashSet<&'a str>,
    out: &mut Vec<&'a Step>,
) {
    if !seen.insert(procedure.name.as_str()) {
        return;
    }
    for step in procedure.stages.iter().flat_map(|s| &s.steps) {
        out.push(step);
        if let crate::step::StepKind::Include(include) = &step.kind
            && let Some(other) = runbook.procedures.get(&include.procedure)
        {
            first_walk(runbook, other, seen, out);
        }
    }
}
