//! `prompt:` steps: a question, its answer checked against the step's rules.

use crate::plan::StepOutput;
use runbook_lang::step::{Step, StepKind};

use crate::exec::context::{Attempt, StepContext};
use crate::exec::operator::{self, AskError};
use runbook_state::event::StepStatus;

pub(super) fn prompt(
    ctx: &mut StepContext<'_>,
    step: &Step,
    question: &str,
    choices: Option<&[String]>,
    labels: Option<&[String]>,
    default: Option<&str>,
    secret: bool,
) -> Attempt {
    let StepKind::Prompt(prompt) = &step.kind else { return Attempt::failed("not a prompt") };
    let check = |answer: &str| -> Result<runbook_lang::param::ParamValue, String> {
        let shown = if secret { crate::redact::MASK } else { answer };
        if secret && answer.chars().count() < crate::redact::MIN_SECRET_LEN {
            return Err(format!(
                "the secret answer is shorter than {} characters, too short to be masked reliably",
                crate::redact::MIN_SECRET_LEN
            ));
        }
        prompt.check_answer(answer, choices, shown, chrono::Utc::now())
    };
    // The failure menu's `edit` asks again even when `--answer` gave one.
    let given = if ctx.ask_again { None } else { ctx.plan.answers.get(&step.id).cloned() };
    let answer = match given {
        Some(answer) => answer,
        None => {
            let items: Option<Vec<operator::Choice<'_>>> = choices.map(|values| {
                values
                    .iter()
                    .enumerate()
                    .map(|(i, value)| operator::Choice {
                        value,
                        label: labels.and_then(|l| l.get(i)).map(String::as_str),
                    })
                    .collect()
            });
            match ctx.operator.prompt(question, items.as_deref(), default, secret, &|a| check(a).map(|_| ())) {
                Ok(Some(answer)) => answer,
                Ok(None) => return Attempt::failed(format!("no answer: pass --answer {}=VALUE", step.id)),
                Err(AskError::Interrupted) => {
                    return Attempt::with_status(StepStatus::Interrupted, "interrupted at the question");
                }
                Err(err) => return Attempt::failed(err.to_string()),
            }
        }
    };
    let value = match check(&answer) {
        Ok(value) => value,
        Err(reason) => {
            let given = ctx.plan.answers.contains_key(&step.id);
            let from = if given { "--answer: " } else { "" };
            return Attempt { answer_refused: given, ..Attempt::failed(format!("{from}{reason}")) };
        }
    };
    if secret {
        ctx.plan.redactor.add(&answer);
    }
    let label = labels.and_then(|l| choices.and_then(|c| c.iter().position(|v| *v == answer)).and_then(|i| l.get(i)));
    let output = StepOutput { output: Some(value.as_text()), ..StepOutput::default() };
    let recorded = match label {
        Some(label) if !secret => Some(format!("{answer} ({label})")),
        _ => (!secret).then_some(answer),
    };
    Attempt { answer: recorded, ..Attempt::done(Some(output)) }
}
