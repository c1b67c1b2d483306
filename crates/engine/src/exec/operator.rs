//! Questions to the operator: stage confirmations, typed confirmations, manual steps and
//! prompts. Answers come from `--yes`/`--answer`/`--confirm-*` first, then the terminal.

use std::collections::HashMap;

use dialoguer::theme::ColorfulTheme;
use dialoguer::{Input, Password, Select};

/// What the operator chose before a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageChoice {
    Run,
    Skip,
    Stop,
}

/// What the operator chose at the failure menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuChoice {
    Retry,
    /// Ask a prompt the failed step uses again, then retry.
    Edit,
    Skip,
    Undo,
    Abort,
}

/// Names typed ahead on the command line: they are never implied by `--yes` (SPEC §3 rule 5).
#[derive(Debug, Clone, Default)]
pub struct Confirmations {
    /// `--confirm-env NAME`: the protected environment's name.
    pub env: Option<String>,
    /// `--confirm-target STEP=VALUE`: the target of a `confirm: typed` step.
    pub targets: HashMap<String, String>,
}

pub struct Operator {
    pub interactive: bool,
    pub yes: bool,
    pub answers: HashMap<String, String>,
    pub confirmations: Confirmations,
    /// Manual steps wait for a person even though stages are confirmed ahead (`apply`: the
    /// approval confirms the stages, nobody's approval did the manual work).
    pub manual_by_person: bool,
}

pub use super::line::AskError;

fn ask_error(err: dialoguer::Error) -> AskError {
    let dialoguer::Error::IO(io) = &err;
    if io.kind() == std::io::ErrorKind::Interrupted {
        // Select hides the cursor; Ctrl-C must not leave the terminal without one.
        let _ = console::Term::stderr().show_cursor();
        eprintln!();
        return AskError::Interrupted;
    }
    AskError::Failed(err.to_string())
}

/// A person can be asked: stdin and stderr are both a terminal.
pub fn interactive() -> bool {
    use std::io::IsTerminal as _;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// How a manual step was passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledged {
    /// A person typed it (`done`, `not needed`), at the terminal or ahead with `--answer`.
    ByPerson(&'static str),
    /// Nobody was asked (`--yes`, `apply` without a terminal): journaled as such.
    Unattended(&'static str),
    /// `q`, Ctrl-D, or nobody to ask without `--yes`: the run stops here, resumable.
    Stopped,
}

/// A choice list item as the operator sees it.
pub struct Choice<'a> {
    pub value: &'a str,
    pub label: Option<&'a str>,
}

impl Operator {
    fn theme() -> ColorfulTheme {
        ColorfulTheme::default()
    }

    /// y / N (default) / s(kip) / q(uit).
    pub fn confirm_stage(&self, name: &str) -> Result<StageChoice, AskError> {
        if self.yes {
            return Ok(StageChoice::Run);
        }
        if !self.interactive {
            // The preflight refuses such runs; stopping is the safe answer regardless.
            return Ok(StageChoice::Stop);
        }
        let question = format!("Run stage `{name}`? [y]es / [N]o, stop here / [s]kip this stage");
        loop {
            // Ctrl-D (the end of input) is the default: stop here.
            let Some(answer) = super::line::read(&question, super::line::SHOWN)? else {
                return Ok(StageChoice::Stop);
            };
            match answer.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => return Ok(StageChoice::Run),
                "" | "n" | "no" | "q" | "quit" => return Ok(StageChoice::Stop),
                "s" | "skip" => return Ok(StageChoice::Skip),
                _ => eprintln!("Please answer y, n or s."),
            }
        }
    }

    /// A mutating step whose command was not known when its stage was confirmed (it uses a
    /// choice made in that stage): y / N (default).
    pub fn confirm_step(&self, id: &str) -> Result<bool, AskError> {
        let question = format!("Run `{id}` with this command? [y]es / [N]o, stop here");
        loop {
            // Ctrl-D (the end of input) is the default: stop here.
            let Some(answer) = super::line::read(&question, super::line::SHOWN)? else {
                return Ok(false);
            };
            match answer.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => return Ok(true),
                "" | "n" | "no" | "q" | "quit" => return Ok(false),
                _ => eprintln!("Please answer y or n."),
            }
        }
    }

    /// The failure menu: `[r]etry`, `[e]dit` (when the step uses a prompt's answer),
    /// `[s]kip`, `[u]ndo` (when the undo engine may run) or `[a]bort`. Anything else is
    /// asked again; there is no default, a failed step needs a decision.
    pub fn failure_menu(&self, id: &str, edit: bool, undo: bool) -> Result<MenuChoice, AskError> {
        let mut offered = vec!["[r]etry"];
        if edit {
            offered.push("[e]dit an answer and retry");
        }
        offered.push("[s]kip it (with a reason)");
        if undo {
            offered.push("[u]ndo this run's changes");
        }
        offered.push("[a]bort (resumable)");
        let question = format!("`{id}` failed: {}", offered.join(" / "));
        loop {
            // Read key by key: Ctrl-D is the end of input, pasted garbage is cut.
            let Some(answer) = super::line::read(&question, super::line::SHOWN)? else {
                return Err(AskError::Failed("end of input".into()));
            };
            match answer.trim().to_ascii_lowercase().as_str() {
                "r" | "retry" => return Ok(MenuChoice::Retry),
                "e" | "edit" if edit => return Ok(MenuChoice::Edit),
                "s" | "skip" => return Ok(MenuChoice::Skip),
                "u" | "undo" if undo => return Ok(MenuChoice::Undo),
                "a" | "abort" | "q" | "quit" => return Ok(MenuChoice::Abort),
                other => eprintln!("Please answer one of: {} (not {other:?}).", offered.join(", ")),
            }
        }
    }

    /// Why a failed step is skipped: asked until something is typed.
    pub fn skip_reason(&self, id: &str) -> Result<String, AskError> {
        loop {
            let question = format!("Why skip `{id}`? (journaled)");
            let Some(answer) = super::line::read(&question, super::line::REASON)? else {
                return Err(AskError::Failed("end of input".into()));
            };
            let answer = answer.trim();
            if !answer.is_empty() {
                return Ok(answer.to_owned());
            }
            eprintln!("A reason is required to skip a failed step (Ctrl-C stops the run).");
        }
    }

    /// One of `ids` (prompts the failed step uses), chosen at the terminal when there is
    /// more than one.
    pub fn pick_prompt(&self, ids: &[String]) -> Result<String, AskError> {
        match ids {
            [only] => Ok(only.clone()),
            _ => {
                let choices: Vec<Choice<'_>> = ids.iter().map(|id| Choice { value: id, label: None }).collect();
                self.select("Which answer do you want to change?", &choices, None, &|_| Ok(()))
            }
        }
    }

    /// The operator types `expected` (an environment or instance name) to go on. `given` is
    /// the name typed ahead (`--confirm-env`, `--confirm-target`); `--yes` never stands in.
    pub fn type_to_confirm(&self, given: Option<&str>, expected: &str, what: &str) -> Result<bool, AskError> {
        if let Some(given) = given {
            return Ok(given == expected);
        }
        if !self.interactive {
            return Ok(false);
        }
        let question = format!("{what}: type `{expected}` to continue");
        for _ in 0..3 {
            // Ctrl-D (the end of input) refuses; control characters never match a name.
            let Some(answer) = super::line::read(&question, super::line::NAME)? else {
                return Ok(false);
            };
            if answer.trim() == expected {
                return Ok(true);
            }
            eprintln!("That is not `{expected}`.");
        }
        Ok(false)
    }

    /// Manual instructions are shown by the caller; this waits for "done".
    pub fn acknowledge(&self, id: &str) -> Result<Acknowledged, AskError> {
        if let Some(given) = self.answers.get(id) {
            // Typed ahead by the operator on the command line (`--answer ID=done`).
            return Ok(match given.trim().to_ascii_lowercase().as_str() {
                "not needed" | "not-needed" | "skip" => Acknowledged::ByPerson("not needed (--answer)"),
                _ => Acknowledged::ByPerson("done (--answer)"),
            });
        }
        let ask = self.interactive && (!self.yes || self.manual_by_person);
        if !ask {
            return Ok(match (self.yes, self.interactive) {
                (true, true) => Acknowledged::Unattended("--yes"),
                (true, false) if self.manual_by_person => Acknowledged::Unattended("no terminal to ask at"),
                (true, false) => Acknowledged::Unattended("--yes"),
                (false, _) => Acknowledged::Stopped,
            });
        }
        loop {
            // Ctrl-D (the end of input) stops the run, as `q` does.
            let question = "Type `done` when finished, `not needed` if it does not apply (or `q` to stop the run)";
            let Some(answer) = super::line::read(question, super::line::SHOWN)? else {
                return Ok(Acknowledged::Stopped);
            };
            match answer.trim().to_ascii_lowercase().as_str() {
                "done" | "d" | "y" | "yes" => return Ok(Acknowledged::ByPerson("done")),
                "not needed" | "not-needed" | "skip" | "s" => return Ok(Acknowledged::ByPerson("not needed")),
                "q" | "quit" | "n" | "no" => return Ok(Acknowledged::Stopped),
                _ => {}
            }
        }
    }

    /// A value for a prompt step, asked again until `check` accepts it at a terminal.
    /// `None`: no answer is available (non-interactive). With choices and no declared
    /// default nothing is preselected: the operator has to move to an item.
    pub fn prompt(
        &self,
        question: &str,
        choices: Option<&[Choice<'_>]>,
        default: Option<&str>,
        secret: bool,
        check: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<Option<String>, AskError> {
        if !self.interactive {
            return Ok(if self.yes { default.map(str::to_owned) } else { None });
        }
        // The question is the runbook's text: shown escaped (issue 23).
        let question = &runbook_lang::diagnostic::escape_text(question);
        if let Some(choices) = choices {
            return self.select(question, choices, default, check).map(Some);
        }
        // The check runs inside the prompt: a rejected answer is shown with its reason and
        // asked again, never echoed as accepted (✔) first.
        let checked = |answer: &String| {
            check(answer).map_err(|reason| format!("{reason}; please try again (Ctrl-C stops the run)."))
        };
        let theme = Self::theme();
        let answer = if secret {
            Password::with_theme(&theme).with_prompt(question).validate_with(checked).interact().map_err(ask_error)?
        } else {
            let mut input = Input::<String>::with_theme(&theme).with_prompt(question).validate_with(checked);
            if let Some(default) = default {
                input = input.default(default.to_owned());
            }
            input.interact_text().map_err(ask_error)?
        };
        Ok(Some(answer))
    }

    fn select(
        &self,
        question: &str,
        choices: &[Choice<'_>],
        default: Option<&str>,
        check: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<String, AskError> {
        if choices.is_empty() {
            return Err(AskError::Failed("there is nothing to choose from".into()));
        }
        const PICK: &str = "(move to your choice with the arrow keys, then press Enter)";
        let declared = default.and_then(|d| choices.iter().position(|c| c.value == d));
        let mut items: Vec<String> = Vec::with_capacity(choices.len() + 1);
        if declared.is_none() {
            items.push(PICK.to_owned());
        }
        // Choices may come from an earlier step's output: shown escaped and cut; the answer
        // is the choice's value, not what is shown.
        let shown = |text: &str| runbook_lang::diagnostic::clip_to(text, runbook_lang::diagnostic::VALUE_CHARS);
        items.extend(choices.iter().map(|c| shown(c.label.unwrap_or(c.value))));
        let offset = usize::from(declared.is_none());
        loop {
            let index = Select::with_theme(&Self::theme())
                .with_prompt(question)
                .items(&items)
                .default(declared.unwrap_or(0))
                .interact()
                .map_err(ask_error)?;
            let Some(choice) = index.checked_sub(offset).and_then(|i| choices.get(i)) else {
                eprintln!("Nothing chosen yet: move to an item first.");
                continue;
            };
            match check(choice.value) {
                Ok(()) => return Ok(choice.value.to_owned()),
                Err(reason) => eprintln!("{reason}; please choose again (Ctrl-C stops the run)."),
            }
        }
    }
}
