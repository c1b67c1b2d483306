//! A watch's timing (`every`, `within`, `hold`): written as is (`30s`, `3`) or as a template
//! of `vars`, `params` and `env`, resolved once the plan binds an environment. Production
//! samples on the data's own cadence (Cloud Monitoring's per-minute points: every 60s) while
//! the environment's `rehearsal:` block compresses the same watch to seconds.

use std::time::Duration;

use minijinja::Value;
use serde::Serialize;

use crate::param::parse_duration;
use crate::source::Source;
use crate::template::{RenderError, Template};

/// The most passing samples in a row a watch may ask for.
pub const MAX_HOLD: u32 = 10_000;

/// One timing value of a watch.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Timing<T> {
    /// Written as a value: checked with the runbook.
    Fixed(T),
    /// `"{{ vars.watch_every }}"`: checked as a template with the runbook, resolved and
    /// checked as a value when the plan is bound (and again when a rehearsal replaces vars).
    Templated(Template),
}

impl Timing<Duration> {
    /// As the docs show it: the duration, or the template as written.
    pub fn shown(&self) -> String {
        match self {
            Timing::Fixed(duration) => humantime::format_duration(*duration).to_string(),
            Timing::Templated(template) => format!("`{}`", template.text),
        }
    }
}

impl Timing<u32> {
    pub fn shown(&self) -> String {
        match self {
            Timing::Fixed(n) => n.to_string(),
            Timing::Templated(template) => format!("`{}`", template.text),
        }
    }
}

impl<T> Timing<T> {
    pub fn template(&self) -> Option<&Template> {
        match self {
            Timing::Fixed(_) => None,
            Timing::Templated(template) => Some(template),
        }
    }
}

/// A watch's timing with every value known and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchTiming {
    pub every: Duration,
    pub within: Duration,
    pub hold: u32,
}

/// Resolves the three values against `context` (the plan's `vars`, `params`, `env`). Every
/// error names the value's `file:line:col` in `source`: a duration that does not parse or is
/// zero, `hold` not a whole number from 1 to [`MAX_HOLD`], `every` not shorter than `within`.
pub fn resolve(
    every: &Timing<Duration>,
    within: &Timing<Duration>,
    hold: &Timing<u32>,
    context: &Value,
    source: &Source,
) -> Result<WatchTiming, RenderError> {
    let at = |template: &Template, message: String| {
        let (line, col) = source.line_col(template.span.start);
        RenderError(format!("{}:{line}:{col}: {message}", source.display_path()))
    };
    let duration = |timing: &Timing<Duration>, key: &str| -> Result<Duration, RenderError> {
        let template = match timing {
            Timing::Fixed(duration) => return Ok(*duration),
            Timing::Templated(template) => template,
        };
        let text = template.render_located(context, source)?;
        match parse_duration(&text) {
            Ok(duration) if duration.is_zero() => Err(at(
                template,
                format!("`{key}` must be longer than zero, `{}` gives `{}`", template.text, clip(&text)),
            )),
            Ok(duration) => Ok(duration),
            Err(_) => Err(at(
                template,
                format!(
                    "`{key}` must be a duration such as 90s, 5m or 500ms; `{}` gives `{}`",
                    template.text,
                    clip(&text)
                ),
            )),
        }
    };
    let every_value = duration(every, "every")?;
    let within_value = duration(within, "within")?;
    let hold_value = match hold {
        Timing::Fixed(n) => *n,
        Timing::Templated(template) => {
            let text = template.render_located(context, source)?;
            match text.trim().parse::<u32>() {
                Ok(n) if (1..=MAX_HOLD).contains(&n) => n,
                _ => {
                    return Err(at(
                        template,
                        format!(
                            "`hold` must be a whole number from 1 to {MAX_HOLD}; `{}` gives `{}`",
                            template.text,
                            clip(&text)
                        ),
                    ));
                }
            }
        }
    };
    if every_value >= within_value {
        // Point at whichever of the two was templated (the literal one was checked already).
        let template = every.template().or_else(|| within.template());
        let message = format!(
            "`every` ({}) must be shorter than `within` ({}): the watch would take one sample",
            humantime::format_duration(every_value),
            humantime::format_duration(within_value)
        );
        return Err(match template {
            Some(template) => at(template, message),
            None => RenderError(message),
        });
    }
    Ok(WatchTiming { every: every_value, within: within_value, hold: hold_value })
}

fn clip(text: &str) -> String {
    crate::diagnostic::clip(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Span;

    fn templated(source: &Source, text: &str) -> Timing<Duration> {
        let start = source.text.find(text).unwrap_or_else(|| panic!("{text} not in the source"));
        Timing::Templated(Template::new(text, Span::new(start, start + text.len())))
    }

    #[test]
    fn templated_timing_resolves_from_vars_and_errors_point_at_the_value() {
        let source = Source::new(
            "rb.yaml",
            "every: \"{{ vars.every }}\"\nwithin: \"{{ vars.within }}\"\nhold: \"{{ vars.hold }}\"\n",
        );
        let every = templated(&source, "{{ vars.every }}");
        let within = templated(&source, "{{ vars.within }}");
        let hold = match templated(&source, "{{ vars.hold }}") {
            Timing::Templated(t) => Timing::Templated(t),
            Timing::Fixed(_) => Timing::Fixed(1),
        };
        let context = |e: &str, w: &str, h: &str| minijinja::context! { vars => minijinja::context! { every => e, within => w, hold => h } };
        let ok = resolve(&every, &within, &hold, &context("200ms", "10s", "3"), &source);
        assert_eq!(
            ok.ok(),
            Some(WatchTiming { every: Duration::from_millis(200), within: Duration::from_secs(10), hold: 3 })
        );
        let error = |e: &str, w: &str, h: &str| {
            resolve(&every, &within, &hold, &context(e, w, h), &source).err().map(|e| e.0).unwrap_or_default()
        };
        assert!(
            error("soon", "10s", "3").starts_with("rb.yaml:1:9: `every` must be a duration"),
            "{}",
            error("soon", "10s", "3")
        );
        assert!(error("0s", "10s", "3").contains("`every` must be longer than zero"));
        assert!(error("1s", "10s", "0").starts_with("rb.yaml:3:8: `hold` must be a whole number from 1"));
        assert!(error("1s", "10s", "x").contains("`hold` must be"));
        assert!(error("1m", "30s", "3").starts_with("rb.yaml:1:9: `every` (1m) must be shorter than `within` (30s)"));
        // An undefined var fails where the template is.
        let missing = resolve(&every, &within, &hold, &minijinja::context! { vars => minijinja::context! {} }, &source);
        assert!(missing.is_err_and(|e| e.0.starts_with("rb.yaml:1:")));
    }

    #[test]
    fn fixed_timing_is_taken_as_written() {
        let source = Source::new("rb.yaml", "");
        let resolved = resolve(
            &Timing::Fixed(Duration::from_secs(60)),
            &Timing::Fixed(Duration::from_secs(900)),
            &Timing::Fixed(3),
            &Value::UNDEFINED,
            &source,
        );
        assert_eq!(
            resolved.ok(),
            Some(WatchTiming { every: Duration::from_secs(60), within: Duration::from_secs(900), hold: 3 })
        );
    }
}
