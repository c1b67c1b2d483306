//! The shared store (issue 14) against the real fake-gcs-server: one lock, one journal and
//! one history for every machine of the team.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::gcs::FakeGcs;
use crate::support::{Run, Sandbox, signal};

const BUCKET: &str = "team-state";

/// Step `a` sleeps `$HOLD` seconds (a read, so it needs no record first); step `b` writes
/// who ran it into b.log; step `c` fails unless `fixed` exists.
const DEMO: &str = r#"runbook: demo
title: Demo
environments:
  staging: {vars: {project: demo-staging}}
procedures:
  go:
    summary: Hold, write, check
    stages:
      - name: Work
        steps:
          - id: a
            run: [sh, -c, 'sleep ${HOLD:-0}']
            effect: read
            timeout: 60s
          - id: b
            run: [sh, -c, 'echo "$WHO" >> b.log']
          - id: c
            run: [sh, -c, 'test ! -f broken']
"#;

/// One "machine": its own folder and state dir, the shared bucket, an identity.
struct Machine {
    sandbox: Sandbox,
    host: String,
    who: &'static str,
}

impl Machine {
    fn new(gcs: &FakeGcs, who: &'static str) -> Machine {
        let sandbox = Sandbox::new();
        sandbox.file("demo.yaml", DEMO);
        Machine { sandbox, host: gcs.host(), who }
    }

    fn runbook(&self) -> Run {
        self.sandbox
            .runbook()
            .env("STORAGE_EMULATOR_HOST", &self.host)
            .env("RUNBOOK_STATE_URL", format!("gs://{BUCKET}/ops"))
            // Who the team knows: the active gcloud account, as gcloud itself reads it.
            .env("CLOUDSDK_CORE_ACCOUNT", self.who)
            .env("RUNBOOK_STORE_TIMEOUT", "1s")
            .env("WHO", self.who)
    }

    fn go(&self) -> Run {
        self.runbook().args(["demo", "go", "--env", "staging", "--yes"])
    }

    fn spawn(run: Run) -> Child {
        let mut cmd = run.cmd;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"))
    }

    fn written(&self) -> String {
        std::fs::read_to_string(self.sandbox.path().join("b.log")).unwrap_or_default()
    }

    fn history(&self) -> serde_json::Value {
        let out = self.runbook().args(["history", "--format", "json"]).output().success();
        serde_json::from_str(&out.stdout()).unwrap_or_default()
    }
}

fn ids(history: &serde_json::Value) -> Vec<String> {
    history.as_array().into_iter().flatten().filter_map(|r| r["id"].as_str().map(str::to_owned)).collect()
}

/// Waits until `machine`'s run holds its lock and is in step `a` (its local journal says
/// so; polling a file keeps this quick on a busy machine).
fn wait_until_held(machine: &Machine) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let journal = machine.sandbox.journals().pop().unwrap_or_default();
        let text = std::fs::read_to_string(journal).unwrap_or_default();
        if text.contains(r#""event":"step_started","id":"a""#) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the run never reached step a");
}

fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("wait: {e}"));
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_second_machine_is_refused_at_once_naming_the_first_and_both_share_one_history() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (a, b) = (Machine::new(&gcs, "alice@example.com"), Machine::new(&gcs, "bob@example.com"));
    let holder = Machine::spawn(a.go().env("HOLD", "4"));
    wait_until_held(&a);
    let asked = Instant::now();
    let refused = b.go().output().status(2);
    assert!(asked.elapsed() < Duration::from_secs(3), "refused at once, not after waiting");
    // One identity (issue 20): the holder's gcloud account, beside its local account, in the
    // refusal and in `lock status` on the other machine.
    let status = b.runbook().args(["lock", "status"]).output().success().stdout();
    assert!(status.contains("alice@example.com ("), "lock status names the gcloud account: {status}");
    let (code, _) = finish(holder);
    assert_eq!(code, 0);
    let first = ids(&a.history());
    assert_eq!(first.len(), 1);
    assert!(
        refused.stderr().contains(&first[0]) && refused.stderr().contains("alice@example.com"),
        "the refusal names the holder's run and identity: {}",
        refused.stderr()
    );
    b.go().output().success();
    let (on_a, on_b) = (ids(&a.history()), ids(&b.history()));
    assert_eq!(on_a.len(), 2, "{on_a:?}");
    assert_eq!(on_a, on_b, "one history for both machines");
    let users: Vec<String> = a.history().as_array().into_iter().flatten().map(|r| r["status"].to_string()).collect();
    assert_eq!(users, ["\"done\"", "\"done\""]);
    let shown = b.runbook().args(["show", &first[0]]).output().success().stdout();
    assert!(shown.contains("by alice@example.com ("), "show names who ran it as the lock did: {shown}");
    let listed = b.runbook().args(["history"]).output().success().stdout();
    assert!(listed.contains("alice@example.com (") && listed.contains("bob@example.com ("), "{listed}");
    let status = a.runbook().args(["lock", "status"]).output().success().stdout();
    assert_eq!(status.split_whitespace().collect::<Vec<_>>(), ["demo/staging", "free"], "released at the end");
    // The local spool still has each machine's own run.
    assert_eq!(a.sandbox.journals().len(), 1);
    assert_eq!(b.sandbox.journals().len(), 1);
}

#[test]
fn twenty_concurrent_acquirers_exactly_one_wins() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let machines: Vec<Machine> = (0..20).map(|_| Machine::new(&gcs, "racer")).collect();
    let children: Vec<Child> = machines.iter().map(|m| Machine::spawn(m.go().env("HOLD", "3"))).collect();
    let results: Vec<(i32, String)> = children.into_iter().map(finish).collect();
    let winners = results.iter().filter(|(code, _)| *code == 0).count();
    let refused = results.iter().filter(|(code, err)| *code == 2 && err.contains("is already running")).count();
    assert_eq!((winners, refused), (1, 19), "{results:?}");
}

#[test]
fn a_killed_holder_blocks_until_its_lease_runs_out_then_is_taken_over() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (a, b) = (Machine::new(&gcs, "alice"), Machine::new(&gcs, "bob"));
    let mut holder = Machine::spawn(a.go().env("HOLD", "30").env("RUNBOOK_LOCK_LEASE", "3s"));
    wait_until_held(&a);
    signal(holder.id(), "KILL");
    let _ = holder.wait();
    let out = b.go().output().status(2);
    assert!(out.stderr().contains("is already running"), "{}", out.stderr());
    std::thread::sleep(Duration::from_secs(5));
    let out = b.go().output().success();
    assert!(out.stderr().contains("Took over the lock"), "{}", out.stderr());
    let id = ids(&b.history())[0].clone();
    let shown = b.runbook().args(["show", &id]).output().success();
    assert!(shown.stdout().contains("lock taken over by bob"), "{}", shown.stdout());
    assert_eq!(b.written(), "bob\n");
}

#[test]
fn a_holder_stopped_past_its_lease_finds_it_lost_and_stops_before_its_next_mutating_step() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (a, b) = (Machine::new(&gcs, "alice"), Machine::new(&gcs, "bob"));
    let holder = Machine::spawn(a.go().env("HOLD", "2").env("RUNBOOK_LOCK_LEASE", "2s"));
    wait_until_held(&a);
    signal(holder.id(), "STOP");
    std::thread::sleep(Duration::from_secs(4));
    b.go().output().success();
    signal(holder.id(), "CONT");
    let (code, stderr) = finish(holder);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("the run lock is lost") && stderr.contains("runbook resume"), "{stderr}");
    assert_eq!(a.written(), "", "the stale holder did not run its mutating step");
    assert_eq!(b.written(), "bob\n");
}

#[test]
fn a_mutating_step_does_not_run_when_the_store_stops_answering() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let a = Machine::new(&gcs, "alice");
    let holder = Machine::spawn(a.go().env("HOLD", "4").env("RUNBOOK_LOCK_LEASE", "3s"));
    wait_until_held(&a);
    gcs.pause();
    let (code, stderr) = finish(holder);
    gcs.resume();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("step `b` did not start"), "{stderr}");
    assert_eq!(a.written(), "", "no mutation without its record in the store");
    // The run is resumable once the store answers again and the lease ran out (a renewal
    // queued while the server was stopped may land when it wakes: counted from then).
    std::thread::sleep(Duration::from_secs(5));
    let id = a.sandbox.last_run_id();
    a.runbook().args(["resume", &id, "--yes"]).output().success();
    assert_eq!(a.written(), "alice\n");
}

#[test]
fn a_run_failed_on_one_machine_is_finished_on_another_and_shown_on_both() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (a, b) = (Machine::new(&gcs, "alice"), Machine::new(&gcs, "bob"));
    a.sandbox.file("./broken", "");
    let out = a.go().output().status(1);
    let id = a.sandbox.last_run_id();
    assert!(out.stderr().contains(&format!("runbook resume {id}")), "{}", out.stderr());
    assert_eq!(a.written(), "alice\n");

    // Bob never saw the run; his machine has the same runbook folder.
    b.runbook().args(["resume", &id, "--yes"]).output().success();
    assert_eq!(b.written(), "", "step b finished on alice's machine is not run again");

    let shown = a.runbook().args(["show", &id]).output().success().stdout();
    assert!(shown.contains("run started: demo go --env staging by alice"), "{shown}");
    assert!(shown.contains("run resumed: demo go --env staging by bob"), "{shown}");
    assert!(shown.contains("failed c") && shown.ends_with("status: done\n"), "{shown}");
    // Bob's spool holds the whole story too.
    let spool = std::fs::read_to_string(b.sandbox.journals().pop().unwrap_or_default()).unwrap_or_default();
    assert!(spool.contains("\"run_started\"") && spool.contains("\"run_resumed\""), "{spool}");
}

#[test]
fn lock_break_needs_the_typed_name_and_is_journaled_with_who_and_why() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (a, b) = (Machine::new(&gcs, "alice"), Machine::new(&gcs, "bob"));
    let holder = Machine::spawn(a.go().env("HOLD", "8"));
    wait_until_held(&a);
    let breaking = ["lock", "break", "demo", "--env", "staging", "--reason", "alice's laptop died"];
    let out = b.runbook().args(breaking).output().status(2);
    assert!(out.stderr().contains("--confirm demo/staging"), "{}", out.stderr());
    b.runbook().args(breaking).args(["--confirm", "demo/prod"]).output().status(3);
    let status = b.runbook().args(["lock", "status", "demo"]).output().success().stdout();
    assert!(status.contains("held: run") && status.contains("alice"), "{status}");
    b.runbook().args(breaking).args(["--confirm", "demo/staging"]).output().success();
    let status = b.runbook().args(["lock", "status", "--env", "staging"]).output().success().stdout();
    assert!(status.contains("demo/staging") && status.contains("free"), "{status}");
    let _ = finish(holder);
    let id = a.sandbox.last_run_id();
    let shown = b.runbook().args(["show", &id]).output().success().stdout();
    assert!(shown.contains("lock demo/staging broken by bob (") && shown.contains("): alice's laptop died"), "{shown}");
}

/// Three changes; `s1` is still running when the lock is broken (it sleeps `$HOLD`).
const HANDOVER: &str = r#"runbook: demo
environments:
  staging: {vars: {project: demo-staging}}
procedures:
  go:
    stages:
      - name: Work
        steps:
          - id: s1
            run: [sh, -c, 'echo "s1 $WHO" >> log.txt; touch s1-started; sleep ${HOLD:-0}']
            timeout: 60s
          - id: s2
            run: [sh, -c, 'echo "s2 $WHO" >> log.txt']
          - id: s3
            run: [sh, -c, 'echo "s3 $WHO" >> log.txt']
"#;

/// Issue 21: a lock break never takes the holder's next record slot, so the end of the step
/// the holder was running reaches the store, the holder stops before its next change, and a
/// hand-over on another machine runs each finished step zero more times.
#[test]
fn a_lock_break_then_a_hand_over_runs_each_step_once() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (a, b) = (Machine::new(&gcs, "alice@example.com"), Machine::new(&gcs, "bob@example.com"));
    // One folder for both "machines" is not what a team has; the log file proves the order,
    // so both runbooks write to a's folder through an absolute path.
    let log = a.sandbox.path().join("log.txt");
    let text = HANDOVER
        .replace("log.txt", &log.display().to_string())
        .replace("touch s1-started", &format!("touch {}", a.sandbox.path().join("s1-started").display()));
    a.sandbox.file("demo.yaml", &text);
    b.sandbox.file("demo.yaml", &text);
    let holder = Machine::spawn(a.go().env("HOLD", "3"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !a.sandbox.path().join("s1-started").exists() {
        assert!(Instant::now() < deadline, "s1 never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let breaking =
        ["lock", "break", "demo", "--env", "staging", "--reason", "laptop died", "--confirm", "demo/staging"];
    b.runbook().args(breaking).output().success();
    let (code, stderr) = finish(holder);
    assert_eq!(code, 1, "the holder stops before its next change: {stderr}");
    let id = a.sandbox.last_run_id();
    b.runbook().args(["resume", &id, "--yes"]).output().success();
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran, "s1 alice@example.com\ns2 bob@example.com\ns3 bob@example.com\n", "each step once");
    let shown = b.runbook().args(["show", &id]).output().success().stdout();
    assert!(shown.contains("lock demo/staging broken by bob@example.com ("), "{shown}");
    assert!(shown.contains("status: done"), "{shown}");
}

#[test]
fn the_runbook_folders_config_file_names_the_shared_store() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (a, b) = (Machine::new(&gcs, "alice"), Machine::new(&gcs, "bob"));
    // Bob has no RUNBOOK_STATE_URL, only the folder's config file (checked in with the runbooks).
    b.sandbox.file("runbook-state.json", &format!(r#"{{"state_url": "gs://{BUCKET}/ops", "lock_lease": "30s"}}"#));
    a.go().output().success();
    let out =
        b.sandbox.runbook().env("STORAGE_EMULATOR_HOST", gcs.host()).args(["history", "--format", "json"]).output();
    let history: serde_json::Value = serde_json::from_str(&out.success().stdout()).unwrap_or_default();
    assert_eq!(ids(&history), ids(&a.history()));
    b.sandbox.file("runbook-state.json", r#"{"state_url": "gs://ok-bucket/x", "lease": "30s"}"#);
    let out = b.sandbox.runbook().args(["history"]).output().status(2);
    assert!(out.stderr().contains("runbook-state.json") && out.stderr().contains("lease"), "{}", out.stderr());
}

#[test]
fn a_state_url_that_is_not_gs_is_refused_before_anything_runs() {
    let sandbox = Sandbox::new();
    sandbox.file("demo.yaml", DEMO);
    let out = sandbox.runbook().args(["--state-url", "s3://bucket/x", "demo", "go", "--env", "staging", "--yes"]);
    let out = out.env("WHO", "x").output().status(2);
    assert!(out.stderr().contains("expected gs://BUCKET/PREFIX"), "{}", out.stderr());
    assert!(!sandbox.path().join("b.log").exists());
    let out = sandbox.runbook().args(["history", "--lock-lease", "0s"]).output().status(2);
    assert!(out.stderr().contains("between 1s and 24h"), "{}", out.stderr());
}

#[test]
fn the_run_workflow_shares_the_teams_state_url() {
    let workflow = std::fs::read_to_string(crate::support::repo_root().join(".github/workflows/run-runbook.yml"))
        .unwrap_or_default();
    assert!(workflow.contains("RUNBOOK_STATE_URL: ${{ vars.RUNBOOK_STATE_URL }}"), "{workflow}");
}

/// `runbook` as `who` on a machine of the plan tests, with the shared store `gs://BUCKET/<prefix>`.
fn in_store(gcs: &FakeGcs, prefix: &str, machine: &Sandbox, who: &str) -> Run {
    super::plans::as_user(machine, who)
        .env("STORAGE_EMULATOR_HOST", gcs.host())
        .env("RUNBOOK_STATE_URL", format!("gs://{BUCKET}/{prefix}"))
        .env("RUNBOOK_STORE_TIMEOUT", "5s")
}

/// Two machines; a@x saves a production plan on the first, which is copied to the second.
/// Returns them and the plan id's first 8 characters.
fn planned_on_one_copied_to_two(gcs: &FakeGcs, prefix: &str) -> (Sandbox, Sandbox, String) {
    use super::plans::{plan_id, plan_path, sandbox};
    let (one, two) = (sandbox(), sandbox());
    let save = ["svc", "switch", "--env", "production", "--answer", "reason=rollback", "--save-plan", "switch.plan"];
    in_store(gcs, prefix, &one, "a@x").args(save).output().success();
    let plan = std::fs::read(plan_path(&one)).unwrap_or_default();
    std::fs::write(plan_path(&two), &plan).unwrap_or_else(|e| panic!("copy the plan: {e}"));
    let short: String = plan_id(&plan_path(&one)).chars().take(8).collect();
    (one, two, short)
}

const APPLY: [&str; 4] = ["apply", "switch.plan", "--confirm-env", "production"];

/// A plan's approvals and its applied marker live next to it in the shared store: an
/// approval given on one machine counts on another, and a plan applied on one machine is
/// refused on every other (its local state dir knows nothing of it).
#[test]
fn an_approval_given_on_one_machine_counts_on_another_and_a_plan_applies_once_across_machines() {
    use super::plans::{as_user, switched};
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (one, two, short) = planned_on_one_copied_to_two(&gcs, "ops");
    let out = in_store(&gcs, "ops", &two, "b@x").args(["approve", "switch.plan", "--plan-id", &short]).output();
    let out = out.success();
    assert!(out.all().contains("gs://"), "the approval is recorded in the shared store: {}", out.all());
    let out = in_store(&gcs, "ops", &one, "a@x").args(APPLY).output().success();
    assert_eq!(switched(&one), "rev-1-next rollback t0ken-default\n", "{}", out.all());

    let out = in_store(&gcs, "ops", &two, "b@x").args(APPLY).output().status(2);
    assert!(out.stderr().contains("was applied already"), "{}", out.stderr());
    assert_eq!(switched(&two), "", "a plan runs once, whichever machine asks");
    // Without the shared store, machine two's own state dir has no approval of it.
    let out = as_user(&two, "c@x").args(APPLY).output().status(2);
    assert!(out.stderr().contains("has 0 of 1 approval"), "{}", out.stderr());
}

/// Two machines apply one approved plan at the same moment: exactly one runs it. The loser
/// is stopped by the shared run lock or, if it comes after the lock is released, by the
/// applied mark (created with `ifGenerationMatch=0` before anything runs).
#[test]
fn two_machines_applying_one_plan_at_once_run_it_exactly_once() {
    use super::plans::switched;
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (one, two, short) = planned_on_one_copied_to_two(&gcs, "race");
    in_store(&gcs, "race", &one, "b@x").args(["approve", "switch.plan", "--plan-id", &short]).output().success();

    let children: Vec<Child> =
        [&one, &two].iter().map(|m| Machine::spawn(in_store(&gcs, "race", m, "a@x").args(APPLY))).collect();
    let results: Vec<(i32, String)> = children.into_iter().map(finish).collect();
    let codes: Vec<i32> = results.iter().map(|(code, _)| *code).collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{results:?}");
    let refused = |err: &str| err.contains("applied already") || err.contains("is already running");
    assert!(results.iter().any(|(code, err)| *code == 2 && refused(err)), "{results:?}");
    assert_eq!(switched(&one).lines().count() + switched(&two).lines().count(), 1, "the plan ran once");
}
