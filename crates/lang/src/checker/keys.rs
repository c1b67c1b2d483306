//! The keys the format accepts, per kind of mapping. The JSON Schema is tested against them.

pub const TOP: &[&str] = &["runbook", "title", "description", "notes", "environments", "params", "procedures"];
pub const ENVIRONMENT: &[&str] = &["vars", "protected", "approvals", "description", "rehearsal", "notify"];
pub const APPROVALS: &[&str] = &["count", "signers"];
pub const NOTIFY: &[&str] = &["webhook_env", "format", "events", "timeout"];
pub const PARAM: &[&str] = &[
    "type",
    "required",
    "default",
    "help",
    "pattern",
    "secret",
    "not_after",
    "not_before",
    "values",
    "example",
    "pattern_help",
];
pub const PROCEDURE: &[&str] = &["summary", "description", "params", "stages"];
pub const STAGE: &[&str] = &["name", "description", "steps"];
pub const KINDS: &[&str] = &["run", "shell", "http", "manual", "prompt", "assert", "include", "watch"];
pub const COMMON_KEYS: &[&str] = &[
    "id",
    "name",
    "when",
    "done_if",
    "effect",
    "timeout",
    "retry",
    "confirm",
    "target",
    "on_failure",
    "secret",
    "restarts_from",
    "on_interrupt",
    "recovery",
];
pub const PROCESS_KEYS: &[&str] = &["env", "stdin", "cwd", "capture"];
pub const SHELL_KEYS: &[&str] = &["args"];
pub const HTTP_STEP_KEYS: &[&str] = &["capture"];
pub const PROMPT_KEYS: &[&str] =
    &["type", "choices", "default", "pattern", "example", "pattern_help", "label", "value"];
pub const ASSERT_KEYS: &[&str] = &["message"];
pub const HTTP: &[&str] = &["method", "url", "headers", "body", "expect", "connect_timeout"];
pub const EXPECT: &[&str] = &["status", "body_contains", "json"];
pub const RETRY: &[&str] = &["attempts", "interval", "until"];
/// `watch:`: what it samples (one of `run`, `shell`, `http`, with their keys) and how.
pub const WATCH: &[&str] = &[
    "run", "shell", "http", "capture", "env", "stdin", "cwd", "args", "every", "within", "pass", "hold", "fail",
    "value",
];
/// What a watch may sample.
pub const WATCH_BODIES: &[&str] = &["run", "shell", "http"];

/// `undo:` on a mutating step: one step or a list of steps.
pub const UNDO: &str = "undo";
/// Step kinds an undo step may have: no questions (it runs unattended after `--yes`) and
/// no includes (an undo is spelled out where it is declared).
pub const UNDO_KINDS: &[&str] = &["run", "shell", "http", "manual", "assert"];

/// Every key a step may have, whatever its kind.
pub const STEP_ALL: &[&[&str]] = &[KINDS, COMMON_KEYS, PROCESS_KEYS, SHELL_KEYS, PROMPT_KEYS, ASSERT_KEYS, &[UNDO]];
