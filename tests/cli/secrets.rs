//! Secrets (SPEC rule 3) against hostile values and write patterns: each test is named after
//! the leak it pins down, then the matrix of every output channel × every secret source,
//! then a property test driving the binary with arbitrary secrets and chunkings.

use crate::support::http::{Reply, Server};
use crate::support::{Finished, Sandbox};

fn sandbox_with(name: &str, yaml: &str) -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.file(name, yaml);
    sandbox
}

/// A runbook `leak` taking the secret param `token`, with the given steps.
pub(super) fn token_runbook(steps: &str) -> String {
    format!(
        "runbook: leak\ntitle: Leak\nparams:\n  token: {{type: string, secret: true}}\nprocedures:\n  go:\n    summary: Go\n    params: [token]\n    stages:\n      - name: S\n        steps:\n{steps}"
    )
}

/// Every journal of the sandbox, concatenated, with its JSON strings decoded (a secret
/// with a quote or a backslash is escaped in JSON, and would not be found as written).
fn journals(sandbox: &Sandbox) -> String {
    let text: String = sandbox.journals().iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
    format!("{text}{}", json_strings(&text))
}

/// The string values (and keys) of every JSON line in `text`, one per line.
fn json_strings(text: &str) -> String {
    fn walk(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| {
                out.push_str(k);
                out.push('\n');
                walk(v, out);
            }),
            _ => {}
        }
    }
    let mut out = String::new();
    for line in text.lines() {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(line) {
            walk(&value, &mut out);
        }
    }
    out
}

/// All a run showed, JSON lines decoded too.
fn shown(out: &Finished) -> String {
    format!("{}{}", out.all(), json_strings(&out.stdout()))
}

#[track_caller]
fn assert_hidden(out: &Finished, secret: &str) {
    assert!(!shown(out).contains(secret), "`{secret}` leaked:\n{}", out.all());
}

#[test]
fn a_slice_filter_or_loop_over_a_secret_is_refused_on_argv_url_and_screen() {
    let reads = [
        "params.token[2:]",
        "params.token[:]",
        "params.token[:-1]",
        "params['token'][1:]",
        "params.token|reverse",
        "params.token|upper",
        "'x' ~ params.token",
        "params.token.upper()",
        "params.token[::-1]|join('')",
        "env.RUNBOOK_PARAM_TOKEN[3:]",
    ];
    for read in reads {
        let places = [
            format!("          - {{id: a, run: [echo, \"{{{{ {read} }}}}\"], effect: read}}\n"),
            format!("          - {{id: a, http: {{url: \"http://127.0.0.1:9/{{{{ {read} }}}}\"}}, effect: read}}\n"),
            format!("          - {{id: a, manual: \"type {{{{ {read} }}}}\"}}\n"),
            format!("          - {{id: a, assert: \"true\", message: \"{{{{ {read} }}}}\"}}\n"),
            format!(
                "          - {{id: a, run: [echo, \"{{% for c in {read} %}}{{{{ c }}}}{{% endfor %}}\"], effect: read}}\n"
            ),
        ];
        for place in places {
            let sandbox = sandbox_with("leak.yaml", &token_runbook(&place));
            let out = sandbox.runbook().args(["validate"]).output().status(1);
            assert!(out.stderr().contains("RB012"), "{place}: {}", out.stderr());
            let run = sandbox.runbook().args(["leak", "go", "--yes", "--token", "tok-4f1e9a"]).output().status(2);
            assert_hidden(&run, "4f1e9a");
        }
    }
}

#[test]
fn a_slice_of_a_secret_given_to_a_child_is_masked_where_the_child_prints_it() {
    let sandbox = sandbox_with(
        "leak.yaml",
        &token_runbook(
            "          - id: a\n            run: [sh, -c, 'echo \"got $T\"; echo \"err $T\" >&2']\n            env: {T: \"{{ params.token[4:] }}\"}\n            effect: read\n",
        ),
    );
    let out = sandbox.runbook().args(["leak", "go", "--yes", "--token", "tok-slice-5d2c"]).output().success();
    assert_hidden(&out, "slice-5d2c");
    assert!(out.stdout().contains("got ********"), "{}", out.stdout());
    assert!(out.stderr().contains("err ********"), "{}", out.stderr());
    assert!(!journals(&sandbox).contains("slice-5d2c"));
}

/// A child printing, on both streams, a line of `before` bytes of `x`, the secret, and a tail.
fn straddling_runbook(before: usize) -> String {
    token_runbook(&format!(
        "          - id: a\n            run: [sh, -c, 'for fd in 1 2; do {{ head -c {before} /dev/zero | tr \"\\\\0\" x; printf \"%s\" \"$T\"; echo tail; }} >&$fd; done']\n            env: {{T: \"{{{{ params.token }}}}\"}}\n            effect: read\n"
    ))
}

#[test]
fn a_secret_straddling_the_1_mib_piece_boundary_of_a_long_line_is_masked() {
    let secret = "straddle-9c4b7e";
    // The line is cut into 1 MiB pieces; the secret starts 5 bytes before the cut.
    let sandbox = sandbox_with("leak.yaml", &straddling_runbook(1024 * 1024 - 5));
    for format in ["human", "json"] {
        let out =
            sandbox.runbook().args(["leak", "go", "--yes", "--output", format, "--token", secret]).output().success();
        assert_hidden(&out, "straddle");
        assert_hidden(&out, "9c4b7e");
        assert!(out.all().contains("********tail"), "{format}: the masked secret is missing");
    }
}

#[test]
fn a_secret_split_across_two_writes_of_the_child_is_masked() {
    let sandbox = sandbox_with(
        "leak.yaml",
        &token_runbook(
            "          - id: a\n            run: [sh, -c, 'printf \"pw=%s\" \"${T%????}\"; sleep 0.3; printf \"%s ok\\n\" \"${T#${T%????}}\"; printf \"%s\" \"${T%????}\" >&2; sleep 0.3; echo \"${T#${T%????}}\" >&2']\n            env: {T: \"{{ params.token }}\"}\n            effect: read\n",
        ),
    );
    let out = sandbox.runbook().args(["leak", "go", "--yes", "--token", "split-secret-77"]).output().success();
    assert_hidden(&out, "split-secret-77");
    assert_hidden(&out, "split-sec");
    assert!(out.stdout().contains("pw=******** ok"), "{}", out.stdout());
}

#[test]
fn an_http_error_excerpt_cut_at_200_characters_does_not_show_part_of_a_secret() {
    let secret = "cutsecret-0a9f8e";
    let server = Server::start();
    // The secret starts at character 195 of the body: the 200-character cut goes through it.
    server.route("/whole", vec![Reply::new(500, &format!("{}{secret} and more", "e".repeat(195)))]);
    // The body holds only the secret's beginning, right at the cut.
    server.route("/prefix", vec![Reply::new(500, &format!("{}{}", "e".repeat(196), &secret[..6]))]);
    for path in ["/whole", "/prefix"] {
        let steps = format!(
            "          - id: a\n            http: {{url: \"{}\", headers: {{Authorization: \"{{{{ params.token }}}}\"}}}}\n            effect: read\n",
            server.url(path)
        );
        let sandbox = sandbox_with("leak.yaml", &token_runbook(&steps));
        for format in ["human", "json"] {
            let out = sandbox
                .runbook()
                .args(["leak", "go", "--yes", "--output", format, "--token", secret])
                .output()
                .status(1);
            assert_hidden(&out, "cutse");
            assert!(out.all().contains("eeee"), "{path}: the excerpt is missing:\n{}", out.all());
        }
        let id = sandbox.last_run_id();
        for format in ["human", "json"] {
            let show = sandbox.runbook().args(["show", &id, "--format", format]).output().success();
            assert_hidden(&show, "cutse");
        }
        assert!(!journals(&sandbox).contains("cutse"));
    }
}

#[test]
fn an_invalid_value_for_a_secret_enum_param_is_not_echoed() {
    let sandbox = sandbox_with(
        "leak.yaml",
        "runbook: leak\ntitle: Leak\nparams:\n  tier: {type: enum, values: [gold, silver], secret: true}\nprocedures:\n  go:\n    summary: Go\n    params: [tier]\n    stages:\n      - name: S\n        steps:\n          - {id: a, run: [echo, hi], effect: read}\n",
    );
    let out = sandbox.runbook().args(["leak", "go", "--yes", "--tier", "platinum-7e2a"]).output().status(2);
    assert_hidden(&out, "platinum");
    assert!(out.stderr().contains("--tier"), "{}", out.stderr());
    let out = sandbox.runbook().env("RUNBOOK_PARAM_TIER", "bronze-7e2a").args(["leak", "go", "--yes"]).output();
    assert_eq!(out.code(), 2);
    assert_hidden(&out, "bronze");
    sandbox.runbook().args(["leak", "go", "--yes", "--tier", "gold"]).output().success();
    let help = sandbox.runbook().args(["leak", "go", "--help"]).output().success();
    assert!(help.stdout().contains("one of gold, silver"), "{}", help.stdout());
}

#[test]
fn a_secret_param_starting_with_dashes_is_taken_as_the_value_not_echoed_as_a_flag() {
    let sandbox = sandbox_with(
        "leak.yaml",
        &token_runbook(
            "          - id: a\n            run: [sh, -c, 'printf \"%s\" \"$T\" > got.txt']\n            env: {T: \"{{ params.token }}\"}\n            effect: read\n",
        ),
    );
    let out = sandbox.runbook().args(["leak", "go", "--yes", "--token", "--dash-secret-1b"]).output().success();
    assert_hidden(&out, "dash-secret");
    assert_eq!(std::fs::read_to_string(sandbox.path().join("got.txt")).unwrap_or_default(), "--dash-secret-1b");
}

#[test]
fn a_malformed_answer_for_a_secret_prompt_is_not_echoed() {
    let sandbox = sandbox_with(
        "pin.yaml",
        "runbook: pin\ntitle: T\nprocedures:\n  go:\n    summary: Go\n    stages:\n      - name: S\n        steps:\n          - {id: pw, prompt: \"Password?\", secret: true}\n",
    );
    for answer in ["pw:hunter-9z8y", "hunter-9z8y", "--hunter-9z8y"] {
        let out = sandbox.runbook().args(["pin", "go", "--yes", "--answer", answer]).output().status(2);
        assert_hidden(&out, "hunter");
    }
}

#[test]
fn a_secret_param_variable_is_masked_and_withheld_when_the_procedure_does_not_take_it() {
    let sandbox = sandbox_with(
        "leak.yaml",
        "runbook: leak\ntitle: Leak\nparams:\n  token: {type: string, secret: true}\nprocedures:\n  go:\n    summary: Go\n    stages:\n      - name: S\n        steps:\n          - {id: a, run: [sh, -c, 'printf \"%s\" \"$RUNBOOK_PARAM_TOKEN\" > got.txt; echo \"[$RUNBOOK_PARAM_TOKEN]\"; echo \"[$OTHER]\"'], effect: read}\n",
    );
    let out = sandbox
        .runbook()
        .env("RUNBOOK_PARAM_TOKEN", "envsecret-3c3c")
        .env("OTHER", "has envsecret-3c3c inside")
        .args(["leak", "go", "--yes"])
        .output()
        .success();
    assert_hidden(&out, "envsecret");
    assert_eq!(std::fs::read_to_string(sandbox.path().join("got.txt")).unwrap_or_default(), "");
    assert!(out.stdout().contains("[has ******** inside]"), "{}", out.stdout());
}

#[test]
fn a_two_character_secret_step_output_is_refused_and_not_shown() {
    let sandbox = sandbox_with(
        "short.yaml",
        "runbook: short\ntitle: T\nprocedures:\n  go:\n    summary: Go\n    stages:\n      - name: S\n        steps:\n          - {id: get, run: [cat, v.txt], effect: read, capture: text, secret: true}\n          - {id: use, run: [sh, -c, 'echo \"$V\"'], env: {V: \"{{ steps.get.output }}\"}, effect: read}\n",
    );
    sandbox.file("dir/../v.txt", "Q7\n");
    let out = sandbox.runbook().args(["short", "go", "--yes"]).output().status(1);
    assert_hidden(&out, "Q7");
    assert!(out.stderr().contains("shorter than 3 characters"), "{}", out.stderr());
}

#[test]
fn a_secret_steps_stderr_is_shown_masked() {
    let sandbox = sandbox_with(
        "rotate.yaml",
        "runbook: rotate\ntitle: T\nprocedures:\n  go:\n    summary: Go\n    stages:\n      - name: S\n        steps:\n          - {id: get, run: [sh, -c, 'cat v.txt; echo \"rotated to $(cat v.txt)\" >&2'], effect: read, capture: text, secret: true}\n",
    );
    sandbox.file("dir/../v.txt", "newkey-5e5e");
    let out = sandbox.runbook().args(["rotate", "go", "--yes"]).output().success();
    assert_hidden(&out, "newkey");
    assert!(out.stderr().contains("rotated to ********"), "{}", out.stderr());
}

/// Where a secret comes from: the runbook's extra params and leading steps, how to give it,
/// and the template that reads it (always reaching the child privately, through `env`).
struct Source {
    name: &'static str,
    params: &'static str,
    steps: &'static str,
    read: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// What must never be shown (the derived value for a slice).
    hidden: String,
}

fn sources(canary: &str) -> Vec<Source> {
    let token_params = "params:\n  token: {type: string, secret: true}\n";
    vec![
        Source {
            name: "param via flag",
            params: token_params,
            steps: "",
            read: "{{ params.token }}",
            args: vec!["--token".into(), canary.into()],
            env: vec![],
            hidden: canary.into(),
        },
        Source {
            name: "param via RUNBOOK_PARAM_",
            params: token_params,
            steps: "",
            read: "{{ params.token }}",
            args: vec![],
            env: vec![("RUNBOOK_PARAM_TOKEN", canary.into())],
            hidden: canary.into(),
        },
        Source {
            name: "prompt answer via --answer",
            params: "",
            steps: "          - {id: pw, prompt: \"Password?\", secret: true}\n",
            read: "{{ steps.pw.output }}",
            args: vec!["--answer".into(), format!("pw={canary}")],
            env: vec![],
            hidden: canary.into(),
        },
        Source {
            name: "secret step output",
            params: "",
            steps: "          - {id: get, run: [cat, stored.txt], effect: read, capture: text, secret: true}\n",
            read: "{{ steps.get.output }}",
            args: vec![],
            env: vec![],
            hidden: canary.into(),
        },
        Source {
            name: "derived via slice and filter",
            params: token_params,
            steps: "",
            read: "{{ params.token[2:] | upper }}",
            args: vec!["--token".into(), canary.into()],
            env: vec![],
            hidden: canary[2..].to_uppercase(),
        },
    ]
}

#[test]
fn secrets_matrix_every_source_is_masked_in_every_output_channel() {
    let canary = "mx-canary-8d1f2e";
    for source in sources(canary) {
        let takes = if source.params.is_empty() { "" } else { "    params: [token]\n" };
        let yaml = format!(
            "runbook: matrix\ntitle: Matrix\n{}procedures:\n  go:\n    summary: Go\n{takes}    stages:\n      - name: S\n        steps:\n{}          - id: use\n            run: [sh, -c, 'echo \"out $V\"; echo \"err $V\" >&2; printf \"%s\" \"$V\" > got.txt; exit 4']\n            env: {{V: \"{}\"}}\n            effect: read\n",
            source.params, source.steps, source.read
        );
        let sandbox = sandbox_with("matrix.yaml", &yaml);
        sandbox.file("dir/../stored.txt", canary);
        for format in ["human", "json"] {
            let mut run = sandbox.runbook().args(["matrix", "go", "--yes", "--output", format]).args(&source.args);
            for (key, value) in &source.env {
                run = run.env(key, value);
            }
            let out = run.output().status(1);
            let name = source.name;
            assert_eq!(
                std::fs::read_to_string(sandbox.path().join("got.txt")).unwrap_or_default(),
                source.hidden,
                "{name}: the child did not get the secret"
            );
            assert!(!shown(&out).contains(&source.hidden), "{name}, {format}: leaked on stdout:\n{}", out.stdout());
            assert!(!out.stderr().contains(&source.hidden), "{name}, {format}: leaked on stderr:\n{}", out.stderr());
            assert!(out.all().contains("out ********"), "{name}, {format}: child stdout not shown masked");
            assert!(out.all().contains("err ********"), "{name}, {format}: child stderr not shown masked");
        }
        assert!(!journals(&sandbox).contains(&source.hidden), "{}: leaked into the journal", source.name);
        let id = sandbox.last_run_id();
        for format in ["human", "json"] {
            let show = sandbox.runbook().args(["show", &id, "--format", format]).output().success();
            assert!(!shown(&show).contains(&source.hidden), "{}: leaked by show --format {format}", source.name);
        }
        let dry = sandbox.runbook().args(["matrix", "go", "--dry-run"]).args(&source.args).output();
        assert!(!dry.all().contains(&source.hidden), "{}: leaked by --dry-run", source.name);
    }
}

mod property {
    use proptest::prelude::*;

    use super::{journals, sandbox_with, shown, token_runbook};

    /// The child writes `payload` (which holds the secret) to stdout and stderr, each in two
    /// writes cut at `cut`, with pauses so the reads are separate.
    fn runbook() -> String {
        token_runbook(
            "          - id: a\n            run: [sh, -c, 'head -c $CUT payload; head -c $CUT payload >&2; sleep 0.05; tail -c +$((CUT + 1)) payload; tail -c +$((CUT + 1)) payload >&2']\n            env: {CUT: \"{{ params.cut }}\", T: \"{{ params.token }}\"}\n            effect: read\n",
        )
        .replace("  token: {type: string, secret: true}\n", "  token: {type: string, secret: true}\n  cut: {type: int}\n")
        .replace("    params: [token]\n", "    params: [token, cut]\n")
    }

    fn secret() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9]{3,16}",
            "[\\PC&&[^\\u{0}]]{3,8}",
            Just(".*+?()[]{}|^$\\".to_owned()),
            "[a-z]{3,6}\n[a-z]{3,6}",
            "[ -~]{3,12}",
        ]
        // Prefixed so that it cannot be a word runbook itself prints (`go`, a step id).
        .prop_map(|core| format!("Zq{core}"))
        .prop_filter("a usable secret", |s| s.trim() == s && !s.contains('\r'))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Whatever the secret's content and however the child splits its writes (no line
        /// end, a line over 1 MiB, both streams), the secret is not shown.
        #[test]
        fn a_secret_never_appears_in_any_output_channel(
            secret in secret(),
            before in prop_oneof![0usize..40, Just(1024 * 1024 - 2)],
            newline in any::<bool>(),
            cut_at in 0usize..100,
        ) {
            let sandbox = sandbox_with("leak.yaml", &runbook());
            let mut payload = "p".repeat(before).into_bytes();
            payload.extend_from_slice(secret.as_bytes());
            if newline {
                payload.extend_from_slice(b" end\n");
            }
            let cut = (before + cut_at * secret.len() / 100).to_string();
            std::fs::write(sandbox.path().join("payload"), &payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
            for format in ["human", "json"] {
                let out = sandbox
                    .runbook()
                    .env("RUNBOOK_PARAM_TOKEN", &secret)
                    .args(["leak", "go", "--yes", "--output", format, "--cut", &cut])
                    .output();
                prop_assert_eq!(out.code(), 0, "{}", out.stderr());
                prop_assert!(!shown(&out).contains(&secret), "leaked in {}:\n{}", format, out.stderr());
            }
            prop_assert!(!journals(&sandbox).contains(&secret));
        }
    }
}

/// A runbook whose inputs can each be refused before the plan (and its masker) exists:
/// a typed param, an environment, a var, a prompt with choices, a secret prompt.
const EARLY: &str = "runbook: early\ntitle: Early\nparams:\n  token: {type: string, secret: true}\n  count: {type: int, required: false}\nenvironments:\n  staging: {vars: {region: eu}}\nprocedures:\n  go:\n    summary: Go\n    params: [token, count]\n    stages:\n      - name: S\n        steps:\n          - {id: pw, prompt: \"Password?\", secret: true}\n          - {id: pick, prompt: \"Which?\", choices: [a, b]}\n          - {id: a, run: [sh, -c, 'exit 1'], effect: read}\n";

/// Every input check that quotes what it refuses (`--count`, `--env`, `--var`, `--answer`;
/// the argument parser's and the plan's),
/// fed the secret itself (a paste into the wrong flag), with the secret given by flag,
/// by `RUNBOOK_PARAM_TOKEN` or as a secret prompt's answer: the refusal (exit 2) masks it.
#[test]
fn an_input_refused_before_the_plan_exists_does_not_echo_a_secret_from_flag_env_or_answer() {
    let sandbox = sandbox_with("early.yaml", EARLY);
    let secret = "early-5ec2e7";
    type Given<'a> = (&'a str, Vec<String>, Vec<(&'a str, &'a str)>);
    let givens: [Given<'_>; 3] = [
        ("flag", vec!["--token".into(), secret.into(), "--answer".into(), "pw=other-pw-1".into()], vec![]),
        ("env", vec!["--answer".into(), "pw=other-pw-1".into()], vec![("RUNBOOK_PARAM_TOKEN", secret)]),
        ("answer", vec!["--token".into(), "other-token-1".into(), "--answer".into(), format!("pw={secret}")], vec![]),
    ];
    let refusals: [(&str, Vec<String>); 7] = [
        ("an unknown environment (refused by the argument parser)", vec!["--env".into(), secret.into()]),
        ("an int param", vec!["--env".into(), "staging".into(), "--count".into(), secret.into()]),
        ("a var without `=`", vec!["--env".into(), "staging".into(), "--var".into(), secret.into()]),
        ("an unknown var", vec!["--env".into(), "staging".into(), "--var".into(), format!("{secret}=1")]),
        ("a var whose value contains the secret", vec!["--var".into(), format!("region={secret}")]),
        ("an unknown answer", vec!["--env".into(), "staging".into(), "--answer".into(), format!("{secret}=1")]),
        (
            "an answer not among the choices",
            vec!["--env".into(), "staging".into(), "--answer".into(), format!("pick={secret}")],
        ),
    ];
    for (given, given_args, env) in &givens {
        for (refused, args) in &refusals {
            let mut run = sandbox.runbook().args(["early", "go", "--yes"]).args(given_args).args(args);
            for (key, value) in env {
                run = run.env(key, value);
            }
            let out = run.output();
            assert_eq!(out.code(), 2, "{given} / {refused}: {}", out.all());
            assert!(!shown(&out).contains(secret), "{given} / {refused}: the secret leaked:\n{}", out.all());
            assert!(out.stderr().contains("error:"), "{given} / {refused}: {}", out.stderr());
        }
    }
    assert!(journals(&sandbox).is_empty(), "nothing was journalled: {}", journals(&sandbox));
}

/// `resume` binds the recorded params again, the secret from the environment: when they no
/// longer check (the runbook changed, resumed with --force), the refusal does not quote the
/// secret, on stderr or in the journal.
#[test]
fn a_resume_whose_params_no_longer_check_does_not_echo_the_secret() {
    let sandbox = sandbox_with("early.yaml", EARLY);
    let secret = "resume-5ec2e7";
    let out = sandbox
        .runbook()
        .env("RUNBOOK_PARAM_TOKEN", secret)
        .args(["early", "go", "--yes", "--env", "staging", "--answer", "pw=other-pw-1", "--answer", "pick=a"])
        .output()
        .status(1);
    assert_hidden(&out, secret);
    let id = sandbox.last_run_id();
    // The secret param must now be a number: refused, by name.
    sandbox.file("early.yaml", &EARLY.replace("token: {type: string", "token: {type: int"));
    let out = sandbox.runbook().env("RUNBOOK_PARAM_TOKEN", secret).args(["resume", &id, "--force", "--yes"]).output();
    assert_eq!(out.code(), 2, "{}", out.all());
    assert_hidden(&out, secret);
    assert!(out.stderr().contains("--token"), "{}", out.stderr());
    // The recorded params check, a new answer does not (the secret pasted as the choice).
    sandbox.file("early.yaml", EARLY);
    let out = sandbox
        .runbook()
        .env("RUNBOOK_PARAM_TOKEN", secret)
        .args(["resume", &id, "--yes", "--answer", &format!("pick={secret}")])
        .output();
    assert_eq!(out.code(), 2, "{}", out.all());
    assert_hidden(&out, secret);
    assert!(out.stderr().contains("--answer pick"), "{}", out.stderr());
    assert!(!journals(&sandbox).contains(secret), "the journal holds the secret:\n{}", journals(&sandbox));
}

/// The masker runs on the child's bytes, escape sequences removed afterwards: a secret
/// split by one (`hun\e[0mter22`) showed whole once stripped, and on a terminal, which
/// draws it without the sequence. Masked as written and as shown, split across reads too.
#[test]
fn a_secret_split_by_an_escape_sequence_in_child_output_is_masked() {
    let secret = "esc-5ec2e7-tail";
    let sandbox = sandbox_with(
        "leak.yaml",
        &token_runbook(
            "          - id: a\n            run: [sh, -c, 'printf \"pw=esc-5\\033[0mec2e7-tail ok\\n\"; printf \"x=esc-5ec\\033]8;;u\\007\" >&2; sleep 0.2; printf \"2e7-tail\\n\" >&2']\n            effect: read\n",
        ),
    );
    for json in [false, true] {
        let mut run = sandbox.runbook().args(["leak", "go", "--yes", "--token", secret]);
        if json {
            run = run.args(["--output", "json"]);
        }
        let out = run.output().success();
        let all = shown(&out);
        let stripped: String = all.replace("\u{1b}[0m", "").replace("\u{1b}]8;;u\u{7}", "");
        assert!(!stripped.contains(secret), "json {json}: the secret shows:\n{all}");
        assert!(all.contains("pw=******** ok"), "json {json}: {all}");
        assert!(all.contains("x=********"), "json {json}: {all}");
    }
    let journal = journals(&sandbox);
    assert!(!journal.replace("\u{1b}[0m", "").contains(secret), "{journal}");
}
