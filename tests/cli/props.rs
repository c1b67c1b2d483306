//! Property tests (proptest) against the real binary: any param value is either refused
//! (exit 2) or reaches the child as exactly one argv element, byte for byte, never
//! rendered again. PROPTEST_CASES sets the number of cases (64 by default).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::Sandbox;

const ARGV: &str = r#"runbook: argv
title: Argv
params:
  value:
    type: string
  choice:
    type: enum
    values: [a, b]
    required: false
procedures:
  show:
    summary: The child writes its argv, NUL-separated
    params: [value, choice]
    stages:
      - name: S
        steps:
          - id: write
            run: [sh, -c, 'for a; do printf "%s\0" "$a"; done > argv.bin', sh, "{{ params.value }}"]
            timeout: 10s
"#;

const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{# x #}",
    "{{ params.value }}",
    "{{ env.HOME }}",
    "{% for a in [1,2] %}x{% endfor %}",
    "$(id)",
    "`id`",
    "'",
    "\"",
    "\\",
    ";",
    "|",
    "&",
    " ",
    "\t",
    "\n",
    "\r",
    "\u{1b}[31m",
    "\u{202e}",
    "é",
    "🙂",
    "--",
    "-",
    "=",
    "*",
    "~",
    "$HOME",
    "%s",
    "\u{7f}",
];

fn value() -> impl Strategy<Value = String> {
    let soup = prop::collection::vec(prop::sample::select(TOKENS), 0..10).prop_map(|p| p.concat());
    // NUL cannot be in an argv element at all; everything else can.
    let any = any::<String>().prop_map(|s| s.replace('\0', ""));
    prop_oneof![soup, any, "[ -~]{0,40}"]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64)
}

#[test]
fn any_param_value_is_refused_or_reaches_the_child_as_one_argv_element_byte_for_byte() {
    let sandbox = Sandbox::new();
    sandbox.file("argv.yaml", ARGV);
    let argv = sandbox.path().join("argv.bin");
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let result = runner.run(&value(), |value| {
        let _ = std::fs::remove_file(&argv);
        let out = sandbox.runbook().args(["argv", "show", "--yes"]).args([format!("--value={value}")]).output();
        match out.code() {
            2 => {
                prop_assert!(!argv.exists(), "refused, yet the step ran");
            }
            0 => {
                let written = std::fs::read(&argv).unwrap_or_default();
                let mut expected = value.clone().into_bytes();
                expected.push(0);
                prop_assert_eq!(written, expected, "stderr: {}", out.stderr());
            }
            code => prop_assert!(false, "exit {code}: {}", out.stderr()),
        }
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}

#[test]
fn any_enum_value_is_refused_by_its_type_or_is_one_of_the_values() {
    let sandbox = Sandbox::new();
    sandbox.file("argv.yaml", ARGV);
    let argv = sandbox.path().join("argv.bin");
    let mut runner = TestRunner::new(Config { cases: cases() / 4 + 1, failure_persistence: None, ..Config::default() });
    let result = runner.run(&value(), |choice| {
        let _ = std::fs::remove_file(&argv);
        let out = sandbox
            .runbook()
            .args(["argv", "show", "--yes", "--value=v"])
            .args([format!("--choice={choice}")])
            .output();
        let expected = if choice == "a" || choice == "b" { 0 } else { 2 };
        prop_assert_eq!(out.code(), expected, "{}", out.stderr());
        prop_assert_eq!(argv.exists(), expected == 0);
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}

/// Found by the property above while it was written: pinned as plain cases.
#[test]
fn template_syntax_in_a_param_value_stays_literal() {
    let sandbox = Sandbox::new();
    sandbox.file("argv.yaml", ARGV);
    for value in ["{{ params.value }}", "{% for a in [1,2] %}x{% endfor %}", "{{ env.HOME }}", "-rf", ""] {
        sandbox.runbook().args(["argv", "show", "--yes"]).args([format!("--value={value}")]).output().success();
        let written = std::fs::read(sandbox.path().join("argv.bin")).unwrap_or_default();
        assert_eq!(written, [value.as_bytes(), b"\0"].concat(), "{value:?}");
    }
}
