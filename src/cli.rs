//! The command line: built-in commands plus one subcommand per runbook and procedure, with
//! each procedure's params as typed flags (`backup_id` → `--backup-id`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Args, Command, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use indexmap::IndexMap;

use crate::library::Listed;
use runbook_lang::summary::{ParamSummary, ProcedureSummary, RunbookSummary};

#[derive(Debug, Parser)]
#[command(
    name = "runbook",
    version,
    about = "Run operational runbooks: checked before they run, shown before they mutate, confirmed between stages",
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Builtin,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    // The environment variables are read by `global_args`, not by clap: an exported but
    // empty variable counts as unset, and the flag always wins.
    /// Folder of runbook files [env: RUNBOOK_DIR]
    #[arg(long, global = true, default_value = "runbooks", value_name = "DIR")]
    pub dir: PathBuf,
    /// Where journals and locks live [env: RUNBOOK_STATE_DIR] [default: $XDG_STATE_HOME/runbook]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Share the lock, journal and history with the team: gs://BUCKET/PREFIX
    #[arg(long, global = true, env = "RUNBOOK_STATE_URL", value_name = "URL")]
    pub state_url: Option<String>,
    /// Lease of a shared run lock; the holder renews it [default: 90s]
    #[arg(long, global = true, env = "RUNBOOK_LOCK_LEASE", value_name = "DURATION", value_parser = runbook_state::store::parse_lease)]
    pub lock_lease: Option<std::time::Duration>,
    /// When to use colour
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Print only errors and what a step needs the operator to see
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Send none of the environment's `notify:` webhooks for this run
    #[arg(long, global = true)]
    pub no_notify: bool,
    /// More logging (-vv for debug; RUST_LOG also works), and read steps' captured JSON shown whole
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// `--on-failure`: what a step failing where its `on_failure` aborts does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnFailure {
    /// Run the undo steps of what this run changed, newest first; the run still fails.
    Undo,
    /// Stop; the run can be resumed (the default).
    Abort,
}

impl From<OnFailure> for runbook_engine::session::FailurePolicy {
    fn from(choice: OnFailure) -> Self {
        match choice {
            OnFailure::Undo => runbook_engine::session::FailurePolicy::Undo,
            OnFailure::Abort => runbook_engine::session::FailurePolicy::Abort,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Human,
    Json,
}

/// `runbook show --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ShowFormat {
    #[default]
    Human,
    Json,
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Human,
    Json,
    Github,
}

#[derive(Debug, Subcommand)]
pub enum Builtin {
    /// List runbooks, their procedures, params and environments
    List,
    /// Check runbook files (default: the runbook folder) and report every problem
    Validate {
        /// Files or folders to check
        paths: Vec<PathBuf>,
        /// Output format [default: github when GITHUB_ACTIONS=true, else human]
        #[arg(long, value_enum)]
        format: Option<ValidateFormat>,
        /// Fail on warnings too
        #[arg(long)]
        strict: bool,
    },
    /// Past runs, newest first
    History {
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        /// Only rehearsals (`--simulate`, or runs against `runbook simulate`)
        #[arg(long, conflicts_with = "no_rehearsals")]
        rehearsals: bool,
        /// Only real runs, no rehearsals
        #[arg(long)]
        no_rehearsals: bool,
        /// Only runs that broke glass (ran an environment that needs approvals without a plan)
        #[arg(long)]
        break_glass: bool,
    },
    /// The timeline of one run
    Show {
        run_id: String,
        /// `markdown`: a postmortem timeline (valid CommonMark, GitHub tables)
        #[arg(long, value_enum, default_value_t = ShowFormat::Human)]
        format: ShowFormat,
    },
    /// Continue a failed or interrupted run at its first unfinished step
    Resume {
        run_id: String,
        /// Answer every confirmation and acknowledge manual steps
        #[arg(short, long)]
        yes: bool,
        /// Resume even though the runbook file changed (recorded in the journal)
        #[arg(long)]
        force: bool,
        /// Answer a prompt or manual step ahead of time
        #[arg(long, value_name = "STEP_ID=VALUE", allow_hyphen_values = true)]
        answer: Vec<String>,
        /// The protected environment's name, typed ahead (asked again otherwise)
        #[arg(long, value_name = "NAME")]
        confirm_env: Option<String>,
        /// The target of a `confirm: typed` step, typed ahead (asked again otherwise)
        #[arg(long, value_name = "STEP_ID=VALUE")]
        confirm_target: Vec<String>,
        /// Output format
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        output: OutputFormat,
        /// Start again at this step, finished in an earlier attempt: it and every later step
        /// run again (confirmed; --yes without a terminal)
        #[arg(long, value_name = "STEP_ID")]
        from: Option<String>,
        /// When a step fails where its `on_failure` stops the run: `undo` runs the undo steps
        /// of what the run changed, newest first; `abort` stops, resumable [default: the run's]
        #[arg(long, value_enum, value_name = "WHAT")]
        on_failure: Option<OnFailure>,
        /// Resume a run of an approved plan with what was not approved (a new --answer,
        /// --from, a changed file); the reason is journaled
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// Run the undo steps of a finished, failed or aborted run, newest first
    Undo {
        run_id: String,
        /// Confirm every undo ahead of time (typed targets still need --confirm-target)
        #[arg(short, long)]
        yes: bool,
        /// Undo even though the runbook file changed (recorded in the journal)
        #[arg(long)]
        force: bool,
        /// The protected environment's name, typed ahead (asked again otherwise)
        #[arg(long, value_name = "NAME")]
        confirm_env: Option<String>,
        /// The target of a `confirm: typed` undo step, typed ahead
        #[arg(long, value_name = "STEP_ID=VALUE")]
        confirm_target: Vec<String>,
        /// Output format
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        output: OutputFormat,
        /// Undo a run of an approved plan in an environment that needs approvals; the reason
        /// is journaled
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// The run locks: who holds them, and breaking one (shared when a state URL is set)
    #[command(subcommand)]
    Lock(LockCommand),
    /// Print the JSON Schema of the runbook format
    Schema,
    /// Render a runbook as a Markdown document
    Docs {
        /// A runbook name from the folder, or a file
        runbook: String,
    },
    /// Print a shell completion script (runbooks, procedures and param flags included)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Serve the fake Google APIs for a rehearsal and print the gcloud settings to use
    #[command(
        after_help = "Scenarios and faults (POST /__fake/faults, a scenario's `faults`) are documented in docs/faults.md; their JSON Schema is schema/faults.schema.json (--print-faults-schema)."
    )]
    Simulate {
        /// Scenario file (default: the built-in Pegasus deployment)
        #[arg(long, value_name = "FILE")]
        scenario: Option<PathBuf>,
        /// Port to listen on (default: a free one)
        #[arg(long)]
        port: Option<u16>,
        /// Print the scenario as JSON (a starting point for your own) and exit
        #[arg(long)]
        print_scenario: bool,
        /// Print the JSON Schema of the faults format and exit
        #[arg(long)]
        print_faults_schema: bool,
    },
    /// Print the man page, or write one per command into a folder
    Man {
        /// Write runbook.1, runbook-<command>.1, ... into this folder
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print a saved plan (`--save-plan`) the way a dry-run does, and what apply will check
    ShowPlan {
        /// The plan file
        file: PathBuf,
        /// Output format (`json`: the plan, its approvals and what apply will check)
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        output: OutputFormat,
    },
    /// Approve a saved plan made by someone else (recorded against the plan's id)
    Approve {
        /// The plan file
        file: PathBuf,
        /// Why, or what you checked (recorded with the approval)
        #[arg(long)]
        comment: Option<String>,
        /// The first 8 characters of the plan id, when there is no terminal to type them
        #[arg(long, value_name = "PREFIX")]
        plan_id: Option<String>,
        /// In a GitHub Actions job: the approver is the environment's reviewer, given by
        /// the workflow in RUNBOOK_GITHUB_REVIEWER (see docs/plans.md)
        #[arg(long)]
        approver_from_github: bool,
        /// Sign the approval with this SSH key (a private key, or a public key whose private
        /// half is in ssh-agent) for an environment that takes signed approvals
        /// [default: RUNBOOK_SIGNING_KEY]
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
    },
    /// Run exactly an approved plan, refusing if anything changed since it was made
    Apply {
        /// The plan file
        file: PathBuf,
        /// The protected environment's name, when there is no terminal to type it
        #[arg(long, value_name = "NAME")]
        confirm_env: Option<String>,
        /// Answer a secret prompt (secrets are never written into a plan)
        #[arg(long, value_name = "STEP_ID=VALUE")]
        answer: Vec<String>,
        /// Output format
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        output: OutputFormat,
        /// When a step fails where its `on_failure` stops the run: `undo` runs the undo steps
        /// of what the run changed, newest first; `abort` stops, resumable (the default)
        #[arg(long, value_enum, value_name = "WHAT")]
        on_failure: Option<OnFailure>,
    },
    /// Run a procedure of a runbook file outside the runbook folder
    Run {
        /// The runbook file
        file: PathBuf,
        /// Procedure and its flags (see `runbook run FILE --help`)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<OsString>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Show the run locks and who holds them
    Status {
        /// Only this runbook's locks
        runbook: Option<String>,
        /// Only this environment's locks
        #[arg(long, value_name = "ENV")]
        env: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Free a held lock (recorded in the holder's journal with who and why)
    Break {
        runbook: String,
        /// The environment of the lock (omit for a runbook without environments)
        #[arg(long, value_name = "ENV")]
        env: Option<String>,
        /// Why: recorded in the journal of the run whose lock is broken
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Without a terminal: the lock's name as typed confirmation (RUNBOOK/ENV)
        #[arg(long, value_name = "RUNBOOK/ENV")]
        confirm: Option<String>,
    },
}

// Flags every procedure has.
#[derive(Debug, Clone, Args, Default)]
pub struct ExecArgs {
    /// Target environment (required when the runbook defines environments)
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Print every step fully rendered; run nothing
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: also run read-only steps so later steps render with real values
    #[arg(long, requires = "dry_run")]
    pub probe: bool,
    /// Answer every confirmation and acknowledge manual steps (their text is still shown)
    #[arg(short, long)]
    pub yes: bool,
    /// Answer a prompt or manual step ahead of time
    #[arg(long, value_name = "STEP_ID=VALUE", allow_hyphen_values = true)]
    pub answer: Vec<String>,
    /// The protected environment's name, typed ahead (needed without a terminal; --yes does not confirm it)
    #[arg(long, value_name = "NAME")]
    pub confirm_env: Option<String>,
    /// The target of a `confirm: typed` step, typed ahead (needed without a terminal)
    #[arg(long, value_name = "STEP_ID=VALUE")]
    pub confirm_target: Vec<String>,
    /// Rehearse: every step's gcloud talks to a local fake of the Google APIs
    #[arg(long)]
    pub simulate: bool,
    /// Scenario for --simulate: the fake's projects, instances, secrets, services, faults
    #[arg(long, requires = "simulate", value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Port for --simulate (default: a free one); its simulated app is at /app
    #[arg(long, requires = "simulate", value_name = "PORT")]
    pub simulate_port: Option<u16>,
    /// Replace an environment var for this run (recorded in the journal)
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// When a step fails where its `on_failure` stops the run: `undo` runs the undo steps
    /// of what this run changed, newest first; `abort` stops, resumable (the default)
    #[arg(long, value_enum, value_name = "WHAT")]
    pub on_failure: Option<OnFailure>,
    /// Write a plan for `runbook approve` and `runbook apply`: probes run, nothing changes
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dry_run", "simulate"])]
    pub save_plan: Option<PathBuf>,
    /// How long a saved plan can be applied [default: 1h]
    #[arg(long, value_name = "DURATION", requires = "save_plan")]
    pub plan_ttl: Option<String>,
    /// Sign the saved plan as its author with this SSH key (needed when the environment takes
    /// signed approvals) [default: RUNBOOK_SIGNING_KEY]
    #[arg(long, value_name = "PATH", requires = "save_plan")]
    pub signing_key: Option<PathBuf>,
    /// Run an environment that needs approvals without a plan; the reason is journaled
    #[arg(long, value_name = "REASON", conflicts_with = "save_plan")]
    pub break_glass: Option<String>,
}

pub struct ProcedureCall {
    pub procedure: String,
    pub exec: ExecArgs,
    pub params: IndexMap<String, String>,
}

const PARAM_PREFIX: &str = "param:";

/// The `runbook` command with a subcommand for every runbook in the folder.
pub fn command(entries: &[Listed]) -> Command {
    let mut cmd = Cli::command();
    let mut taken: Vec<String> = runbook_lang::checker::builtins().iter().map(|b| (*b).to_owned()).collect();
    for entry in entries {
        // A name that is taken (a built-in, or a runbook listed earlier) is reported by
        // `validate`; it gets no subcommand of its own.
        let name = entry.command_name();
        if name.is_empty() || taken.contains(&name) {
            continue;
        }
        taken.push(name);
        cmd = cmd.subcommand(runbook_command(entry));
    }
    cmd
}

fn runbook_command(entry: &Listed) -> Command {
    let name = entry.command_name();
    match &entry.summary.runbook {
        Some(runbook) => procedures_command(Command::new(name), runbook),
        // A broken runbook still shows up, and says what is wrong when invoked.
        None => Command::new(name)
            .about(format!("(invalid: run `runbook validate {}`)", entry.path.display()))
            .arg(clap::Arg::new("rest").num_args(0..).trailing_var_arg(true).allow_hyphen_values(true)),
    }
}

pub fn procedures_command(cmd: Command, runbook: &RunbookSummary) -> Command {
    let mut cmd = cmd.about(runbook.title.clone().unwrap_or_default());
    if let Some(description) = &runbook.description {
        let title = runbook.title.as_deref().unwrap_or(&runbook.name);
        cmd = cmd.long_about(format!("{title}\n\n{}", description.trim()));
    }
    let mut cmd = cmd.subcommand_required(true).arg_required_else_help(true).subcommand_value_name("PROCEDURE");
    let environments: Vec<String> = runbook.environments.iter().map(|e| e.name.clone()).collect();
    for procedure in &runbook.procedures {
        let mut sub = Command::new(procedure.name.clone()).about(procedure.summary.clone().unwrap_or_default());
        if let Some(description) = &procedure.description {
            let summary = procedure.summary.as_deref().unwrap_or(&procedure.name);
            sub = sub.long_about(format!("{summary}\n\n{}", description.trim()));
        }
        sub = sub.override_usage(usage(cmd.get_name(), procedure, !environments.is_empty()));
        sub = sub.after_help(after_help(cmd.get_name(), procedure, runbook));
        sub = ExecArgs::augment_args(sub);
        if !environments.is_empty() {
            let names = environments.clone();
            sub =
                sub.mut_arg("env", |a| a.value_parser(clap::builder::PossibleValuesParser::new(names)).required(true));
        }
        for param in &procedure.params {
            sub = sub.arg(param_arg(param));
        }
        cmd = cmd.subcommand(sub);
    }
    cmd
}

/// The usage line, with the flags a run cannot go without: the parser does not require
/// params itself (a missing one is reported with its help, after the runbook is checked), so
/// its own usage line would leave them out.
fn usage(runbook: &str, procedure: &ProcedureSummary, environments: bool) -> String {
    let mut usage = format!("runbook {runbook} {}", procedure.name);
    if environments {
        usage.push_str(" --env <ENV>");
    }
    for param in procedure.params.iter().filter(|p| p.required) {
        usage.push_str(&format!(" --{} <{}>", param.flag, param.type_name.to_uppercase()));
    }
    usage.push_str(" [OPTIONS]");
    usage
}

/// After the options: the environments and what a run in each needs, and the prompts
/// `--answer` can answer.
fn after_help(runbook: &str, procedure: &ProcedureSummary, summary: &RunbookSummary) -> String {
    let mut out = String::new();
    if !summary.environments.is_empty() {
        out.push_str("Environments:\n");
        for env in &summary.environments {
            let mut facts = Vec::new();
            if env.protected {
                facts.push("protected: --confirm-env needed with --yes".to_owned());
            }
            if env.approvals > 0 {
                facts.push(format!(
                    "runs an approved plan: `runbook {runbook} {} --env {} --save-plan FILE{}`, then {} other \
                     {} `runbook approve FILE{}`, then `runbook apply FILE` (or --break-glass REASON)",
                    procedure.name,
                    env.name,
                    if env.signed { " --signing-key KEY" } else { "" },
                    env.approvals,
                    if env.approvals == 1 { "person runs" } else { "people run" },
                    if env.signed { " --key KEY" } else { "" },
                ));
            }
            let facts = if facts.is_empty() { String::new() } else { format!(" ({})", facts.join("; ")) };
            out.push_str(&format!("  {}{facts}\n", env.name));
        }
    }
    if !procedure.answers.is_empty() {
        out.push_str("Prompts (answer ahead with --answer ID=VALUE; asked when not given):\n");
        let width = procedure.answers.iter().map(|(id, _)| id.len()).max().unwrap_or(0);
        for (id, name) in &procedure.answers {
            out.push_str(format!("  {id:width$}  {name}").trim_end());
            out.push('\n');
        }
    }
    out.trim_end().to_owned()
}

fn param_arg(param: &ParamSummary) -> clap::Arg {
    let mut arg = clap::Arg::new(format!("{PARAM_PREFIX}{}", param.name))
        .long(param.flag.clone())
        .help(param.help.clone())
        .value_name(param.type_name.to_uppercase())
        .action(ArgAction::Set);
    if let Some(default) = &param.default
        && !param.secret
    {
        arg = arg.default_value(default.clone());
    }
    if param.is_bool() {
        arg = arg.num_args(0..=1).require_equals(true).default_missing_value("true").value_name("BOOL");
    } else if !param.values.is_empty() && !param.secret {
        // The argument parser quotes an invalid value in its error: a secret's is checked
        // later, by `Param::check_value`, which never echoes it.
        arg = arg.value_parser(clap::builder::PossibleValuesParser::new(param.values.clone()));
    }
    if param.secret {
        // A secret typed on the command line lands in shell history and `ps`; the env var
        // (or the hidden prompt when neither is given) keeps it out of both.
        // A value that starts with `-` is the secret, not an unknown flag to quote back.
        arg =
            arg.env(runbook_lang::param::secret_env_name(&param.name)).hide_env_values(true).allow_hyphen_values(true);
    }
    arg
}

/// Reads a procedure's flags out of its matches.
pub fn procedure_call(matches: &clap::ArgMatches, procedure: &str) -> Result<ProcedureCall, clap::Error> {
    let exec = ExecArgs::from_arg_matches(matches)?;
    let mut params = IndexMap::new();
    for id in matches.ids() {
        let id = id.as_str();
        if let Some(name) = id.strip_prefix(PARAM_PREFIX)
            && let Some(value) = matches.get_one::<String>(id)
        {
            params.insert(name.to_owned(), value.clone());
        }
    }
    Ok(ProcedureCall { procedure: procedure.to_owned(), exec, params })
}

/// `--dir` as given, before the full command line can be built (it decides which runbooks,
/// and so which subcommands, exist).
pub fn prescan_dir(args: &[OsString]) -> PathBuf {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if text == "--dir" {
            if let Some(value) = iter.next() {
                return PathBuf::from(value);
            }
        } else if let Some(value) = text.strip_prefix("--dir=") {
            return PathBuf::from(value);
        }
    }
    env_path("RUNBOOK_DIR").unwrap_or_else(|| PathBuf::from("runbooks"))
}

/// An environment variable holding a path; exported but empty counts as unset.
fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The runbook folder (`--dir`, else `RUNBOOK_DIR`, else `runbooks`). A folder named
/// explicitly must be a readable folder: otherwise every command would say "no runbooks"
/// or "unrecognized subcommand" instead of what is wrong.
pub fn runbook_dir(args: &[OsString]) -> Result<PathBuf, String> {
    let dir = prescan_dir(args);
    let explicit = dir.as_os_str() != "runbooks" || env_path("RUNBOOK_DIR").is_some();
    if !explicit {
        return Ok(dir);
    }
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => std::fs::read_dir(&dir)
            .map(|_| dir.clone())
            .map_err(|e| format!("cannot read the runbook folder {}: {e}", dir.display())),
        Ok(_) => Err(format!("the runbook folder {} is not a folder (--dir / RUNBOOK_DIR)", dir.display())),
        Err(e) => Err(format!("the runbook folder {} cannot be used: {e} (--dir / RUNBOOK_DIR)", dir.display())),
    }
}

/// Global flags wherever they appear, for commands that parse the rest themselves.
pub fn global_args(matches: &clap::ArgMatches) -> GlobalArgs {
    let mut global = GlobalArgs::from_arg_matches(matches).unwrap_or(GlobalArgs {
        dir: PathBuf::from("runbooks"),
        state_dir: None,
        state_url: None,
        lock_lease: None,
        color: ColorChoice::Auto,
        quiet: false,
        no_notify: false,
        verbose: 0,
    });
    if matches.value_source("dir") != Some(clap::parser::ValueSource::CommandLine)
        && let Some(dir) = env_path("RUNBOOK_DIR")
    {
        global.dir = dir;
    }
    if global.state_dir.is_none() {
        global.state_dir = env_path("RUNBOOK_STATE_DIR");
    }
    global
}

#[cfg(test)]
mod tests {
    use clap::{Args, CommandFactory};

    /// Every flag a procedure gets besides its params is reserved, so a param can never
    /// collide with one (clap would refuse the command line).
    #[test]
    fn reserved_flags_cover_every_procedure_flag() {
        let command = super::ExecArgs::augment_args(clap::Command::new("p"));
        let command = super::GlobalArgs::augment_args(command);
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(runbook_lang::checker::RESERVED_FLAGS.contains(&long), "--{long} is not in RESERVED_FLAGS");
            }
        }
        let _ = super::Cli::command();
    }

    /// The language crate keeps its own list of built-ins (it knows no command line); this
    /// holds it to the command line's definition, so a new built-in is never missing there.
    #[test]
    fn the_checkers_builtins_are_the_command_lines() {
        let command = super::Cli::command();
        let mut names: Vec<String> = command
            .get_subcommands()
            .flat_map(|c| std::iter::once(c.get_name()).chain(c.get_all_aliases()))
            .map(str::to_owned)
            .collect();
        names.push("help".to_owned());
        names.sort();
        let mut listed: Vec<String> = runbook_lang::checker::BUILTINS.iter().map(|b| (*b).to_owned()).collect();
        listed.sort();
        assert_eq!(listed, names, "runbook_lang::checker::BUILTINS must list every built-in command");
    }
}
