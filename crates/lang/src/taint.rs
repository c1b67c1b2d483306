//! Taint: which templates read a secret. Static and conservative: a template that reads a
//! secret source anywhere, whatever it does with it (a slice, a filter, a loop, `~`, a string
//! method), renders a secret as a whole. The checker refuses such a template where the
//! value would be seen (argv, URL, screen); where it is allowed, the rendered value is
//! registered with the redactor (see `render`).
//!
//! Which paths a template reads is [`crate::refs`]'s answer.

use crate::model::Runbook;

/// The secret source a path reads, described for a message; `None` when it reads none.
pub fn secret_source(runbook: &Runbook, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('.').collect();
    let secret_step = |id: Option<&str>| {
        runbook
            .procedures
            .values()
            .flat_map(|p| p.stages.iter().flat_map(|s| &s.steps))
            .any(|s| id.is_none_or(|id| s.id == id) && s.output_is_secret())
    };
    match parts.as_slice() {
        ["params", name, ..] if runbook.params.get(*name).is_some_and(|p| p.secret) => {
            Some(format!("secret param `{name}`"))
        }
        ["params"] if runbook.params.values().any(|p| p.secret) => {
            Some("`params` as a whole (it holds secrets)".into())
        }
        ["env"] => Some("`env` as a whole (it holds secret params' variables)".into()),
        ["env", name, ..] if name.starts_with("RUNBOOK_PARAM_") => {
            Some(format!("`env.{name}` (a secret param's variable)"))
        }
        ["steps"] if secret_step(None) => Some("`steps` as a whole (it holds secrets)".into()),
        ["steps", id, ..] if secret_step(Some(id)) => Some(format!("the secret output of step `{id}`")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::refs::paths;

    #[test]
    fn every_read_of_a_root_is_found_whatever_the_operator() {
        let cases = [
            ("{{ params.token[2:] }}", "params.token"),
            ("{{ params.token[:] }}", "params.token"),
            ("{{ params['token'][:-1] }}", "params.token"),
            ("{{ params.token|reverse|upper }}", "params.token"),
            ("{% for c in params.token %}{{ c }}{% endfor %}", "params.token"),
            ("{{ 'x' ~ params.token.upper() }}", "params.token.upper"),
            ("{{ steps.get.json.password[1:] }}", "steps.get.json.password"),
            ("{% set p = params %}{{ p.token }}", "params"),
            ("{{ env.RUNBOOK_PARAM_TOKEN[0:5] }}", "env.RUNBOOK_PARAM_TOKEN"),
        ];
        for (text, want) in cases {
            let got = paths(text, false);
            assert!(got.contains(want), "{text}: {got:?}");
        }
        assert!(paths("params: {{ vars.x }}", false).iter().all(|p| p == "vars.x"));
        assert!(paths("{{ x.params }}", false).is_empty());
        assert_eq!(paths("params.token[1:] == 'x'", true).into_iter().collect::<Vec<_>>(), ["params.token"]);
    }
}
