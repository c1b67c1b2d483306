//! Issue 24: rollback.yaml's templates rendered against responses shaped as Google documents
//! them (`tests/fixtures/google/*.json`, each naming its source and decoded by gcloud's own
//! message classes in `tests/cli/rehearsal.rs`), not only against the project's fake. Every
//! step of every procedure, undo steps included, is rendered with the fixtures as the read
//! steps' outputs; every `assert:`, `done_if:` and `when:` expression is evaluated.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use indexmap::IndexMap;
use runbook_engine::plan::{Inputs, Outputs, Plan, StepOutput};
use runbook_engine::render::render;
use runbook_lang::model::RunbookRef;
use runbook_lang::step::{Step, StepKind};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fixture without its `_source` note: the response as Google sends it.
fn fixture(name: &str) -> Value {
    let path = repo().join("tests/fixtures/google").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let source = value.as_object_mut().and_then(|o| o.remove("_source"));
    assert!(source.is_some_and(|s| s.as_str().is_some_and(|s| s.contains("https://"))), "{name}: no _source");
    value
}

fn json(value: Value) -> StepOutput {
    StepOutput { output: Some(value.to_string()), json: Some(value), status: Some(0), ..StepOutput::default() }
}

fn text(value: &str) -> StepOutput {
    StepOutput { output: Some(format!("{value}\n")), status: Some(0), ..StepOutput::default() }
}

/// What each read step of rollback.yaml prints, derived from the fixtures as gcloud derives it
/// (`--format=json` prints the resource, or a list call's items; `--format=value(...)` the
/// field; `versions access` the decoded payload), and the answers a run would take.
fn outputs() -> Outputs {
    let instance = fixture("sql.instances.get");
    let operation = fixture("sql.operations.get");
    let backups = fixture("sql.backupRuns.list")["items"].clone();
    let access = fixture("secretmanager.versions.access");
    let version = fixture("secretmanager.versions.get");
    let service = fixture("run.services.get");
    let revisions = fixture("run.revisions.list")["items"].clone();
    let data = access["payload"]["data"].as_str().unwrap_or_default();
    let secret = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_else(|e| panic!("payload: {e}"));
    let secret = String::from_utf8(secret).unwrap_or_else(|e| panic!("payload: {e}"));
    let pitr = instance["settings"]["backupConfiguration"]["pointInTimeRecoveryEnabled"] == true;
    let version_number = version["name"].as_str().and_then(|n| n.rsplit('/').next()).unwrap_or_default();
    let steps: Vec<(&str, StepOutput)> = vec![
        ("failing_migration_file", text("003_add_course_tags.sql")),
        ("pitr_enabled", text(if pitr { "True" } else { "False" })),
        // An instance already holds the clone's name: the refusal's message renders too.
        ("existing_clone", json(instance.clone())),
        ("clone_op", json(operation.clone())),
        ("clone_wait", text("")),
        ("new_ip", text(instance["ipAddresses"][0]["ipAddress"].as_str().unwrap_or_default())),
        ("current_db_url", text(&secret)),
        ("previous_secret_version", text(version_number)),
        ("previous_db_url", text(&secret)),
        ("backups", json(backups.clone())),
        ("backup_id", text(backups[0]["id"].as_str().unwrap_or_default())),
        ("restore_op", json(operation)),
        ("restore_wait", text("")),
        ("service", json(service)),
        ("revisions", json(revisions)),
        ("previous_revision", text("pegasus-api-00002-x9m")),
        ("monitoring_token", text("ya29.a0-fixture-access-token")),
    ];
    let mut outputs = Outputs::default();
    for (id, output) in &steps {
        outputs.insert(id, output);
    }
    outputs
}

fn rollback() -> RunbookRef {
    let path = repo().join("runbooks/rollback.yaml");
    let checked = runbook_lang::checker::check_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    checked.runbook.unwrap_or_else(|| panic!("rollback.yaml does not check: {:?}", checked.diagnostics))
}

fn plan(runbook: &RunbookRef, procedure: &str) -> Plan {
    let now = chrono::Utc::now();
    let mut params = IndexMap::new();
    params.insert("timestamp".to_owned(), (now - chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string());
    params.insert("failing_migration".to_owned(), "003_add_course_tags.sql".to_owned());
    params.insert("fix_migration".to_owned(), "004_fix_course_tags.sql".to_owned());
    let wanted: Vec<String> = runbook.params_of(procedure).into_iter().map(|p| p.name.clone()).collect();
    params.retain(|name, _| wanted.contains(name));
    let inputs = Inputs { environment: Some("production".to_owned()), params, ..Inputs::default() };
    let mut plan = Plan::bind(runbook.clone(), procedure, inputs, now).unwrap_or_else(|e| panic!("{procedure}: {e}"));
    // As in a run (resumed after `clone_op` started): `run.started_steps` is what done_if reads.
    let started = (now - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    plan.run = Some(runbook_engine::plan::RunInfo {
        id: "20260101T000000.000Z-fixture".to_owned(),
        started: started.clone(),
        started_steps: [("clone_op".to_owned(), started)].into_iter().collect(),
    });
    plan
}

/// Each step and its undo steps, depth first.
fn with_undo<'a>(step: &'a Step, out: &mut Vec<&'a Step>) {
    out.push(step);
    for undo in &step.undo {
        with_undo(undo, out);
    }
}

#[test]
fn every_step_of_rollback_yaml_renders_with_responses_shaped_as_google_documents_them() {
    let runbook = rollback();
    let outputs = outputs();
    let mut failures = Vec::new();
    let mut rendered = 0;
    for procedure in runbook.procedures.keys() {
        let plan = plan(&runbook, procedure);
        let context = plan.context(&outputs);
        let mut steps = Vec::new();
        for step in plan.reachable_steps() {
            with_undo(step, &mut steps);
        }
        for step in steps {
            let at = format!("{procedure}: step `{}`", step.id);
            match render(&plan, step, &outputs) {
                Ok(_) => rendered += 1,
                Err(e) => failures.push(format!("{at}: {e}")),
            }
            let assert = match &step.kind {
                StepKind::Assert(assert) => Some(("assert", &assert.expr)),
                _ => None,
            };
            let exprs =
                step.done_if.iter().map(|e| ("done_if", e)).chain(step.when.iter().map(|e| ("when", e))).chain(assert);
            for (what, expr) in exprs {
                if let Err(e) = expr.eval_located(&context, &plan.runbook.source) {
                    failures.push(format!("{at}: `{what}`: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every procedure's steps, undo steps included: the fixtures reached them all.
    assert!(rendered >= 60, "only {rendered} step(s) rendered");
}

/// The asserts read the fields they mean: over the fixtures (a healthy project whose PITR is
/// on, with an instance already named like the clone and a serving revision created before
/// the day-old --timestamp) each gives the answer those facts call for, so a field read under
/// a wrong name (silently undefined, so false) fails here.
#[test]
fn rollback_yaml_asserts_read_the_fields_of_the_google_fixtures() {
    let runbook = rollback();
    let outputs = outputs();
    let plan = plan(&runbook, "pitr");
    let context = plan.context(&outputs);
    let mut held = Vec::new();
    for step in plan.reachable_steps() {
        if let StepKind::Assert(assert) = &step.kind {
            let value = assert.expr.eval(&context).unwrap_or_else(|e| panic!("{}: {e}", step.id));
            held.push((step.id.clone(), value.is_true()));
        }
    }
    let refused = ["no_clone_yet", "timestamp_before_the_deploy"];
    for (id, holds) in &held {
        assert_eq!(*holds, !refused.contains(&id.as_str()), "assert `{id}` over the fixtures");
    }
    assert!(held.len() >= 6, "{held:?}");
}

/// The `error_rate` watch's `pass` over Cloud Monitoring's answer as Google documents it
/// (int64 values as JSON strings, one series per response class): a low 5xx share passes; a
/// high one, or no traffic at all (`{}`: proto3 leaves an empty list out), does not.
#[test]
fn the_error_rate_watch_judges_monitoring_answers_shaped_as_google_documents_them() {
    let runbook = rollback();
    let plan = plan(&runbook, "verify");
    let Some(StepKind::Watch(watch)) =
        plan.reachable_steps().into_iter().find(|s| s.id == "error_rate").map(|s| &s.kind)
    else {
        panic!("verify has no `error_rate` watch");
    };
    let context = plan.context(&outputs());
    let judge = |answer: &Value| {
        let sample = minijinja::Value::from(minijinja::value::Serde(json(answer.clone())));
        let context = minijinja::context! { sample => sample, ..context.clone() };
        watch.pass.is_true(&context).unwrap_or_else(|e| panic!("`pass` over {answer}: {e}"))
    };
    let recovered = fixture("monitoring.timeSeries.list");
    assert!(judge(&recovered), "0.3% 5xx is under production's 1%");
    let mut failing = recovered.clone();
    failing["timeSeries"][2]["points"][0]["value"]["int64Value"] = Value::from("400");
    assert!(!judge(&failing), "12% 5xx is not recovered");
    assert!(!judge(&serde_json::json!({})), "no traffic at all is not recovered");
}
