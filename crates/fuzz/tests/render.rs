//! Fuzz target `render`: planning and rendering with arbitrary param values, answers,
//! `--var` overrides, step outputs and template texts. A proptest loop over the runbooks
//! in `runbooks/` and `examples/`: a panic, a case slower than [`CASE_LIMIT`] or a
//! rendered text past the cap is a failure; so is a string param that does not reach its
//! `{{ params.x }}` argv element byte for byte.
//!
//! `scripts/fuzz render [SECONDS]` runs it for a while (random seeds, FUZZ_SECONDS); the
//! normal suite runs a short deterministic pass. proptest prints a failing input shrunk
//! to its smallest form: keep it as a case in `regressions` below.

use std::time::{Duration, Instant};

use indexmap::IndexMap;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use runbook_engine::plan::{Inputs, Outputs, Plan, StepOutput};
use runbook_engine::render::{Action, render};
use runbook_lang::model::RunbookRef;
use runbook_lang::step::StepKind;
use runbook_lang::template::{MAX_RENDERED, Template};

/// One case (bind + render every step twice + one hostile template) must finish in this.
const CASE_LIMIT: Duration = Duration::from_secs(10);

/// Pieces that reach the template engine's corners when they end up in a value or a text.
const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "{{ params.x }}",
    "{% raw %}",
    "{% endraw %}",
    "'",
    "\"",
    "\\",
    "\0",
    "\n",
    "\r",
    "\u{1b}[2J",
    "\u{202e}",
    "é",
    "$(",
    "`",
    ";",
    "|",
    "--",
    "-",
    "=",
    " ",
    "..",
    "/",
    "%",
    "<",
    ">",
    "[",
    "]",
    "{% for a in [1,2,3,4,5,6,7,8,9,10] %}",
    "{% endfor %}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}",
    "{{ f(1) }}",
    "{{ 'x' * 99999999 }}",
    "{{ params }}",
    "{{ env }}",
    "{{ steps }}",
    "{{ vars }}",
    "| upper",
    "| join(',')",
    "[1:]",
    "[::-1]",
    "{% set x = x ~ x %}",
    "{{ range(99999) | list }}",
    "10",
    "-1",
    "1e308",
    "true",
    "2026-11-24T21:00:00Z",
    "now",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..12).prop_map(|parts| parts.concat())
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        4 => token_soup(),
        1 => (0usize..200_000, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
    ]
}

/// Every place a template can be, each fed by a param, an answer or an output.
const EVERYWHERE: &str = r#"runbook: everywhere
title: Everywhere
params:
  word:
    type: string
  token:
    type: string
    secret: true
  count:
    type: int
    required: false
procedures:
  all:
    summary: Every kind of step
    params: [word, token, count]
    stages:
      - name: S
        steps:
          - id: ask
            prompt: "Which {{ params.word }}?"
            default: "{{ params.word }}"
          - id: read
            run: [echo, "{{ params.word }}", "--n={{ params.count }}", "{{ steps.ask.output }}"]
            effect: read
            capture: json
            env:
              TOKEN: "{{ params.token }}"
            stdin: "{{ params.token }} {{ params.word }}"
          - id: call
            http:
              method: POST
              url: "https://example.invalid/{{ params.word | urlencode }}"
              headers:
                Authorization: "Bearer {{ params.token }}"
              body: '{"w": {{ params.word | tojson }}, "r": {{ steps.read.json | tojson }}}'
            timeout: 5s
          - id: check
            assert: params.word != steps.read.output
            message: "{{ params.word }} came back"
          - id: note
            manual: "Look at {{ params.word }} and {{ steps.read.json | tojson }}"
          - id: change
            shell: 'printf "%s" "$1"'
            args: ["{{ params.word }}"]
            confirm: typed
            target: "{{ params.word }}"
            when: params.word != ''
            timeout: 5s
"#;

/// A value every type accepts, for a second try when the fuzzed one is refused.
fn valid(ty: &runbook_lang::param::ParamType) -> String {
    use runbook_lang::param::ParamType;
    match ty {
        ParamType::String => "x".into(),
        ParamType::Int => "5".into(),
        ParamType::Bool => "true".into(),
        ParamType::Timestamp => (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339(),
        ParamType::Duration => "5m".into(),
        ParamType::Url => "https://example.invalid/x".into(),
        ParamType::Enum(values) => values.first().cloned().unwrap_or_default(),
    }
}

fn runbooks() -> Vec<RunbookRef> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let checked = runbook_lang::checker::check_source(
        runbook_lang::source::Source::new("everywhere.yaml", EVERYWHERE),
        String::new(),
    );
    for d in &checked.diagnostics {
        eprintln!("everywhere.yaml: {}", d.message);
    }
    let mut out: Vec<RunbookRef> = checked.runbook.into_iter().collect();
    for dir in ["runbooks", "examples/pegasus", "examples/pegasus/runbooks"] {
        for path in runbook_files(&root.join(dir)) {
            if let Some(runbook) = runbook_lang::checker::check_file(&path).ok().and_then(|c| c.runbook) {
                out.push(runbook);
            }
        }
    }
    out
}

/// The runbook files of a folder, in order.
fn runbook_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<std::path::PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml") && p.is_file())
        .collect();
    files.sort();
    files
}

#[derive(Debug, Clone)]
struct Case {
    runbook: usize,
    procedure: usize,
    environment: usize,
    values: Vec<String>,
    outputs: Vec<String>,
    template: String,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<usize>(),
        any::<usize>(),
        any::<usize>(),
        prop::collection::vec(value(), 0..8),
        prop::collection::vec(value(), 0..4),
        token_soup(),
    )
        .prop_map(|(runbook, procedure, environment, values, outputs, template)| Case {
            runbook,
            procedure,
            environment,
            values,
            outputs,
            template,
        })
}

fn pick<T: Clone>(items: &[T], index: usize) -> Option<T> {
    if items.is_empty() { None } else { items.get(index % items.len()).cloned() }
}

fn check(runbooks: &[RunbookRef], case: &Case) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let Some(runbook) = pick(runbooks, case.runbook) else { return Ok(()) };
    let procedures: Vec<String> = runbook.procedures.keys().cloned().collect();
    let Some(procedure) = pick(&procedures, case.procedure) else { return Ok(()) };
    let environments: Vec<String> = runbook.environments.keys().cloned().collect();
    let mut values = case.values.iter().cycle();
    let mut params = IndexMap::new();
    for param in runbook.params_of(&procedure) {
        if let Some(v) = values.next() {
            params.insert(param.name.clone(), v.clone());
        }
    }
    let mut answerable = Vec::new();
    runbook_engine::plan::steps_in_order(&runbook, &runbook.procedures[&procedure], &mut answerable);
    let answers: Vec<String> = answerable
        .iter()
        .filter(|s| matches!(s.kind, StepKind::Prompt(_) | StepKind::Manual(_)))
        .zip(values.by_ref())
        .map(|(s, v)| format!("{}={v}", s.id))
        .collect();
    let environment = pick(&environments, case.environment);
    let vars: Vec<String> = environment
        .as_ref()
        .and_then(|e| runbook.environments.get(e))
        .map(|e| e.vars.keys().zip(values.by_ref()).map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    let inputs = Inputs { environment: environment.clone(), params: params.clone(), answers: answers.clone(), vars };
    let plan = match Plan::bind(runbook.clone(), &procedure, inputs, chrono::Utc::now()) {
        Ok(plan) => plan,
        Err(_) => {
            // Typed params refused: again with valid values for them, fuzzed strings kept.
            for param in runbook.params_of(&procedure) {
                if param.ty.name() != "string" || param.pattern.is_some() {
                    params.insert(param.name.clone(), valid(&param.ty));
                } else if param.secret {
                    let fuzzed = params.get(&param.name).cloned().unwrap_or_default();
                    params.insert(param.name.clone(), format!("long-enough-{fuzzed}"));
                }
            }
            let inputs = Inputs { environment, params: params.clone(), answers, vars: Vec::new() };
            let Ok(plan) = Plan::bind(runbook.clone(), &procedure, inputs, chrono::Utc::now()) else { return Ok(()) };
            plan
        }
    };
    let mut outputs = Outputs::default();
    let mut texts = case.outputs.iter().cycle();
    for step in &answerable {
        let text = texts.next().cloned().unwrap_or_default();
        let json = serde_json::from_str(&text).ok().or_else(|| Some(serde_json::Value::String(text.clone())));
        let lines = Some(text.lines().map(str::to_owned).collect());
        outputs.insert(&step.id, &StepOutput { output: Some(text), json, lines, status: Some(200) });
    }
    let mut renders = 0;
    for step in &answerable {
        for known in [&Outputs::dry_run(), &outputs] {
            renders += 1;
            let Ok(rendered) = render(&plan, step, known) else { continue };
            if let (Action::Run { argv, .. }, StepKind::Run(run)) = (&rendered.action, &step.kind) {
                for (template, arg) in run.argv.iter().zip(argv) {
                    let name = template.text.trim().strip_prefix("{{ params.").and_then(|t| t.strip_suffix(" }}"));
                    let string = name.and_then(|n| runbook.params.get(n)).is_some_and(|p| p.ty.name() == "string");
                    if let (true, Some(raw)) = (string, name.and_then(|n| params.get(n))) {
                        prop_assert_eq!(arg, raw, "param {:?} was changed on its way to argv", name);
                    }
                }
            }
        }
    }
    let context = plan.context(&outputs);
    if let Ok(text) = Template::new(case.template.clone(), runbook_lang::source::Span::default()).render(&context) {
        prop_assert!(text.len() <= MAX_RENDERED);
    }
    // Each render registers what it derived from secrets at once: at most one rebuild of
    // the masker per render, however many values (the fuzzer's 10 s case was quadratic).
    prop_assert!(plan.redactor.builds() <= renders, "{} matcher builds for {renders} renders", plan.redactor.builds());
    prop_assert!(started.elapsed() < CASE_LIMIT, "case took {:?}", started.elapsed());
    Ok(())
}

/// Runs `cases` cases; returns how many ran.
fn run(runner: &mut TestRunner, runbooks: &[RunbookRef]) -> Result<u32, String> {
    let cases = runner.config().cases;
    runner.run(&case(), |case| check(runbooks, &case)).map_err(|e| e.to_string())?;
    Ok(cases)
}

#[test]
fn fuzz_render_short() {
    let runbooks = runbooks();
    assert!(runbooks.len() >= 2, "the built-in runbook and runbooks/ check out");
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48);
    let mut runner = TestRunner::new_with_rng(
        Config { cases, ..Config::default() },
        proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    if let Err(err) = run(&mut runner, &runbooks) {
        panic!("{err}");
    }
}

/// `scripts/fuzz render [SECONDS]`.
#[test]
#[ignore = "long: run with scripts/fuzz render"]
fn fuzz_render_long() {
    let runbooks = runbooks();
    let seconds: u64 = std::env::var("FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut total = 0u64;
    while Instant::now() < end {
        let mut runner = TestRunner::new(Config { cases: 256, failure_persistence: None, ..Config::default() });
        match run(&mut runner, &runbooks) {
            Ok(n) => total += u64::from(n),
            Err(err) => panic!("after {total} cases: {err}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("fuzz render: {total} cases in {secs:.0} s ({:.0}/s), no failure", total as f64 / secs);
}

/// Inputs the fuzzer found, kept as regressions.
mod regressions {
    use super::{Case, check, runbooks};

    fn case(values: &[&str], template: &str) -> Case {
        Case {
            runbook: 0,
            procedure: 0,
            environment: 0,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            outputs: vec!["{{ params }}".into()],
            template: template.into(),
        }
    }

    #[test]
    fn nested_loops_and_self_calling_macros_stop_on_fuel_not_time() {
        let runbooks = runbooks();
        let loops = "{% for a in [1,2,3,4,5,6,7,8,9,10] %}".repeat(9) + &"{% endfor %}".repeat(9);
        for template in [loops.as_str(), "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "{{ 'x' * 99999999 }}"] {
            assert!(check(&runbooks, &case(&["{{ params.x }}"], template)).is_ok(), "{template}");
        }
    }

    /// `scripts/fuzz render` on merged main stopped here: a ≈1.5 MB param of 4-byte
    /// characters took past the case limit, because every value derived from the secret
    /// rebuilt the masker over all secrets.
    #[test]
    fn a_long_param_of_four_byte_characters_renders_within_the_case_limit() {
        let runbooks = runbooks();
        let long = "\u{10348}".repeat(190_000);
        let result = check(&runbooks, &case(&[long.as_str()], ""));
        assert!(result.is_ok(), "{result:?}");
    }
}
