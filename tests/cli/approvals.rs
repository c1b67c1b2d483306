//! Approvals that cannot be forged, stretched or hidden (issue 22): the count is the
//! runbook's, signatures are OpenSSH's, an approval covers exactly the approved run.

use super::plans::{SVC, apply, approve, as_user, plan_path, sandbox, save_plan, sha256_hex, switched};

/// Rewrites the plan file's JSON with `edit` and labels it with its own hash again, as an
/// author who wants another plan than the one approved would.
fn relabel(sandbox: &crate::support::Sandbox, edit: impl Fn(&mut serde_json::Value)) -> String {
    let path = plan_path(sandbox);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let json = text.split_once('\n').map(|(_, j)| j).unwrap_or_default();
    let mut value: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
    edit(&mut value);
    let json = serde_json::to_string_pretty(&value).unwrap_or_else(|e| panic!("{e}"));
    let id = sha256_hex(json.as_bytes());
    std::fs::write(&path, format!("runbook plan {id}\n{json}")).unwrap_or_else(|e| panic!("{e}"));
    id
}

#[test]
fn a_plan_whose_approval_count_was_lowered_is_refused_as_changed() {
    let sandbox = sandbox();
    sandbox.file("svc.yaml", &SVC.replace("approvals: 1", "approvals: 2"));
    save_plan(&sandbox, "a@x", &[]).success();
    relabel(&sandbox, |plan| plan["approvals_required"] = 1.into());
    approve(&sandbox, "b@x").success();
    let out = apply(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("was changed") && out.stderr().contains("needs 2"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "", "nothing ran");
    assert!(sandbox.journals().is_empty());
}

/// Keys made by the real `ssh-keygen` in the sandbox's `keys/`, and the allowed-signers file
/// beside the runbook: alice and bob (two keys, one principal) are listed; eve is not.
pub(super) struct Keys {
    dir: std::path::PathBuf,
}

impl Keys {
    pub(super) fn new(sandbox: &crate::support::Sandbox) -> Keys {
        let dir = sandbox.path().join("keys");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let keys = Keys { dir };
        let mut allowed = String::from("# principals, then the key (git's allowedSignersFile format)\n");
        for (name, principal) in
            [("alice", Some("alice@x")), ("bob", Some("bob@x")), ("bob2", Some("bob@x")), ("eve", None)]
        {
            let out = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(keys.key(name))
                .output()
                .unwrap_or_else(|e| panic!("ssh-keygen: {e}"));
            assert!(out.status.success(), "{out:?}");
            if let Some(principal) = principal {
                let public = std::fs::read_to_string(keys.public(name)).unwrap_or_else(|e| panic!("{e}"));
                allowed.push_str(&format!("{principal} {public}"));
            }
        }
        sandbox.file("allowed_signers", &allowed);
        keys
    }

    pub(super) fn key(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn public(&self, name: &str) -> String {
        format!("{}.pub", self.key(name))
    }
}

/// The sandbox of `plans.rs` with production's one approval signed.
fn signed_sandbox() -> (crate::support::Sandbox, Keys) {
    let sandbox = sandbox();
    let keys = Keys::new(&sandbox);
    sandbox.file("svc.yaml", &SVC.replace("approvals: 1", "approvals: {count: 1, signers: allowed_signers}"));
    (sandbox, keys)
}

fn signed_plan(sandbox: &crate::support::Sandbox, keys: &Keys, extra: &[&str]) -> String {
    let out = save_plan(sandbox, "a@x", &[&["--signing-key", &keys.key("alice")], extra].concat()).success();
    assert!(plan_path(sandbox).exists(), "{}", out.all());
    super::plans::plan_id(&plan_path(sandbox))
}

fn approve_with(sandbox: &crate::support::Sandbox, account: &str, key: &str) -> crate::support::Finished {
    let prefix: String = super::plans::plan_id(&plan_path(sandbox)).chars().take(8).collect();
    as_user(sandbox, account).args(["approve", "switch.plan", "--plan-id", &prefix, "--key", key]).output()
}

/// The text an approver signs, as the plan file gives it (the documented canonical form).
fn approval_message(sandbox: &crate::support::Sandbox) -> String {
    let text = std::fs::read_to_string(plan_path(sandbox)).unwrap_or_default();
    let (first, json) = text.split_once('\n').unwrap_or_default();
    let plan: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    format!(
        "runbook approval v1\nplan: {}\nrunbook-sha256: {}\nenvironment: {}\nexpires: {}\n",
        first.trim_start_matches("runbook plan "),
        plan["runbook"]["sha256"].as_str().unwrap_or_default(),
        plan["environment"].as_str().unwrap_or_default(),
        plan["expires"].as_str().unwrap_or_default()
    )
}

fn ssh_sign(key: &str, namespace: &str, message: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("ssh-keygen")
        .args(["-Y", "sign", "-f", key, "-n", namespace])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(message.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Puts an approval record straight into the local store, as anyone who can write there can.
fn plant_approval(sandbox: &crate::support::Sandbox, id: &str, file: &str, approver: &str, signature: Option<String>) {
    let dir = sandbox.path().join("state/plans").join(id).join("approvals");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let record = serde_json::json!({
        "plan_id": id, "approver": approver, "time": "2026-01-01T00:00:00Z", "source": "ssh", "signature": signature,
    });
    std::fs::write(dir.join(file), record.to_string()).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_signed_approval_by_an_allowed_principal_counts_whatever_the_account_says() {
    let (sandbox, keys) = signed_sandbox();
    let id = signed_plan(&sandbox, &keys, &[]);
    // The gcloud account claims to be alice; the key says bob, and the key is what counts.
    let out = approve_with(&sandbox, "a@x", &keys.key("bob")).success();
    assert!(out.stderr().contains("Approved plan") && out.stderr().contains("as bob@x (signed;"), "{}", out.stderr());
    let shown = as_user(&sandbox, "b@x").args(["show-plan", "switch.plan"]).output().success();
    assert!(shown.stdout().contains("(now 1: bob@x (SSH signature))"), "{}", shown.stdout());
    assert!(!shown.stdout().contains("REHEARSAL"), "a plan of the real thing: {}", shown.stdout());
    let json = as_user(&sandbox, "b@x").args(["show-plan", "switch.plan", "--output", "json"]).output().success();
    assert!(
        json.stdout().contains("\"rehearsal\": false") && json.stdout().contains("\"source\": \"ssh\""),
        "{}",
        json.stdout()
    );
    assert!(shown.stdout().contains("Made by alice@x (signed; recorded as a@x)"), "{}", shown.stdout());
    let out = apply(&sandbox, "a@x").success();
    assert_eq!(switched(&sandbox), "rev-1-next rollback t0ken-default\n", "{}", out.all());
    let journal = std::fs::read_to_string(sandbox.journals().pop().unwrap_or_default()).unwrap_or_default();
    assert!(journal.contains("\"approvers\":[\"bob@x\"]") && journal.contains(&id), "{journal}");
}

#[test]
fn signatures_by_an_unlisted_key_the_author_or_for_something_else_do_not_count() {
    let (sandbox, keys) = signed_sandbox();
    // The author must sign: otherwise nobody could tell their own approval from another's.
    let out = save_plan(&sandbox, "a@x", &[]).status(2);
    assert!(out.stderr().contains("--signing-key"), "{}", out.stderr());
    let id = signed_plan(&sandbox, &keys, &[]);

    let out = approve_with(&sandbox, "e@x", &keys.key("eve")).status(2);
    assert!(out.stderr().contains("would not count") && out.stderr().contains("not in"), "{}", out.stderr());
    let out = approve_with(&sandbox, "b@x", &keys.key("alice")).status(2);
    assert!(out.stderr().contains("alice@x made plan"), "{}", out.stderr());

    // Records planted in the store: the author's own signature, bob's signature of another
    // plan, bob's signature of this plan in another namespace (git's), eve's, and an unsigned one.
    let message = approval_message(&sandbox);
    let other = message.replace(&id, &"0".repeat(64));
    let planted = [
        ("author.json", "carol@x", Some(ssh_sign(&keys.key("alice"), "runbook-approval@runbook", &message))),
        ("other.json", "bob@x", Some(ssh_sign(&keys.key("bob"), "runbook-approval@runbook", &other))),
        ("git.json", "bob@x", Some(ssh_sign(&keys.key("bob"), "git", &message))),
        ("eve.json", "bob@x", Some(ssh_sign(&keys.key("eve"), "runbook-approval@runbook", &message))),
        ("unsigned.json", "bob@x", None),
    ];
    for (file, approver, signature) in planted {
        plant_approval(&sandbox, &id, file, approver, signature);
    }
    let out = apply(&sandbox, "a@x").status(2);
    let err = out.stderr();
    assert!(err.contains("has 0 of 1 approval"), "{err}");
    assert!(err.contains("the approval by alice@x does not count: they made the plan"), "{err}");
    assert!(err.matches("does not verify").count() == 2, "another plan and another namespace: {err}");
    assert!(err.contains("not in") && err.contains("is not signed"), "{err}");
    assert_eq!(switched(&sandbox), "");
}

#[test]
fn two_signatures_by_one_principal_count_once() {
    let (sandbox, keys) = signed_sandbox();
    sandbox.file("svc.yaml", &SVC.replace("approvals: 1", "approvals: {count: 2, signers: allowed_signers}"));
    let id = signed_plan(&sandbox, &keys, &[]);
    approve_with(&sandbox, "b@x", &keys.key("bob")).success();
    let out = approve_with(&sandbox, "b@x", &keys.key("bob2")).status(2);
    assert!(out.stderr().contains("bob@x approved plan") && out.stderr().contains("already"), "{}", out.stderr());
    // The second key's signature planted under another name still counts once.
    let signature = ssh_sign(&keys.key("bob2"), "runbook-approval@runbook", &approval_message(&sandbox));
    plant_approval(&sandbox, &id, "second-key.json", "robert@x", Some(signature));
    let out = apply(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("has 1 of 2 approvals"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "");
}

#[test]
fn an_approval_signed_for_an_expired_plan_is_refused() {
    let (sandbox, keys) = signed_sandbox();
    signed_plan(&sandbox, &keys, &["--plan-ttl", "2s"]);
    approve_with(&sandbox, "b@x", &keys.key("bob")).success();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = apply(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("expired"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "");
}

/// `--key` takes a public key whose private half is in `ssh-agent`, as `ssh-keygen -Y sign`
/// does: the agent is started by the test and ended by it.
#[test]
fn a_public_key_whose_private_half_is_in_the_agent_signs() {
    let (sandbox, keys) = signed_sandbox();
    signed_plan(&sandbox, &keys, &[]);
    let socket = sandbox.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("ssh-agent: {e}"));
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = std::process::Command::new("ssh-add").arg(keys.key("bob")).env("SSH_AUTH_SOCK", &socket).output();
    // The private key leaves the disk: only the agent holds it now.
    std::fs::remove_file(keys.key("bob")).unwrap_or_else(|e| panic!("{e}"));
    let prefix: String = super::plans::plan_id(&plan_path(&sandbox)).chars().take(8).collect();
    let out = as_user(&sandbox, "b@x")
        .env("SSH_AUTH_SOCK", &socket)
        .env("RUNBOOK_SIGNING_KEY", keys.public("bob"))
        .args(["approve", "switch.plan", "--plan-id", &prefix])
        .output();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(added.as_ref().is_ok_and(|o| o.status.success()), "ssh-add: {added:?}");
    let out = out.success();
    assert!(out.stderr().contains("as bob@x (signed;"), "{}", out.stderr());
    apply(&sandbox, "a@x").success();
}

#[test]
fn without_ssh_keygen_signing_says_what_is_missing() {
    let (sandbox, keys) = signed_sandbox();
    signed_plan(&sandbox, &keys, &[]);
    let prefix: String = super::plans::plan_id(&plan_path(&sandbox)).chars().take(8).collect();
    let out = as_user(&sandbox, "b@x")
        .env("PATH", sandbox.path().join("bin"))
        .args(["approve", "switch.plan", "--plan-id", &prefix, "--key", &keys.key("bob")])
        .output()
        .status(2);
    assert!(out.stderr().contains("ssh-keygen") && out.stderr().contains("not on PATH"), "{}", out.stderr());
}

/// A creator written with escape sequences (`\e[30A\e[J` would erase the steps above the
/// prompt) is shown with its escapes visible by show-plan, approve and apply.
#[test]
fn an_escape_sequence_in_the_plan_file_is_shown_escaped() {
    let sandbox = sandbox();
    save_plan(&sandbox, "a@x", &[]).success();
    relabel(&sandbox, |plan| plan["creator"] = "alice@x\u{1b}[30A\u{1b}[J".into());
    let shown = as_user(&sandbox, "b@x").args(["show-plan", "switch.plan"]).output().success();
    let approved = approve(&sandbox, "b@x").success();
    let applied = apply(&sandbox, "c@x").success();
    for out in [shown.stdout(), approved.stderr(), applied.all()] {
        assert!(!out.contains('\u{1b}'), "a raw escape reached the terminal: {out:?}");
    }
    assert!(shown.stdout().contains("alice@x\\u{1b}[30A\\u{1b}[J"), "{}", shown.stdout());
    assert!(approved.stderr().contains("alice@x\\u{1b}[30A"), "{}", approved.stderr());
}

/// `approvals: {count, signers}` names a file beside the runbook that must be readable at
/// validate (an error at its file:line:col); plain `approvals: N` on a protected environment
/// still works, with a warning that it is unsigned (RB105).
#[test]
fn validate_checks_the_signers_file_and_warns_about_unsigned_approvals() {
    let sandbox = sandbox();
    sandbox.file("svc.yaml", &SVC.replace("approvals: 1", "approvals: {count: 1, signers: nowhere/allowed}"));
    let out = sandbox.runbook().args(["validate", "runbooks/svc.yaml"]).output().status(1);
    let line = SVC.lines().position(|l| l.contains("approvals: 1")).map_or(0, |i| i + 1);
    assert!(out.stderr().contains(&format!("svc.yaml:{line}:36")), "{}", out.all());
    assert!(!out.all().contains("RB105"), "{}", out.all());
    assert!(out.all().contains("cannot read the signers file `nowhere/allowed`"), "{}", out.all());

    sandbox.file("svc.yaml", SVC);
    let out = sandbox.runbook().args(["validate", "runbooks/svc.yaml"]).output().success();
    assert!(out.all().contains("RB105") && out.all().contains("are not signed"), "{}", out.all());
    sandbox.runbook().args(["validate", "runbooks/svc.yaml", "--strict"]).output().status(1);
}

/// `--save-plan` evaluates the asserts whose inputs it knows (probes, answers, params): a
/// plan whose assert fails is not written, and the assert is named; the others are listed for
/// the approver with whether they hold.
#[test]
fn save_plan_refuses_a_plan_whose_assert_fails_and_shows_the_others() {
    let sandbox = sandbox();
    let checked = SVC.replace(
        "          - id: switch\n",
        "          - id: not_current\n            assert: \"steps.reason.output != steps.current.output\"\n            message: the reason names the serving revision\n          - id: switch\n",
    );
    sandbox.file("svc.yaml", &checked);
    let out = as_user(&sandbox, "a@x")
        .args(["svc", "switch", "--env", "production", "--answer", "reason=rev-1", "--save-plan", "switch.plan"])
        .output()
        .status(2);
    assert!(out.stderr().contains("assert `not_current` fails"), "{}", out.stderr());
    assert!(out.stderr().contains("the reason names the serving revision"), "{}", out.stderr());
    assert!(!plan_path(&sandbox).exists());
    save_plan(&sandbox, "a@x", &[]).success();
    let shown = as_user(&sandbox, "b@x").args(["show-plan", "switch.plan"]).output().success();
    assert!(
        shown.stdout().contains("not_current: steps.reason.output != steps.current.output (holds now)"),
        "{}",
        shown.stdout()
    );
    assert!(shown.stdout().contains("Answers:\n  reason: rollback"), "{}", shown.stdout());
}

/// The approver reads each choice with its label, as the operator would see it.
#[test]
fn a_plan_shows_choices_with_their_labels() {
    let sandbox = sandbox();
    let labelled = SVC.replace(
        "          - id: reason\n            prompt: Why?\n",
        "          - id: revs\n            run: [printf, '[{\"n\": \"rev-1\", \"s\": \"SERVING NOW\"}, {\"n\": \"rev-0\", \"s\": \"old\"}]']\n            effect: read\n            capture: json\n            timeout: 5s\n          - id: reason\n            prompt: Why?\n            choices: \"steps.revs.json\"\n            value: \"{{ item.n }}\"\n            label: \"{{ item.n }} · {{ item.s }}\"\n",
    );
    sandbox.file("svc.yaml", &labelled);
    as_user(&sandbox, "a@x")
        .args(["svc", "switch", "--env", "production", "--answer", "reason=rev-0", "--save-plan", "switch.plan"])
        .output()
        .success();
    let shown = as_user(&sandbox, "b@x").args(["show-plan", "switch.plan"]).output().success();
    assert!(shown.stdout().contains("  - rev-1: rev-1 · SERVING NOW"), "{}", shown.stdout());
    assert!(shown.stdout().contains("  - rev-0: rev-0 · old"), "{}", shown.stdout());
}

/// A runbook whose `gate` fails until `ok.txt` exists: the approved plan fails there at apply.
pub(super) const GATED: &str = r#"runbook: svc
environments:
  production:
    protected: true
    approvals: 1
    vars: {}
procedures:
  switch:
    stages:
      - name: Switch
        steps:
          - id: reason
            prompt: Why?
          - id: gate
            run: [sh, -c, 'test -e ok.txt']
            timeout: 5s
          - id: switch
            run: [sh, -c, 'echo "$1" >> switched.log', x, "{{ steps.reason.output }}"]
            timeout: 5s
            undo:
              id: switch_back
              run: [sh, -c, 'echo back >> switched.log']
              timeout: 5s
"#;

fn applied_and_failed() -> (crate::support::Sandbox, String) {
    let sandbox = sandbox();
    sandbox.file("svc.yaml", GATED);
    save_plan(&sandbox, "a@x", &[]).success();
    approve(&sandbox, "b@x").success();
    apply(&sandbox, "a@x").status(1);
    let id = sandbox.last_run_id();
    (sandbox, id)
}

/// An approval covers the approved run only: resuming it with a new answer (or `--from`) is
/// refused with nothing run, unless a break-glass reason is given, which is journaled and
/// listed; a plain resume goes on under the approval and says so.
#[test]
fn resuming_an_applied_run_with_a_new_answer_needs_break_glass() {
    let (sandbox, id) = applied_and_failed();
    let resume = |extra: &[&str]| {
        as_user(&sandbox, "a@x").args(["resume", &id, "--yes", "--confirm-env", "production"]).args(extra).output()
    };
    let out = resume(&["--answer", "reason=another"]).status(2);
    assert!(
        out.stderr().contains("is not what was approved") && out.stderr().contains("--break-glass"),
        "{}",
        out.stderr()
    );
    assert!(out.stderr().contains("a new --answer reason"), "{}", out.stderr());
    let out = resume(&["--from", "reason"]).status(2);
    assert!(out.stderr().contains("--from reason"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "", "nothing ran");

    // The same steps and values: allowed, and said (the gate still fails).
    let out = resume(&["--answer", "reason=rollback"]).status(1);
    assert!(out.stderr().contains("the same steps and values as approved"), "{}", out.stderr());

    std::fs::write(sandbox.path().join("ok.txt"), "").unwrap_or_else(|e| panic!("{e}"));
    resume(&["--answer", "reason=another", "--break-glass", "the approved revision is gone"]).success();
    assert_eq!(switched(&sandbox), "another\n");
    let json = sandbox.runbook().args(["history", "--break-glass", "--format", "json"]).output().success();
    let list: serde_json::Value = serde_json::from_str(&json.stdout()).unwrap_or_default();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{}", json.stdout());
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["break_glass"], "the approved revision is gone");
}

/// `runbook undo` of an applied run follows the environment's rule for direct runs.
#[test]
fn undoing_an_applied_run_needs_break_glass_where_direct_runs_do() {
    let sandbox = sandbox();
    sandbox.file("svc.yaml", GATED);
    std::fs::write(sandbox.path().join("ok.txt"), "").unwrap_or_else(|e| panic!("{e}"));
    save_plan(&sandbox, "a@x", &[]).success();
    approve(&sandbox, "b@x").success();
    apply(&sandbox, "a@x").success();
    let id = sandbox.last_run_id();
    let undo = |extra: &[&str]| {
        as_user(&sandbox, "a@x").args(["undo", &id, "--yes", "--confirm-env", "production"]).args(extra).output()
    };
    let out = undo(&[]).status(2);
    assert!(out.stderr().contains("needs 1 approval for a direct run"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "rollback\n");
    undo(&["--break-glass", "the switch broke checkout"]).success();
    assert_eq!(switched(&sandbox), "rollback\nback\n");
}

/// In GitHub Actions the environment's required reviewers remain the approval on a signed
/// environment too: the plan's author is `github:<actor>` (no key), a `github:<login>`
/// reviewer counts, and an SSH signature does not count for a plan nobody signed.
#[test]
fn on_a_signed_environment_a_github_plan_is_approved_by_a_github_reviewer_only() {
    let (sandbox, keys) = signed_sandbox();
    let github = |run: crate::support::Run| run.env("GITHUB_ACTIONS", "true").env("GITHUB_ACTOR", "alice");
    github(as_user(&sandbox, "deployer@p.iam.gserviceaccount.com"))
        .args(["svc", "switch", "--env", "production", "--answer", "reason=gh", "--save-plan", "switch.plan"])
        .output()
        .success();
    let out = approve_with(&sandbox, "b@x", &keys.key("bob")).status(2);
    assert!(out.stderr().contains("only the GitHub environment's reviewers approve it"), "{}", out.stderr());
    let prefix: String = super::plans::plan_id(&plan_path(&sandbox)).chars().take(8).collect();
    github(as_user(&sandbox, "deployer@p.iam.gserviceaccount.com"))
        .env("RUNBOOK_GITHUB_REVIEWER", "bob")
        .args(["approve", "switch.plan", "--plan-id", &prefix, "--approver-from-github"])
        .output()
        .success();
    github(as_user(&sandbox, "deployer@p.iam.gserviceaccount.com"))
        .args(["apply", "switch.plan", "--confirm-env", "production"])
        .output()
        .success();
    assert_eq!(switched(&sandbox), "rev-1-next gh t0ken-default\n");
}

/// On a signed environment an account name never counts, whatever it says.
#[test]
fn on_a_signed_environment_an_unsigned_approval_is_refused_at_approve() {
    let (sandbox, keys) = signed_sandbox();
    signed_plan(&sandbox, &keys, &[]);
    let out = approve(&sandbox, "b@x").status(2);
    assert!(out.stderr().contains("takes signed approvals: pass --key PATH"), "{}", out.stderr());
}

/// A plan whose runbook file is gone is still shown, saying apply will refuse it and that
/// nobody can tell which approvals count.
#[test]
fn show_plan_of_a_plan_whose_runbook_is_gone_still_shows_it() {
    let sandbox = sandbox();
    save_plan(&sandbox, "a@x", &[]).success();
    approve(&sandbox, "b@x").success();
    std::fs::remove_file(sandbox.path().join("runbooks/svc.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let shown = as_user(&sandbox, "b@x").args(["show-plan", "switch.plan"]).output().success();
    assert!(shown.stdout().contains("apply will refuse this plan"), "{}", shown.stdout());
    assert!(shown.stdout().contains("cannot tell which approvals count"), "{}", shown.stdout());
    assert!(shown.stdout().contains("(now 0)"), "{}", shown.stdout());
}

/// Issue 22, attacked from outside: a journal is plain text in the state dir (or the shared
/// bucket). A run that applied no plan and broke no glass cannot exist in an environment whose
/// direct runs need approvals — one written (or edited) by hand, or a staging run relabelled
/// `production`, must not resume or undo there as if approved: it needs a break-glass reason.
#[test]
fn a_journal_relabelled_to_a_gated_environment_does_not_resume_or_undo_without_break_glass() {
    let (sandbox, id) = relabelled_staging_run("");
    let again = |command: &str, extra: &[&str]| {
        as_user(&sandbox, "a@x").args([command, &id, "--yes", "--confirm-env", "production"]).args(extra).output()
    };
    let out = again("resume", &[]).status(2);
    assert!(out.stderr().contains("needs 1 approval") && out.stderr().contains("--break-glass"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "", "a relabelled journal ran in production without approval");
    let out = again("undo", &[]).status(2);
    assert!(out.stderr().contains("--break-glass"), "{}", out.stderr());

    again("resume", &["--break-glass", "the staging run must finish in production"]).success();
    assert_eq!(switched(&sandbox), "x\n");
    let json = sandbox.runbook().args(["history", "--break-glass", "--format", "json"]).output().success();
    assert!(json.stdout().contains("the staging run must finish in production"), "{}", json.stdout());
}

/// A failed staging run of GATED whose journal header now says `production` (plus `extra`
/// header fields), with the gate open: what someone who can write the state dir makes.
fn relabelled_staging_run(extra: &str) -> (crate::support::Sandbox, String) {
    let sandbox = sandbox();
    sandbox.file("svc.yaml", &GATED.replace("    vars: {}\n", "    vars: {}\n  staging: {}\n"));
    as_user(&sandbox, "a@x")
        .args(["svc", "switch", "--env", "staging", "--answer", "reason=x", "--yes"])
        .output()
        .status(1);
    let journal = sandbox.journals().pop().unwrap_or_default();
    let text = std::fs::read_to_string(&journal).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("\"environment\":\"staging\""), "{text}");
    let relabelled = format!("\"environment\":\"production\"{extra}");
    std::fs::write(&journal, text.replacen("\"environment\":\"staging\"", &relabelled, 1))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(sandbox.path().join("ok.txt"), "").unwrap_or_else(|e| panic!("{e}"));
    let id = sandbox.last_run_id();
    (sandbox, id)
}

/// The same, claiming to be the run of an approved plan: the approval store has no record that
/// this run applied that plan, so nothing runs under an approval nobody gave.
#[test]
fn a_journal_that_claims_an_applied_plan_the_store_does_not_know_is_refused() {
    let forged = format!(",\"plan_id\":\"{}\",\"approvers\":[\"bob@x\"]", "ab".repeat(32));
    let (sandbox, id) = relabelled_staging_run(&forged);
    let out = as_user(&sandbox, "a@x").args(["resume", &id, "--confirm-env", "production"]).output().status(2);
    assert!(out.stderr().contains("no record") && out.stderr().contains("applied"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "", "a forged approval ran in production");
    let out = as_user(&sandbox, "a@x").args(["undo", &id, "--yes", "--confirm-env", "production"]).output().status(2);
    assert!(out.stderr().contains("no record"), "{}", out.stderr());
}

/// Issue 22, attacked from outside: the plan names the runbook file it was made from. A byte
/// for byte copy of the reviewed runbook elsewhere has the same sha256, but its signers file is
/// whatever sits beside the copy — here one that lists eve's key as bob@x. apply takes the
/// runbook (and its signers) from its runbook folder (`--dir`), never from the plan's path.
#[test]
fn a_plan_made_from_a_copy_of_the_runbook_outside_the_runbook_folder_is_refused() {
    let (sandbox, keys) = signed_sandbox();
    let reviewed = std::fs::read_to_string(sandbox.path().join("runbooks/svc.yaml")).unwrap_or_default();
    sandbox.file("elsewhere/svc.yaml", &reviewed);
    let eve = std::fs::read_to_string(format!("{}.pub", keys.key("eve"))).unwrap_or_default();
    let alice = std::fs::read_to_string(format!("{}.pub", keys.key("alice"))).unwrap_or_default();
    sandbox.file("elsewhere/allowed_signers", &format!("alice@x {alice}bob@x {eve}"));
    as_user(&sandbox, "a@x")
        .args(["svc", "switch", "--dir", "elsewhere", "--env", "production", "--answer", "reason=rollback"])
        .args(["--save-plan", "switch.plan", "--signing-key", &keys.key("alice")])
        .output()
        .success();
    approve_with(&sandbox, "b@x", &keys.key("eve")).success();
    let out = apply(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("has 0 of 1 approval") && out.stderr().contains("not in"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "", "eve's key counted as bob@x through a copied runbook");
}

/// Issue 22, attacked from outside: `--plan-ttl` is at most 30 days, but the expiry is a field
/// of the plan file. An author who writes 2099 there (and relabels the plan) gets a plan that
/// never expires once approved; one dated in the future is not valid either.
#[test]
fn a_plan_edited_to_live_past_thirty_days_or_made_in_the_future_is_expired() {
    let sandbox = sandbox();
    save_plan(&sandbox, "a@x", &[]).success();
    relabel(&sandbox, |plan| {
        plan["created"] = "2025-01-01T00:00:00Z".into();
        plan["expires"] = "2099-01-01T00:00:00Z".into();
    });
    let out = approve(&sandbox, "b@x").status(2);
    assert!(out.stderr().contains("expired at"), "{}", out.stderr());
    let shown = as_user(&sandbox, "b@x").args(["show-plan", "switch.plan"]).output().success();
    assert!(shown.stdout().contains("EXPIRED"), "{}", shown.stdout());

    save_plan(&sandbox, "a@x", &[]).success();
    approve(&sandbox, "b@x").success();
    // Approved as made; then stretched: the approvals are for another id, and the plan is
    // refused as expired before they are even counted.
    relabel(&sandbox, |plan| {
        plan["created"] = "2098-12-31T00:00:00Z".into();
        plan["expires"] = "2099-01-01T00:00:00Z".into();
    });
    let out = apply(&sandbox, "a@x").status(2);
    assert!(out.stderr().contains("expired"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "");
}

/// Issue 22, attacked from outside: the journal of a run that really applied a plan is a file
/// its author can edit. With the approved answer rewritten in it, a plain resume would run the
/// new value "as approved". apply records a digest of the run's params, answers and vars with
/// the plan's applied mark; a resume whose journal differs is not the approved run.
#[test]
fn a_plain_resume_of_an_applied_run_whose_journal_answers_were_edited_needs_break_glass() {
    let (sandbox, id) = applied_and_failed();
    let journal = sandbox.journals().pop().unwrap_or_default();
    let text = std::fs::read_to_string(&journal).unwrap_or_default();
    assert!(text.contains(r#"["reason","rollback"]"#), "{text}");
    std::fs::write(&journal, text.replace(r#"["reason","rollback"]"#, r#"["reason","evil"]"#))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(sandbox.path().join("ok.txt"), "").unwrap_or_else(|e| panic!("{e}"));
    let out = as_user(&sandbox, "a@x").args(["resume", &id, "--yes", "--confirm-env", "production"]).output().status(2);
    assert!(out.stderr().contains("differ from those the plan was applied with"), "{}", out.stderr());
    assert_eq!(switched(&sandbox), "", "the edited answer ran under the approval");
}
