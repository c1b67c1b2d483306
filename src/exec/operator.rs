//! Questions to the operator: stage confirmations, typed confirmations, manual steps and
//! prompts. Answers come from `--yes`/`--answer` first, then the terminal.

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

pub struct Operator {
    pub interactive: bool,
    pub yes: bool,
    pub answers: HashMap<String, String>,
}

/// The operator's terminal went away or refused input.
#[derive(Debug, thiserror::Error)]
#[error("cannot ask the operator: {0}")]
pub struct AskError(String);

fn ask_error(err: dialoguer::Error) -> AskError {
    AskError(err.to_string())
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
        loop {
            let answer: String = Input::with_theme(&Self::theme())
                .with_prompt(format!("Run stage `{name}`? [y]es / [N]o, stop here / [s]kip this stage"))
                .allow_empty(true)
                .interact_text()
                .map_err(ask_error)?;
            match answer.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => return Ok(StageChoice::Run),
                "" | "n" | "no" | "q" | "quit" => return Ok(StageChoice::Stop),
                "s" | "skip" => return Ok(StageChoice::Skip),
                _ => eprintln!("Please answer y, n or s."),
            }
        }
    }

    /// The operator types `expected` (an environment or instance name) to go on.
    pub fn type_to_confirm(&self, id: &str, expected: &str, what: &str) -> Result<bool, AskError> {
        if let Some(answer) = self.answers.get(id) {
            return Ok(answer == expected);
        }
        if self.yes {
            return Ok(true);
        }
        if !self.interactive {
            return Ok(false);
        }
        for _ in 0..3 {
            let answer: String = Input::with_theme(&Self::theme())
                .with_prompt(format!("{what}: type `{expected}` to continue"))
                .allow_empty(true)
                .interact_text()
                .map_err(ask_error)?;
            if answer.trim() == expected {
                return Ok(true);
            }
            eprintln!("That is not `{expected}`.");
        }
        Ok(false)
    }

    /// Manual instructions are shown by the caller; this waits for "done".
    pub fn acknowledge(&self, id: &str) -> Result<bool, AskError> {
        if self.answers.contains_key(id) || self.yes {
            return Ok(true);
        }
        if !self.interactive {
            return Ok(false);
        }
        loop {
            let answer: String = Input::with_theme(&Self::theme())
                .with_prompt("Type `done` when finished (or `q` to stop the run)")
                .allow_empty(true)
                .interact_text()
                .map_err(ask_error)?;
            match answer.trim().to_ascii_lowercase().as_str() {
                "done" | "d" | "y" | "yes" => return Ok(true),
                "q" | "quit" | "n" | "no" => return Ok(false),
                _ => {}
            }
        }
    }

    /// A value for a prompt step. `None`: no answer is available (non-interactive).
    pub fn prompt(
        &self,
        id: &str,
        question: &str,
        choices: Option<&[String]>,
        default: Option<&str>,
        secret: bool,
    ) -> Result<Option<String>, AskError> {
        if let Some(answer) = self.answers.get(id) {
            return Ok(Some(answer.clone()));
        }
        if !self.interactive {
            return Ok(if self.yes { default.map(str::to_owned) } else { None });
        }
        if let Some(choices) = choices {
            if choices.is_empty() {
                return Err(AskError("there is nothing to choose from".into()));
            }
            let start = default.and_then(|d| choices.iter().position(|c| c == d)).unwrap_or(0);
            let index = Select::with_theme(&Self::theme())
                .with_prompt(question)
                .items(choices)
                .default(start)
                .interact()
                .map_err(ask_error)?;
            return Ok(choices.get(index).cloned());
        }
        if secret {
            return Password::with_theme(&Self::theme()).with_prompt(question).interact().map(Some).map_err(ask_error);
        }
        let theme = Self::theme();
        let mut input = Input::<String>::with_theme(&theme).with_prompt(question);
        if let Some(default) = default {
            input = input.default(default.to_owned());
        }
        input.interact_text().map(Some).map_err(ask_error)
    }
}
