//! `watch:` steps (issue 26) on a local command whose output changes over time: each sample
//! reads the next line of `series.txt` (the last one once they run out) and counts itself
//! in `count`; `err` makes the sample exit 3, `junk` prints something that is not JSON.
//! Time to recovery is recorded when the `recovery: true` watch passes.

use std::time::{Duration, Instant};

use crate::support::{Sandbox, signal};

fn runbook(every: &str, within: &str, hold: u32) -> String {
    format!(
        r#"runbook: w
title: Watch a series
procedures:
  go:
    summary: Watch the error ratio
    stages:
      - name: Verify
        steps:
          - id: error_rate
            name: ratio back under 1%
            watch:
              shell: |
                n=$(( $(cat count 2>/dev/null || echo 0) + 1 )); echo "$n" > count
                v=$(sed -n "${{n}}p" series.txt); [ -n "$v" ] || v=$(tail -n 1 series.txt)
                case "$v" in
                  err) echo "boom at $n" >&2; exit 3;;
                  junk) echo "not json";;
                  *) echo "{{\"ratio\": $v}}";;
                esac
              capture: json
              every: {every}
              within: {within}
              pass: "sample.json.ratio <= 0.01"
              hold: {hold}
              fail: "sample.json.ratio > 0.5"
            recovery: true
          - id: after
            run: [sh, -c, 'echo "$0" > after.txt', "{{{{ steps.error_rate.json.ratio }}}}"]
"#
    )
}

fn sandbox(series: &str, every: &str, within: &str, hold: u32) -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.file("w.yaml", &runbook(every, within, hold));
    sandbox.file("./series.txt", series);
    sandbox
}

fn samples_taken(sandbox: &Sandbox) -> u32 {
    std::fs::read_to_string(sandbox.path().join("count")).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}

fn events(sandbox: &Sandbox, kind: &str) -> Vec<serde_json::Value> {
    let journal = sandbox.journals().last().cloned().unwrap_or_default();
    let text = std::fs::read_to_string(&journal).unwrap_or_else(|e| panic!("{}: {e}", journal.display()));
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["event"] == kind || r["record"] == kind)
        .collect()
}

fn history(sandbox: &Sandbox) -> serde_json::Value {
    let out = sandbox.runbook().args(["history", "--format", "json"]).output().success();
    let list: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap_or_else(|e| panic!("json: {e}"));
    list[0].clone()
}

#[test]
fn a_watch_passes_after_hold_samples_in_a_row_and_not_before() {
    // Passing at 2-3 (a streak of 2), broken by 4, then 5-7 pass: done at sample 7.
    let sandbox = sandbox("0.2\n0.01\n0.005\n0.3\n0.01\n0.0\n0.001\n0.9\n", "50ms", "10s", 3);
    let out = sandbox.runbook().args(["w", "go", "--yes"]).output().success();
    assert_eq!(samples_taken(&sandbox), 7, "{}", out.stderr());
    // Without a terminal, a timestamped line per sample.
    assert!(out.stderr().contains("sample 3: {\"ratio\":0.005} — passing (2/3)"), "{}", out.stderr());
    assert!(out.stderr().contains("sample 4: {\"ratio\":0.3} — not passing"), "{}", out.stderr());
    assert!(out.stderr().contains("sample 7: {\"ratio\":0.001} — passing (3/3)"), "{}", out.stderr());
    // Its output, for later steps, is the last sample.
    let after = std::fs::read_to_string(sandbox.path().join("after.txt")).unwrap_or_default();
    assert_eq!(after.trim(), "0.001");
    // Journaled bounded: the first and the last sample, with the count between.
    let samples = events(&sandbox, "watch_sample");
    let numbers: Vec<u64> = samples.iter().filter_map(|e| e["sample"].as_u64()).collect();
    assert_eq!(numbers, vec![1, 7]);
    assert_eq!(samples[1]["not_journaled"], 5);
    assert_eq!(samples[1]["passing"], true);
    // Time to recovery: journaled, in the summary, `show` and `history`.
    let recovered = events(&sandbox, "recovered");
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0]["id"], "error_rate");
    let seconds = recovered[0]["seconds"].as_f64().unwrap_or(-1.0);
    assert!(seconds > 0.0 && seconds < 10.0, "{seconds}");
    assert!(out.stderr().contains("Time to recovery: "), "{}", out.stderr());
    assert!(out.stderr().contains("(error_rate passed)"), "{}", out.stderr());
    let id = sandbox.last_run_id();
    let show = sandbox.runbook().args(["show", &id]).output().success().stdout();
    assert!(show.contains("◷ error_rate sample 1: {\"ratio\":0.2} — not passing"), "{show}");
    assert!(show.contains("sample 7: {\"ratio\":0.001} — passing (3/3)"), "{show}");
    assert!(show.contains("(5 sample(s) between not journaled)"), "{show}");
    assert!(show.contains("time to recovery: "), "{show}");
    let entry = history(&sandbox);
    assert_eq!(entry["time_to_recovery_s"].as_f64(), Some(seconds));
    assert_eq!(entry["recovery"], "recovered");
    let table = sandbox.runbook().args(["history"]).output().success().stdout();
    assert!(table.contains("RECOVERY"), "{table}");
}

#[test]
fn a_watch_fails_at_once_when_fail_holds() {
    let sandbox = sandbox("0.2\n0.6\n0.0\n", "50ms", "10s", 1);
    let out = sandbox.runbook().args(["w", "go", "--yes"]).output().status(1);
    assert_eq!(samples_taken(&sandbox), 2);
    assert!(
        out.stderr().contains("step `error_rate` failed: `fail: sample.json.ratio > 0.5` held at sample 2"),
        "{}",
        out.stderr()
    );
    assert!(!sandbox.path().join("after.txt").exists());
    assert!(out.stderr().contains("Time to recovery: not recovered"), "{}", out.stderr());
    let entry = history(&sandbox);
    assert_eq!(entry["time_to_recovery_s"], serde_json::Value::Null);
    assert_eq!(entry["recovery"], "not recovered");
}

#[test]
fn a_watch_fails_when_within_runs_out() {
    let sandbox = sandbox("0.2\n", "100ms", "600ms", 1);
    let started = Instant::now();
    let out = sandbox.runbook().args(["w", "go", "--yes"]).output().status(1);
    assert!(started.elapsed() < Duration::from_secs(5));
    let taken = samples_taken(&sandbox);
    assert!((3..=6).contains(&taken), "{taken} samples");
    assert!(
        out.stderr().contains(&format!(
            "`within: 600ms` ran out after {taken} sample(s) without `pass: sample.json.ratio <= 0.01` holding"
        )),
        "{}",
        out.stderr()
    );
    assert!(out.stderr().contains("last sample: {\"ratio\":0.2}"), "{}", out.stderr());
}

#[test]
fn an_erroring_sample_neither_passes_nor_ends_the_watch() {
    // 1 passes, 2 exits 3, 3 is not JSON (each breaks the streak), 4-6 pass.
    let sandbox = sandbox("0.0\nerr\njunk\n0.0\n0.0\n0.0\n", "50ms", "10s", 3);
    let out = sandbox.runbook().args(["w", "go", "--yes"]).output().success();
    assert_eq!(samples_taken(&sandbox), 6, "{}", out.stderr());
    let stderr = out.stderr();
    assert!(stderr.contains("sample 2: — not passing: `sh` exited with status 3: boom at 2"), "{stderr}");
    assert!(stderr.contains("sample 3: — not passing: the output is not JSON"), "{stderr}");
    assert!(stderr.contains("sample 4: {\"ratio\":0.0} — passing (1/3)"), "{stderr}");
}

#[test]
fn ctrl_c_during_a_watch_exits_130_and_a_resume_watches_again_from_the_first_sample() {
    let sandbox = sandbox("0.3\n", "100ms", "60s", 2);
    let mut run = sandbox.runbook().args(["w", "go", "--yes"]);
    run.cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = run.cmd.spawn().unwrap_or_else(|e| panic!("spawn: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while samples_taken(&sandbox) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(samples_taken(&sandbox) >= 3, "the watch sampled");
    signal(child.id(), "INT");
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(status.code(), Some(130));
    let id = sandbox.last_run_id();
    let finished = events(&sandbox, "step_finished");
    assert_eq!(finished.last().map(|e| e["status"].clone()), Some("interrupted".into()));
    // The latest sample was journaled when the watch ended.
    assert!(events(&sandbox, "watch_sample").len() >= 2);

    sandbox.file("./series.txt", "0.0\n");
    let before = samples_taken(&sandbox);
    let out = sandbox.runbook().args(["resume", &id, "--yes"]).output().success();
    assert_eq!(samples_taken(&sandbox), before + 2, "{}", out.stderr());
    assert!(out.stderr().contains("sample 1: {\"ratio\":0.0} — passing (1/2)"), "{}", out.stderr());
    // The resumed watch's samples start again at 1, and the time to recovery counts from
    // the run's start.
    let journal = std::fs::read_to_string(sandbox.journals().last().cloned().unwrap_or_default()).unwrap_or_default();
    let resumed_at = journal.find("\"record\":\"run_resumed\"").unwrap_or(usize::MAX);
    let after_resume = journal.get(resumed_at..).unwrap_or_default();
    assert!(after_resume.contains("\"sample\":1,"), "{after_resume}");
    let entry = history(&sandbox);
    let seconds = entry["time_to_recovery_s"].as_f64().unwrap_or(0.0);
    assert!(seconds >= 0.3, "counted from the run's start: {seconds}");
}

#[test]
fn a_run_without_a_recovery_step_says_so() {
    let sandbox = Sandbox::new();
    sandbox.file(
        "plain.yaml",
        "runbook: plain\ntitle: Plain\nprocedures:\n  go:\n    summary: One step\n    stages:\n      - name: S\n        steps:\n          - id: one\n            run: [\"true\"]\n",
    );
    let out = sandbox.runbook().args(["plain", "go", "--yes"]).output().success();
    assert!(
        out.stderr().contains("Time to recovery: none: the procedure has no `recovery: true` step"),
        "{}",
        out.stderr()
    );
    let entry = history(&sandbox);
    assert_eq!(entry["time_to_recovery_s"], serde_json::Value::Null);
    assert_eq!(entry["recovery"], "no recovery step");
}

#[test]
fn validate_checks_the_watch_block_with_positions() {
    let sandbox = Sandbox::new();
    let path = sandbox.file(
        "bad.yaml",
        r#"runbook: bad
title: Bad watches
procedures:
  go:
    summary: Broken watches
    stages:
      - name: S
        steps:
          - id: slow
            watch:
              run: [echo, "1"]
              capture: text
              every: 1m
              within: 30s
              pass: "sample.json.ok"
              hold: 0
          - id: post
            watch:
              http: {method: POST, url: "http://example.test/"}
              every: 1s
              within: 5s
              pass: "sample.status == ("
            effect: mutate
          - id: nothing
            watch:
              every: 1s
              within: 5s
              pass: "sample.output == 1"
"#,
    );
    let out = sandbox.runbook().args(["validate".as_ref(), path.as_os_str()]).output().status(1);
    let stderr = out.stderr();
    for (position, message) in [
        ("bad.yaml:13:22", "`every` (1m) must be shorter than `within` (30s)"),
        ("bad.yaml:15:22", "the watch's samples have no `json`"),
        ("bad.yaml:16:21", "`hold` must be a whole number from 1 to"),
        ("bad.yaml:19:30", "a `watch` only reads; an HTTP POST request changes things"),
        ("bad.yaml:23:21", "a `watch` step only reads; it cannot be `effect: mutate`"),
        ("bad.yaml:26:15", "`watch` is missing what to sample"),
        ("bad.yaml:22:21", "expression does not parse"),
    ] {
        assert!(stderr.contains(position), "{position} ({message}) missing in\n{stderr}");
        assert!(stderr.contains(message), "{message} missing in\n{stderr}");
    }
}

/// A watch timed by vars: production's cadence as written, a run's `--var` (or a rehearsal's
/// `rehearsal:` block) shortening it; each sample renders its body again with its own `now`.
fn timed_runbook() -> &'static str {
    r#"runbook: t
title: Watch timed by vars
environments:
  prod:
    vars: {every: 60s, within: 15m, hold: "3", window: 5m}
procedures:
  go:
    summary: Watch with a window ending now
    stages:
      - name: Verify
        steps:
          - id: error_rate
            watch:
              shell: |
                echo "$1 $2" >> nows.txt
                wc -l < nows.txt
              args: ["{{ now }}", "{{ now | minus(vars.window) }}"]
              capture: text
              every: "{{ vars.every }}"
              within: "{{ vars.within }}"
              hold: "{{ vars.hold }}"
              pass: "(sample.output | trim | int) >= 4"
            recovery: true
"#
}

#[test]
fn a_watch_timed_by_vars_renders_each_sample_with_its_own_now() {
    let sandbox = Sandbox::new();
    sandbox.file("t.yaml", timed_runbook());
    // The dry-run shows the timing resolved for the environment, and `now` as a placeholder.
    let out = sandbox.runbook().args(["t", "go", "--env", "prod", "--dry-run"]).output().success();
    assert!(out.stdout().contains("watches every 1m for up to 15m"), "{}", out.stdout());
    assert!(out.stdout().contains("for 3 samples in a row"), "{}", out.stdout());
    assert!(out.stdout().contains("<now>") && out.stdout().contains("<now | minus(5m)>"), "{}", out.stdout());

    let started = chrono::Utc::now();
    let args = ["t", "go", "--env", "prod", "--yes", "--var", "every=400ms", "--var", "within=10s", "--var", "hold=1"];
    let out = sandbox.runbook().args(args).output().success();
    let text = std::fs::read_to_string(sandbox.path().join("nows.txt")).unwrap_or_else(|e| panic!("{e}"));
    let samples: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> = text
        .lines()
        .map(|line| {
            let (now, start) = line.split_once(' ').unwrap_or_else(|| panic!("two times: {line}"));
            let parse = |t: &str| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .unwrap_or_else(|e| panic!("{t}: {e}"))
                    .with_timezone(&chrono::Utc)
            };
            (parse(now), parse(start))
        })
        .collect();
    assert_eq!(samples.len(), 4, "{}", out.stderr());
    for (now, start) in &samples {
        assert_eq!(*now - *start, chrono::Duration::minutes(5), "the window ends at the sample's now");
        assert!(*now >= started - chrono::Duration::seconds(1) && *now <= chrono::Utc::now(), "{now} is not the time");
        assert!(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).ends_with('Z'));
    }
    assert!(samples.windows(2).all(|w| w[0].0 <= w[1].0));
    // 4 samples 400 ms apart span more than a second: the last one's `now` is a later second.
    assert!(samples[3].0 > samples[0].0, "every sample rendered afresh: {text}");
}

#[test]
fn a_watch_timing_that_does_not_fit_is_refused_before_the_run_with_its_position() {
    let sandbox = Sandbox::new();
    sandbox.file("t.yaml", timed_runbook());
    for (var, position, message) in [
        (
            "every=soon",
            "t.yaml:19:22",
            "`every` must be a duration such as 90s, 5m or 500ms; `{{ vars.every }}` gives `soon`",
        ),
        ("every=20m", "t.yaml:19:22", "`every` (20m) must be shorter than `within` (15m)"),
        ("within=0s", "t.yaml:20:23", "`within` must be longer than zero"),
        ("hold=0", "t.yaml:21:21", "`hold` must be a whole number from 1 to"),
    ] {
        let out = sandbox.runbook().args(["t", "go", "--env", "prod", "--yes", "--var", var]).output().status(2);
        let stderr = out.stderr();
        assert!(stderr.contains("step `error_rate`"), "{var}: {stderr}");
        assert!(
            stderr.contains(position) && stderr.contains(message),
            "{var}: {position} {message} missing in\n{stderr}"
        );
        assert!(!sandbox.path().join("nows.txt").exists(), "nothing ran");
    }
}

#[test]
fn validate_checks_a_templated_watch_timing() {
    let sandbox = Sandbox::new();
    let path = sandbox.file(
        "bad.yaml",
        r#"runbook: bad
title: Bad timing
environments:
  prod: {vars: {every: 1m}}
procedures:
  go:
    summary: Timing from what is not known before the run
    stages:
      - name: S
        steps:
          - id: first
            run: [echo, "1m"]
            capture: text
            effect: read
          - id: w
            watch:
              run: [echo, "{{ now }}"]
              capture: text
              every: "{{ steps.first.output }}"
              within: "{{ vars.within }}"
              hold: "{{ vars.every | nope }}"
              pass: "sample.output != ''"
          - id: not_a_watch
            run: [echo, "{{ now }}"]
"#,
    );
    let out = sandbox.runbook().args(["validate".as_ref(), path.as_os_str()]).output().status(1);
    let stderr = out.stderr();
    for (position, message) in [
        ("bad.yaml:19:26", "a watch's `every` is known before the run starts; it cannot read `steps.first.output`"),
        ("bad.yaml:20:27", "`within`"),
        ("bad.yaml:21:", "unknown filter `nope`"),
        ("bad.yaml:24:", "unknown name `now` in a template"),
    ] {
        assert!(stderr.contains(position), "{position} ({message}) missing in\n{stderr}");
        assert!(stderr.contains(message), "{message} missing in\n{stderr}");
    }
    assert!(!stderr.contains("bad.yaml:17:"), "`now` is known in a watch's body: {stderr}");
}

/// A watch's `value:` is what each sample's line shows and the journal keeps (the number the
/// operator watches), evaluated over the sample; it may not read a secret.
#[test]
fn a_watch_value_is_shown_and_journaled_and_may_not_read_a_secret() {
    let sandbox = sandbox("0.2\n0.005\n", "50ms", "5s", 1);
    let text = std::fs::read_to_string(sandbox.path().join("runbooks/w.yaml")).unwrap_or_default();
    let with_value = text.replace(
        "              fail: \"sample.json.ratio > 0.5\"\n",
        "              fail: \"sample.json.ratio > 0.5\"\n              value: \"(sample.json.ratio * 100) ~ '% of requests failed'\"\n",
    );
    assert_ne!(text, with_value);
    sandbox.file("w.yaml", &with_value);
    let out = sandbox.runbook().args(["w", "go", "--yes"]).output().success();
    assert!(out.stderr().contains("sample 1: 20.0% of requests failed — not passing"), "{}", out.stderr());
    assert!(out.stderr().contains("sample 2: 0.5% of requests failed — passing"), "{}", out.stderr());
    let samples = events(&sandbox, "watch_sample");
    assert_eq!(samples[0]["value"], "20.0% of requests failed", "{samples:?}");

    let secret = with_value
        .replace("title: Watch a series\n", "title: Watch a series\nparams:\n  token: {type: string, secret: true}\n")
        .replace("    summary: Watch the error ratio\n", "    summary: Watch the error ratio\n    params: [token]\n")
        .replace("'% of requests failed'", "params.token");
    sandbox.file("w.yaml", &secret);
    let out = sandbox.runbook().args(["validate", "runbooks/w.yaml"]).output();
    assert_ne!(out.code(), 0, "{}", out.stderr());
    assert!(out.stderr().contains("in a watch sample's value"), "{}", out.stderr());
}
