//! The paths a template reads (`params.token`, `steps.a.output`, `env`). They come from two
//! places: the template engine's own list of undeclared variables, and a scan of the
//! template's tokens here. The engine's list misses some reads (`params.token[2:]` reports
//! nothing at all), so every identifier naming a root inside a tag counts, followed through
//! `.name` and `['name']` as far as it goes. Both the checker's references and the taint of
//! secrets are built on it.

use std::collections::BTreeSet;

use minijinja::machinery::{Token, tokenize};
use minijinja::syntax::SyntaxConfig;

/// Roots a template may refer to.
pub const ROOTS: &[&str] = &["params", "vars", "steps", "env", "environment", "run"];

/// What `run` holds: the run's id, the time it started (RFC 3339, UTC; a resumed run keeps
/// the time it first started), and `started_steps.<id>`: when a step first started in an
/// earlier attempt of the run (absent when it never did).
pub const RUN_FIELDS: &[&str] = &["id", "started", "started_steps"];

/// Every path of a root (`params.token`, `steps.a.output`, `env`) that the template's tags
/// name. `expr`: the text is a bare expression (`when:`), not a template.
pub fn paths(text: &str, expr: bool) -> BTreeSet<String> {
    let tokens: Vec<Token<'_>> =
        tokenize(text, expr, SyntaxConfig::default()).map_while(Result::ok).map(|(token, _)| token).collect();
    let mut out = BTreeSet::new();
    for (index, token) in tokens.iter().enumerate() {
        let Token::Ident(root) = token else { continue };
        if !ROOTS.contains(root) {
            continue;
        }
        let before = index.checked_sub(1).and_then(|i| tokens.get(i));
        // `x.params` is an attribute of something else; `f(env=1)` and `set env = …` name
        // an argument or a new variable.
        if matches!(before, Some(Token::Dot)) || matches!(tokens.get(index + 1), Some(Token::Assign)) {
            continue;
        }
        let mut path = (*root).to_owned();
        let mut next = index + 1;
        loop {
            match (tokens.get(next), tokens.get(next + 1), tokens.get(next + 2)) {
                (Some(Token::Dot), Some(Token::Ident(name)), _) => {
                    path.push('.');
                    path.push_str(name);
                    next += 2;
                }
                (Some(Token::BracketOpen), Some(Token::Str(name)), Some(Token::BracketClose)) => {
                    path.push('.');
                    path.push_str(name);
                    next += 3;
                }
                (Some(Token::BracketOpen), Some(Token::String(name)), Some(Token::BracketClose)) => {
                    path.push('.');
                    path.push_str(name);
                    next += 3;
                }
                _ => break,
            }
        }
        out.insert(path);
    }
    out
}
