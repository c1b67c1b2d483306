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
    let broke = b.runbook().args(breaking).args(["--confirm", "demo/staging"]).output().success();
    // Issue 21: the holder renewed its lease moments ago: the breaker is told it is alive.
    assert!(
        broke.stderr().contains("renewed the lease") && broke.stderr().contains("most likely still going"),
        "{}",
        broke.stderr()
    );
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

/// Attack on issue 23 (atk2): one object that is not an approval beside a plan's approvals
/// in the shared store (`plans/<id>/approvals/`) made `apply` fail for everyone, its name
/// printed raw. It is named (escaped) and skipped; the real approval still counts.
#[test]
fn junk_beside_a_plans_approvals_is_named_and_skipped_and_the_plan_still_applies() {
    use super::plans::{plan_id, plan_path, switched};
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (one, two, short) = planned_on_one_copied_to_two(&gcs, "ops");
    in_store(&gcs, "ops", &two, "b@x").args(["approve", "switch.plan", "--plan-id", &short]).output().success();
    let id = plan_id(&plan_path(&one));
    put_object(&gcs, &format!("ops/plans/{id}/approvals/zz-\u{1b}[2Jjunk.json"), b"not json");
    let out = in_store(&gcs, "ops", &one, "a@x").args(APPLY).output().success();
    assert_escaped(&out.all());
    assert!(out.stderr().contains("zz-\\u{1b}[2Jjunk.json"), "the junk is named: {}", out.stderr());
    assert_eq!(switched(&one), "rev-1-next rollback t0ken-default\n", "{}", out.all());
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

/// One call to the emulator's JSON API over a plain socket (what someone with write access
/// to the bucket, or `gsutil`, can do): the status line's code and the body.
fn gcs_call(gcs: &FakeGcs, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", gcs.port))
        .unwrap_or_else(|e| panic!("connect to the emulator: {e}"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        gcs.host(),
        body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body)).unwrap_or_else(|e| panic!("send: {e}"));
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap_or_else(|e| panic!("read: {e}"));
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (code, body)
}

/// Writes an object of `gs://team-state/<name>` as anyone with write access could.
fn put_object(gcs: &FakeGcs, name: &str, body: &[u8]) {
    let name = url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>();
    let (code, answer) =
        gcs_call(gcs, "POST", &format!("/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={name}"), body);
    assert_eq!(code, 200, "{answer}");
}

fn object_names(gcs: &FakeGcs, prefix: &str) -> String {
    gcs_call(gcs, "GET", &format!("/storage/v1/b/{BUCKET}/o?prefix={prefix}"), b"").1
}

/// A lock object as this tool writes one, held by a forged holder whose identity carries
/// escape sequences and is 3 KB long.
fn forged_lock(identity_len: usize) -> Vec<u8> {
    let identity = format!("\u{1b}[2J\u{1b}[31mroot\r{}", "x".repeat(identity_len));
    serde_json::json!({
        "state": "held", "run_id": "r-forged\u{7}", "user": "mallory\u{1b}[0m", "identity": identity,
        "host": "h", "pid": 1, "version": "1", "started": "2026-01-01T00:00:00Z", "lease_seconds": 600,
    })
    .to_string()
    .into_bytes()
}

/// Nothing raw reaches the terminal: no ESC, BEL or carriage return.
fn assert_escaped(text: &str) {
    assert!(!text.contains(['\u{1b}', '\u{7}', '\r']), "raw control characters reached the terminal: {text:?}");
}

/// Issue 23: one `not json` object, one of another schema and one too big to be a record in
/// a run's folder are each named once (escaped) and skipped; the run stays in `history` and
/// `show` (exit 0) and another machine can still hand it over with `resume`.
#[test]
fn junk_objects_in_a_runs_folder_are_named_once_and_skipped_and_the_run_is_still_shown_and_resumable() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (a, b) = (Machine::new(&gcs, "alice"), Machine::new(&gcs, "bob"));
    a.sandbox.file("./broken", "");
    a.go().output().status(1);
    let id = a.sandbox.last_run_id();
    put_object(&gcs, &format!("ops/runs/{id}/00000090.json"), b"not json");
    put_object(&gcs, &format!("ops/runs/{id}/zz-\u{1b}[31mforeign.json"), br#"{"hello": "world"}"#);
    put_object(&gcs, &format!("ops/runs/{id}/zzz-big.json"), &vec![b' '; 1_100_000]);

    let listed = b.runbook().args(["history"]).output().success();
    assert!(listed.stdout().contains(&id), "the run stays in history: {}", listed.all());
    let warned = listed.stderr();
    assert_escaped(&warned);
    // `history` reads a run's first and last records, its headers and ends, and whatever is
    // not named as a record: junk named like a record in the middle is for `show` to name.
    assert!(warned.matches("00000090.json: not JSON").count() <= 1, "{warned}");
    assert_eq!(warned.matches("zz-\\u{1b}[31mforeign.json: JSON of another schema").count(), 1, "{warned}");
    assert_eq!(warned.matches("zzz-big.json: too big").count(), 1, "{warned}");

    let shown = b.runbook().args(["show", &id]).output().success();
    assert!(shown.stdout().contains("status: failed"), "{}", shown.all());
    assert_escaped(&shown.all());
    for junk in ["00000090.json: not JSON", "foreign.json: JSON of another schema", "zzz-big.json: too big"] {
        assert_eq!(shown.stderr().matches(junk).count(), 1, "{junk}: {}", shown.stderr());
    }

    b.runbook().args(["resume", &id, "--yes"]).output().success();
    assert_eq!((a.written(), b.written()), ("alice\n".to_owned(), String::new()), "step b ran once, on alice's");
    let shown = a.runbook().args(["show", &id]).output().success().stdout();
    assert!(
        shown.contains("run resumed: demo go --env staging by bob") && shown.ends_with("status: done\n"),
        "{shown}"
    );
}

/// Attack on issue 23 (atk2): well-formed records under names this tool never writes — a
/// second seq 9 (`000000009.json`, `9.json`), `zz.json`, one in a sub-folder of the run —
/// were read as the run's records and turned a done run into a failed, resumable one (and a
/// sub-folder showed in `history` as a run of its own). They are named and skipped.
#[test]
fn records_under_names_this_tool_never_writes_are_named_and_skipped_not_read() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (a, b) = (Machine::new(&gcs, "alice"), Machine::new(&gcs, "bob"));
    a.go().output().success();
    let id = a.sandbox.last_run_id();
    let forged = br#"{"record":"event","ts":"2026-12-07T09:33:48.262Z","done":3,"duration":"17ms","event":"run_finished","failed":1,"message":"forged","outcome":"failed","skipped":0}"#;
    let names = ["000000009.json", "9.json", "zz.json", "sub/00000099.json", "sub/../../x/00000000.json"];
    for name in names {
        put_object(&gcs, &format!("ops/runs/{id}/{name}"), forged);
    }
    let shown = b.runbook().args(["show", &id]).output().success();
    assert!(shown.stdout().ends_with("status: done\n") && !shown.stdout().contains("forged"), "{}", shown.all());
    for name in names {
        assert_eq!(
            shown.stderr().matches(&format!("{id}/{name}: a journal record under a name")).count(),
            1,
            "{name}: {}",
            shown.stderr()
        );
    }
    let listed = b.history();
    assert_eq!(ids(&listed), std::slice::from_ref(&id), "one run, no run named after a sub-folder: {listed}");
    assert_eq!(listed[0]["status"], "done", "{listed}");
}

/// Issue 23: junk under `locks/` never blocks `lock status` for every lock; a lock object
/// that is not a lock refuses the run that needs it (nothing runs) until `lock break` frees
/// it, after the usual typed confirmation, with a note of who and why in the store.
#[test]
fn junk_under_locks_is_named_lock_status_lists_the_rest_and_lock_break_frees_it_with_a_note() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let b = Machine::new(&gcs, "bob");
    put_object(&gcs, "ops/locks/demo--staging.json", b"not json");
    put_object(&gcs, "ops/locks/README\u{1b}[5m", b"hello");
    put_object(&gcs, "ops/locks/other--prod.json", &forged_lock(10));

    let status = b.runbook().args(["lock", "status"]).output().success();
    assert!(
        status.stdout().contains("other/prod") && status.stdout().contains("held: run r-forged"),
        "{}",
        status.all()
    );
    assert!(!status.stdout().contains("demo/staging"), "junk is not listed as a lock: {}", status.all());
    assert_escaped(&status.all());
    assert_eq!(status.stderr().matches("demo--staging.json: not JSON").count(), 1, "{}", status.stderr());
    assert_eq!(status.stderr().matches("README\\u{1b}[5m").count(), 1, "{}", status.stderr());

    let refused = b.go().output().status(2);
    assert!(refused.stderr().contains("is not a lock") && refused.stderr().contains("lock break"), "{}", refused.all());
    assert_eq!(b.written(), "", "nothing ran");

    let breaking = ["lock", "break", "demo", "--env", "staging", "--reason", "junk in the bucket"];
    b.runbook().args(breaking).output().status(2);
    b.runbook().args(breaking).args(["--confirm", "demo/prod"]).output().status(3);
    let freed = b.runbook().args(breaking).args(["--confirm", "demo/staging"]).output().success();
    assert!(freed.stderr().contains("whose object was not a lock"), "{}", freed.stderr());
    assert!(
        freed.stderr().contains("recorded in gs://team-state/ops/notes/locks/demo--staging/"),
        "{}",
        freed.stderr()
    );
    let notes = object_names(&gcs, "ops/notes/locks/demo--staging/");
    assert!(notes.contains(r#""record":"lock_broken""#) || notes.contains(r#""record": "lock_broken""#), "{notes}");

    b.go().output().success();
    assert_eq!(b.written(), "bob\n");
}

/// Issue 23: a lock holder's identity with escape sequences, 3 KB long, is shown escaped and
/// cut with a note in the refusal and in `lock status`.
#[test]
fn a_forged_holder_is_shown_escaped_and_cut_in_the_refusal_and_in_lock_status() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let b = Machine::new(&gcs, "bob");
    put_object(&gcs, "ops/locks/demo--staging.json", &forged_lock(3000));
    let refused = b.go().output().status(2);
    let status = b.runbook().args(["lock", "status"]).output().success();
    for out in [refused.stderr(), status.stdout()] {
        assert_escaped(&out);
        assert!(out.contains("\\u{1b}[2J\\u{1b}[31mroot\\r") && out.contains("mallory\\u{1b}[0m"), "{out}");
        assert!(out.contains("more characters)") && out.len() < 1000, "cut with a note: {out}");
    }
    assert!(refused.stderr().contains("is already running"), "{}", refused.stderr());
}

/// Issue 23: a run holding `gs://team-state/ops` excludes every other spelling of it; a
/// spelling that names the same objects another way is refused (exit 2), escaped and cut.
#[test]
fn aliases_of_one_state_prefix_never_give_a_second_lock() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (a, b) = (Machine::new(&gcs, "alice"), Machine::new(&gcs, "bob"));
    let holder = Machine::spawn(a.go().env("HOLD", "4"));
    wait_until_held(&a);
    // And (atk2) what a paste adds unseen: a trailing space or no-break space, a zero-width
    // space, a byte-order mark; before, each got a lock of its own beside the holder's.
    for alias in [
        "gs://team-state/./ops",
        "gs://team-state/x/../ops",
        "gs://team-state//ops",
        "gs://team-state/%6fps",
        "gs://team-state/ops ",
        "gs://team-state/ops\u{a0}",
        "gs://team-state/o\u{200b}ps",
        "gs://team-state/\u{feff}ops",
    ] {
        let out = b.go().env("RUNBOOK_STATE_URL", alias).output().status(2);
        assert!(out.stderr().contains("state URL `gs://team-state/"), "{alias}: {}", out.stderr());
    }
    let out = b.go().env("RUNBOOK_STATE_URL", "gs://team-state/ops/").output().status(2);
    assert!(out.stderr().contains("is already running"), "a trailing slash is the same prefix: {}", out.stderr());
    let hostile = format!("gs://team-state/\u{1b}]0;owned\u{7}{}", "y".repeat(5000));
    let out = b.go().env("RUNBOOK_STATE_URL", &hostile).output().status(2);
    assert_escaped(&out.stderr());
    assert!(out.stderr().len() < 600 && out.stderr().contains("more characters)"), "{}", out.stderr());
    let (code, stderr) = finish(holder);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!((a.written(), b.written()), ("alice\n".to_owned(), String::new()));
}

/// Issue 23: at the default 90 s lease, a lock object deleted while its holder sleeps in a
/// read lets a second run take the lock; the first stops before its next mutating step.
#[test]
fn a_deleted_lock_at_the_default_lease_stops_its_holder_before_its_next_mutating_step() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let (a, b) = (Machine::new(&gcs, "alice"), Machine::new(&gcs, "bob"));
    let holder = Machine::spawn(a.go().env("HOLD", "5"));
    wait_until_held(&a);
    let (code, answer) =
        gcs_call(&gcs, "DELETE", &format!("/storage/v1/b/{BUCKET}/o/ops%2Flocks%2Fdemo--staging.json"), b"");
    assert!((200..300).contains(&code), "{code} {answer}");
    b.go().output().success();
    let (code, stderr) = finish(holder);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("the run lock is lost"), "{stderr}");
    assert_eq!((a.written(), b.written()), (String::new(), "bob\n".to_owned()), "only the second run changed things");
}

/// Between the binary and the emulator: forwards each request on a fresh connection, but
/// the answers to the first `losses` creates of the lock object (`ifGenerationMatch=0`) are
/// held back for `delay` and then dropped, after the create has reached the store — lock
/// requests whose answers were lost. [`LossyProxy::skewed`] loses nothing but moves every
/// answer's `Date` by some seconds: the store's clocks disagreeing.
struct LossyProxy {
    port: u16,
}

impl LossyProxy {
    fn start(upstream: u16, delay: Duration, losses: usize) -> LossyProxy {
        Self::spawn(upstream, delay, losses, 0)
    }

    fn skewed(upstream: u16, seconds: i64) -> LossyProxy {
        Self::spawn(upstream, Duration::ZERO, 0, seconds)
    }

    fn spawn(upstream: u16, delay: Duration, losses: usize, skew: i64) -> LossyProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("port: {e}"));
        let lost = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let lost = lost.clone();
                std::thread::spawn(move || Self::serve(client, upstream, (delay, losses, skew), &lost));
            }
        });
        LossyProxy { port }
    }

    fn serve(
        mut client: std::net::TcpStream,
        upstream: u16,
        (delay, losses, skew): (Duration, usize, i64),
        lost: &std::sync::atomic::AtomicUsize,
    ) {
        use std::io::{Read, Write};
        let mut request = Vec::new();
        let mut buf = [0u8; 65536];
        let head_end = loop {
            if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match client.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while request.len() < head_end + length {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        // One request per connection: the emulator closes it, so the client never reuses it.
        let mut lines: Vec<&str> =
            head.trim_end().split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
        lines.push("Connection: close");
        let mut forwarded = (lines.join("\r\n") + "\r\n\r\n").into_bytes();
        forwarded.extend_from_slice(&request[head_end..]);
        let Ok(mut server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else { return };
        let mut answer = Vec::new();
        if server.write_all(&forwarded).is_err() || server.read_to_end(&mut answer).is_err() {
            return;
        }
        if skew != 0 {
            let date = (chrono::Utc::now() + chrono::Duration::seconds(skew)).format("%a, %d %b %Y %H:%M:%S GMT");
            let text = String::from_utf8_lossy(&answer).into_owned();
            let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let head: Vec<String> =
                head.split("\r\n")
                    .map(|l| {
                        if l.to_ascii_lowercase().starts_with("date:") { format!("Date: {date}") } else { l.to_owned() }
                    })
                    .collect();
            answer = format!("{}\r\n\r\n{rest}", head.join("\r\n")).into_bytes();
        }
        let body = String::from_utf8_lossy(&request[head_end..]);
        let lock_create = head.starts_with("POST /upload/")
            && head.contains("ifGenerationMatch=0 ")
            && body.contains("/locks/demo--staging.json");
        if lock_create && lost.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < losses {
            std::thread::sleep(delay);
            return;
        }
        let _ = client.write_all(&answer);
    }
}

/// Attack on issue 23 (atk2): a lock object with a lease no run asks for
/// (`18446744073709551615` s), read while the store's `Date` is behind the object's
/// `updated` (its clocks disagree), made the next run panic (`lease - age` overflowed) and
/// `lock status` say "renewed -3600s ago". A negative age counts as just renewed.
#[test]
fn a_huge_lease_read_when_the_stores_clocks_disagree_is_refused_not_a_panic() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let proxy = LossyProxy::skewed(gcs.port, -3600);
    let a = Machine { host: format!("127.0.0.1:{}", proxy.port), ..Machine::new(&gcs, "alice") };
    let lock = br#"{"state":"held","run_id":"r-big","user":"m","identity":"m","host":"h","pid":1,"version":"1","started":"2026-01-01T00:00:00Z","lease_seconds":18446744073709551615}"#;
    put_object(&gcs, "ops/locks/demo--staging.json", lock);
    let refused = a.go().output().status(2);
    assert!(refused.stderr().contains("is already running") && refused.stderr().contains("r-big"), "{}", refused.all());
    assert!(!refused.stderr().contains("panicked"), "{}", refused.all());
    let status = a.runbook().args(["lock", "status"]).output().success().stdout();
    assert!(status.contains("held: run r-big") && !status.contains("-3600"), "{status}");
    assert_eq!(a.written(), "", "nothing ran");
}

/// Issue 23: the create of a lock object reaches the store but its answer is lost (the
/// client gives up after RUNBOOK_STORE_TIMEOUT=1s). The run recognises the object as its
/// own on the retry and goes on; no phantom holder blocks the next run for the lease.
#[test]
fn a_lock_create_whose_answer_was_lost_is_recognised_as_ours_and_leaves_no_phantom() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let proxy = LossyProxy::start(gcs.port, Duration::from_secs(3), 1);
    let a = Machine { host: format!("127.0.0.1:{}", proxy.port), ..Machine::new(&gcs, "alice") };
    let b = Machine::new(&gcs, "bob");
    let out = a.go().output();
    assert_eq!(out.code(), 0, "{}", out.all());
    assert_eq!(a.written(), "alice\n");
    let out = b.go().output();
    assert_eq!(out.code(), 0, "the next run is not blocked by a phantom: {}", out.all());
    assert_eq!(b.written(), "bob\n");
}

/// Issue 23: every answer to the lock's create is lost, so the run gives up (exit 2, nothing
/// run); the create that landed carries its token, and it frees that object on its way out,
/// so the next run is not blocked for the 90 s lease by a holder that never ran.
#[test]
fn a_run_that_gives_up_taking_the_lock_frees_the_create_of_its_that_landed() {
    let Some(gcs) = FakeGcs::start(BUCKET) else { return };
    let proxy = LossyProxy::start(gcs.port, Duration::from_secs(2), usize::MAX);
    let a = Machine { host: format!("127.0.0.1:{}", proxy.port), ..Machine::new(&gcs, "alice") };
    let b = Machine::new(&gcs, "bob");
    let out = a.go().output().status(2);
    assert!(out.stderr().contains("cannot take the run lock"), "{}", out.stderr());
    assert_eq!(a.written(), "", "nothing ran without the lock");
    let out = b.go().output();
    assert_eq!(out.code(), 0, "no phantom holder: {}", out.all());
    assert_eq!(b.written(), "bob\n");
}
