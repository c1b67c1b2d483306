//! Which steps' outputs a step or an expression reads (`steps.ID...`): what the failure
//! menu's edit checks again, what `done_if` reads again, what an undo needs.

use std::collections::BTreeSet;

use runbook_lang::step::Step;
use runbook_lang::template::{Expr, Template};

/// Step ids a template or expression text reads (`steps.ID...`).
pub fn steps_read(text: &str) -> Vec<String> {
    let span = runbook_lang::source::Span::default();
    let mut refs = Template::new(text, span).references().unwrap_or_default();
    if !text.contains("{{") && !text.contains("{%") {
        refs.extend(Expr::new(text, span).references().unwrap_or_default());
    }
    refs.iter()
        .filter_map(|r| r.strip_prefix("steps."))
        .filter_map(|r| r.split('.').next())
        .map(str::to_owned)
        .collect()
}

fn strings<'v>(value: &'v serde_json::Value, out: &mut Vec<&'v str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// Step ids `step`'s templates read (`steps.ID...`), its `undo:` steps included.
pub fn steps_read_by(step: &Step) -> BTreeSet<String> {
    read_by(step, true)
}

/// Step ids `step`'s own templates read, its `undo:` steps left out.
pub fn steps_read_by_itself(step: &Step) -> BTreeSet<String> {
    read_by(step, false)
}

fn read_by(step: &Step, with_undo: bool) -> BTreeSet<String> {
    let Ok(mut value) = serde_json::to_value(step) else { return BTreeSet::new() };
    if !with_undo && let Some(map) = value.as_object_mut() {
        map.remove("undo");
    }
    let mut texts = Vec::new();
    strings(&value, &mut texts);
    texts.iter().flat_map(|t| steps_read(t)).collect()
}
