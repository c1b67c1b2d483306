//! `runbook`: parse the command line, load the runbook folder, run the command.

mod cache;
mod cli;
mod commands;
mod error;
mod library;
mod output;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::FromArgMatches;

use crate::cli::{Builtin, ColorChoice, GlobalArgs};
use crate::error::Error;
use crate::library::{Library, Listing, load_entry};

fn main() -> ExitCode {
    if let Some(code) = print_version() {
        return code;
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let dir = match cli::runbook_dir(&args) {
        Ok(dir) => dir,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(error::exit::USAGE);
        }
    };
    let library = if needs_library(&args) { Listing::load(&dir) } else { Listing::empty(&dir) };
    let runbooks: &[library::Listed] = if parses_without_runbooks(&args) { &[] } else { &library.entries };
    let matches = match cli::command(runbooks).try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(err) => {
            print_parse_error(&err, library.entries.iter().filter_map(|e| e.summary.runbook.as_ref()), &args);
            if let Some(hint) = wrong_folder_hint(&err, &library) {
                eprintln!("{hint}");
            }
            return ExitCode::from(if err.use_stderr() { error::exit::USAGE } else { error::exit::OK });
        }
    };
    let global = cli::global_args(&matches);
    init_logging(&global);
    let color = use_color(&global);
    match dispatch(&library, &matches, &global, color) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            err.print(color);
            ExitCode::from(err.code())
        }
    }
}

/// `runbook --version` (or `-V`) alone: printed before anything else is set up, as the
/// command line would print it (start-up time, issue 13).
fn print_version() -> Option<ExitCode> {
    use std::io::Write as _;
    let mut args = std::env::args_os().skip(1);
    let flag = args.next()?;
    if args.next().is_some() || (flag != "--version" && flag != "-V") {
        return None;
    }
    let mut out = std::io::stdout().lock();
    match writeln!(out, "runbook {}", env!("CARGO_PKG_VERSION")).and_then(|()| out.flush()) {
        Ok(()) => Some(ExitCode::SUCCESS),
        // A reader that went away (`| head -c0`) wanted nothing more; a full disk is an error.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Some(ExitCode::SUCCESS),
        Err(err) => {
            eprintln!("error: cannot print the version: {err}");
            Some(ExitCode::from(error::exit::STEP_FAILED))
        }
    }
}

/// Built-ins whose parsing and running never use the folder's runbooks: for them the
/// command line is built without checking every runbook first (start-up time).
const WITHOUT_LIBRARY: &[&str] = &["validate", "history", "show", "resume", "undo", "schema", "run"];

/// Whether building the command line needs the runbook folder: anything but a built-in of
/// [`WITHOUT_LIBRARY`] or a bare `--version`. Anything unusual before the command (an
/// unknown flag, `--help`) loads the folder, as the full command line may be needed.
fn needs_library(args: &[std::ffi::OsString]) -> bool {
    match head(args) {
        Head::Command(command) => !WITHOUT_LIBRARY.contains(&command),
        Head::Unusual => true,
        Head::End { version } => !version,
    }
}

/// A built-in command's line parses the same without the runbooks' subcommands (start-up
/// time: `list` need not build a command per procedure). `help`, `completions` and `man`
/// show the runbooks, so they get the full command line.
fn parses_without_runbooks(args: &[std::ffi::OsString]) -> bool {
    matches!(head(args), Head::Command(command)
        if !matches!(command, "help" | "completions" | "man") && runbook_lang::checker::builtins().contains(&command))
}

/// What comes first on the command line after the global flags.
enum Head<'a> {
    Command(&'a str),
    /// An unknown flag, `--help`, or an argument that is not UTF-8.
    Unusual,
    /// No command; `version` when `--version`/`-V` was among the flags.
    End {
        version: bool,
    },
}

fn head(args: &[std::ffi::OsString]) -> Head<'_> {
    let mut version = false;
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else { return Head::Unusual };
        match text {
            "--dir" | "--state-dir" | "--color" => {
                iter.next();
            }
            "-V" | "--version" => version = true,
            "-q" | "--quiet" | "-v" | "-vv" | "-vvv" | "--verbose" => {}
            _ if text.starts_with("--dir=") || text.starts_with("--state-dir=") || text.starts_with("--color=") => {}
            _ if text.starts_with('-') => return Head::Unusual,
            command => return Head::Command(command),
        }
    }
    Head::End { version }
}

fn dispatch(library: &Listing, matches: &clap::ArgMatches, global: &GlobalArgs, color: bool) -> Result<(), Error> {
    let Some((name, sub)) = matches.subcommand() else { return Err(Error::Usage("no command given".into())) };
    if let Some(listed) = library.find(name) {
        // The command line came from the summary; what runs is checked in full, now.
        let entry = &library.entry(listed);
        let Some((procedure, proc_matches)) = sub.subcommand() else {
            // A broken runbook takes any arguments and reports its problems.
            return commands::procedure::run_procedure(entry, empty_call(), &settings(global));
        };
        let call = cli::procedure_call(proc_matches, procedure).map_err(|e| Error::Usage(e.to_string()))?;
        return commands::procedure::run_procedure(entry, call, &settings(global));
    }
    match Builtin::from_arg_matches(matches).map_err(|e| Error::Usage(e.to_string()))? {
        Builtin::List => {
            // A folder without runbooks is a mistake (the wrong folder), not an empty answer:
            // said on stderr, exit 2, so a script notices.
            if library.entries.is_empty() {
                return Err(Error::Usage(commands::list::list(library).trim_end().to_owned()));
            }
            output::print(&commands::list::list(library));
            Ok(())
        }
        Builtin::Validate { paths, format, strict } => {
            commands::validate::validate(&paths, &global.dir, format, strict, color)
        }
        Builtin::Run { file, rest } => run_file(&file, rest, global),
        Builtin::Docs { runbook } => commands::tooling::docs(&Library::load(&library.dir), &runbook),
        Builtin::Completions { shell } => {
            commands::tooling::completions(cli::command(&library.entries), shell);
            Ok(())
        }
        Builtin::Man { out_dir } => commands::tooling::man(cli::command(&library.entries), out_dir.as_deref()),
        Builtin::Simulate { scenario, port, print_scenario, print_faults_schema } => {
            if print_faults_schema {
                output::print(&runbook_simulate::faults::schema_json());
                Ok(())
            } else if print_scenario {
                commands::rehearse::print_scenario(scenario.as_deref())
            } else {
                commands::rehearse::serve(scenario.as_deref(), port, global.state_dir.as_deref())
            }
        }
        Builtin::Lock(command) => commands::lock::lock(&settings(global), command),
        Builtin::Schema => {
            output::print(&runbook_lang::schema::json());
            Ok(())
        }
        Builtin::History { format, rehearsals, no_rehearsals, break_glass } => {
            let only = if rehearsals {
                Some(true)
            } else if no_rehearsals {
                Some(false)
            } else {
                None
            };
            commands::history::history(&settings(global), format, only, break_glass)
        }
        Builtin::ShowPlan { file, output } => commands::show_plan::show(&file, output, &settings(global)),
        Builtin::Approve { file, comment, plan_id, approver_from_github, key } => {
            let args = commands::approve::ApproveArgs {
                file: &file,
                comment,
                prefix: plan_id,
                from_github: approver_from_github,
                key,
            };
            commands::approve::approve(args, &settings(global))
        }
        Builtin::Apply { file, confirm_env, answer, output, on_failure } => {
            let args = commands::apply::ApplyArgs {
                file: &file,
                confirm_env,
                answers: answer,
                output,
                on_failure: on_failure.map(Into::into),
            };
            commands::apply::apply(args, &settings(global))
        }
        Builtin::Show { run_id, format } => commands::show::show(&settings(global), &run_id, format),
        Builtin::Resume {
            run_id,
            yes,
            force,
            answer,
            confirm_env,
            confirm_target,
            output,
            from,
            on_failure,
            break_glass,
        } => {
            let confirm = (confirm_env, confirm_target);
            let args = commands::resume::ResumeArgs {
                run_id,
                yes,
                force,
                answers: answer,
                confirm,
                output,
                undo: false,
                from,
                on_failure: on_failure.map(Into::into),
                break_glass,
            };
            commands::resume::resume(&settings(global), args)
        }
        Builtin::Undo { run_id, yes, force, confirm_env, confirm_target, output, break_glass } => {
            let confirm = (confirm_env, confirm_target);
            let args = commands::resume::ResumeArgs {
                run_id,
                yes,
                force,
                answers: Vec::new(),
                confirm,
                output,
                undo: true,
                from: None,
                on_failure: None,
                break_glass,
            };
            commands::resume::resume(&settings(global), args)
        }
    }
}

/// `runbook run FILE PROCEDURE ...`: the file's procedures parsed as if it were in the folder.
fn run_file(file: &std::path::Path, rest: Vec<std::ffi::OsString>, global: &GlobalArgs) -> Result<(), Error> {
    if !file.is_file() {
        let reason = commands::validate::unusable_path_reason(file, "no such runbook file");
        return Err(Error::Usage(format!("{}: {reason}", file.display())));
    }
    let entry = load_entry(file);
    let Some(runbook) = entry.checked.runbook.clone() else {
        return commands::procedure::run_procedure(&entry, empty_call(), &settings(global));
    };
    let bin_name = format!("runbook run {}", file.display());
    let summary = runbook_lang::summary::RunbookSummary::of(&runbook);
    let cmd = cli::procedures_command(clap::Command::new("run").bin_name(bin_name), &summary);
    let argv: Vec<std::ffi::OsString> = std::iter::once(std::ffi::OsString::from("run")).chain(rest).collect();
    let matches = match cmd.try_get_matches_from(&argv) {
        Ok(matches) => matches,
        Err(err) => {
            print_parse_error(&err, [&summary], &argv);
            return Err(Error::Reported(if err.use_stderr() { error::exit::USAGE } else { error::exit::OK }));
        }
    };
    let Some((procedure, proc_matches)) = matches.subcommand() else {
        return Err(Error::Usage("no procedure given".into()));
    };
    let call = cli::procedure_call(proc_matches, procedure).map_err(|e| Error::Usage(e.to_string()))?;
    commands::procedure::run_procedure(&entry, call, &settings(global))
}

fn settings(global: &GlobalArgs) -> runbook_engine::session::Settings {
    let no_color =
        matches!(global.color, ColorChoice::Never) || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    runbook_engine::session::Settings {
        quiet: global.quiet,
        verbose: global.verbose > 0,
        state_dir: global.state_dir.clone(),
        state_url: global.state_url.clone(),
        lock_lease: global.lock_lease,
        dir: global.dir.clone(),
        no_color,
        no_notify: global.no_notify,
    }
}

fn empty_call() -> cli::ProcedureCall {
    cli::ProcedureCall { procedure: String::new(), exec: cli::ExecArgs::default(), params: indexmap::IndexMap::new() }
}

/// `runbook rollback pitr` from a folder without runbooks: say where they were looked for
/// and how to point at them, instead of only "unrecognized subcommand".
/// The argument parser's refusal, with any secret on the command line masked (it quotes
/// what it refused).
/// Which argument is not UTF-8 text, named by its position and the flag it belongs to —
/// never by its bytes, which may be a secret's.
fn invalid_utf8_argument(args: &[std::ffi::OsString]) -> String {
    let Some(index) = args.iter().skip(1).position(|a| a.to_str().is_none()).map(|i| i + 1) else {
        // The parser also reads variables (`RUNBOOK_PARAM_<NAME>` for a secret param,
        // `RUNBOOK_STATE_URL`): name the variable, never its value, which may be a secret.
        return match invalid_utf8_variable() {
            Some(name) => format!(
                "{} is not valid UTF-8; params are text — set it to text or unset it",
                runbook_lang::diagnostic::clip(&name)
            ),
            None => "an argument is not valid UTF-8 text".into(),
        };
    };
    let bad = args[index].as_encoded_bytes();
    let owner = if bad.starts_with(b"--") {
        // `--flag=VALUE`: the flag's name is what is before `=`.
        let name = bad.split(|b| *b == b'=').next().unwrap_or(bad);
        std::str::from_utf8(name).ok().filter(|n| bad.len() > n.len()).map(str::to_owned)
    } else {
        args.get(index - 1).and_then(|a| a.to_str()).filter(|a| a.starts_with('-')).map(str::to_owned)
    };
    let what = match owner {
        Some(flag) => format!("the value of `{}`", runbook_lang::diagnostic::clip(&flag)),
        None => "it".to_owned(),
    };
    format!(
        "argument {index} is not valid UTF-8 text ({what}); params, answers, ids and names are text — \
         re-type it or pass it through the environment"
    )
}

/// The first `RUNBOOK_*` variable whose value is not UTF-8 text (a variable whose name is
/// not text is none the parser reads).
fn invalid_utf8_variable() -> Option<String> {
    let mut names: Vec<String> = std::env::vars_os()
        .filter(|(_, value)| value.to_str().is_none())
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("RUNBOOK_"))
        .collect();
    names.sort();
    names.into_iter().next()
}

fn print_parse_error<'a>(
    err: &clap::Error,
    runbooks: impl IntoIterator<Item = &'a runbook_lang::summary::RunbookSummary>,
    args: &[std::ffi::OsString],
) {
    if err.kind() == clap::error::ErrorKind::InvalidUtf8 {
        eprintln!("error: {}", invalid_utf8_argument(args));
        return;
    }
    if !err.use_stderr() {
        // Help and version text: ours, printed as the parser prints it.
        let _ = err.print();
        return;
    }
    let redactor = runbook_engine::redact::in_arguments(runbooks, args);
    eprint!("{}", escaped_parse_error(err, &redactor.redact(&err.render().to_string())));
}

/// The parser's refusal quotes what it refused (`invalid value '…' for '--lock-lease'`,
/// an unknown subcommand) as it was typed: each such value is shown escaped and cut like
/// every other value from the command line, and no control character of the rest reaches
/// the terminal.
fn escaped_parse_error(err: &clap::Error, text: &str) -> String {
    use clap::error::ContextValue;
    use runbook_lang::diagnostic::clip;
    let mut text = text.to_owned();
    let mut quoted: Vec<&String> = Vec::new();
    for (_, value) in err.context() {
        match value {
            ContextValue::String(value) => quoted.push(value),
            ContextValue::Strings(values) => quoted.extend(values),
            _ => {}
        }
    }
    // Longest first, so a value inside another is not replaced within it.
    quoted.sort_by_key(|value| std::cmp::Reverse(value.len()));
    for value in quoted {
        let shown = clip(value);
        if value.is_empty() || shown == *value {
            continue;
        }
        // The parser's plain rendering drops escape sequences, so the value may be in the
        // text without them.
        let bare = runbook_engine::redact::shown_form(value);
        if text.contains(value.as_str()) {
            text = text.replace(value.as_str(), &shown);
        } else if !bare.is_empty() {
            text = text.replace(&bare, &shown);
        }
    }
    // Lines are the parser's own (usage, tips); within each, nothing is left to act on the
    // terminal, and the bound is only a backstop.
    text.lines().map(|line| runbook_lang::diagnostic::clip_to(line, 2000) + "\n").collect()
}

fn wrong_folder_hint(err: &clap::Error, library: &Listing) -> Option<String> {
    if err.kind() != clap::error::ErrorKind::InvalidSubcommand || !library.entries.is_empty() {
        return None;
    }
    let name = match err.get(clap::error::ContextKind::InvalidSubcommand)? {
        clap::error::ContextValue::String(name) => name.clone(),
        _ => return None,
    };
    let looks_like_runbook = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with('-');
    if !looks_like_runbook {
        return None;
    }
    let dir = &library.dir;
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    let state = if dir.is_dir() { "has no runbook files" } else { "does not exist" };
    Some(format!(
        "\nNo runbook `{name}`: runbooks are looked for in {} (--dir, RUNBOOK_DIR, default `runbooks` in the current folder), which {state}.\nRun from the folder that holds `runbooks/`, or point at it: `runbook --dir PATH {name} ...` or `RUNBOOK_DIR=PATH runbook {name} ...`; a single file runs with `runbook run FILE PROCEDURE`.",
        shown.display()
    ))
}

fn use_color(global: &GlobalArgs) -> bool {
    match global.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
        }
    }
}

fn init_logging(global: &GlobalArgs) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
