//! The one redactor: every secret value is registered here and masked wherever text leaves
//! `runbook` (terminal, child output streamed through, journal, error messages, JSON).
//!
//! Two ways in: [`Redactor::redact`] for a whole text (a message, a rendered command), and
//! [`StreamMasker`] for child output that arrives in reads of any size, which masks a secret
//! split across two reads too. Both use one multi-pattern matcher built from every secret.

use std::sync::{Arc, RwLock};

use runbook_state::event::Event;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

pub const MASK: &str = "********";

/// Shorter values are not masked: replacing every `a` in the output would hide everything
/// and protect nothing. Secret params are checked to be at least this long.
pub const MIN_SECRET_LEN: usize = 3;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    inner: Arc<RwLock<Secrets>>,
}

#[derive(Debug, Default)]
struct Secrets {
    /// In the order registered.
    values: Vec<String>,
    /// The same values, to find one already registered without comparing it to each.
    known: std::collections::HashSet<String>,
    /// Built from `values` on first use after a change.
    matcher: Option<Arc<Matcher>>,
    /// How many times a matcher was built (each build costs the total length of the secrets).
    builds: usize,
}

/// Every secret in one automaton; leftmost-longest, so a secret that contains another is
/// masked whole.
#[derive(Debug)]
pub struct Matcher {
    automaton: AhoCorasick,
    /// Bytes of the longest secret.
    max_len: usize,
    /// Some secret spans lines (a key file): a line end does not end a possible match.
    multiline: bool,
}

impl Matcher {
    fn new(values: &[String]) -> Option<Matcher> {
        if values.is_empty() {
            return None;
        }
        // A DFA scans fastest but costs 256 transitions per state to build; values derived
        // from secrets are registered as they render, so past a few KiB of secrets (long or
        // many derived values) the build would dominate: an NFA builds in linear time.
        let total: usize = values.iter().map(String::len).sum();
        let kind = (total > 16 * 1024).then_some(AhoCorasickKind::ContiguousNFA);
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(kind)
            .build(values.iter().map(String::as_bytes))
            .ok()?;
        Some(Matcher {
            automaton,
            max_len: values.iter().map(String::len).max().unwrap_or(0),
            multiline: values.iter().any(|v| v.contains('\n')),
        })
    }

    /// Appends `input`, a whole text, to `out` with every secret replaced: as written, then
    /// as shown once its escape sequences are removed (see [`View`]).
    fn mask_into(&self, input: &[u8], out: &mut Vec<u8>) {
        if memchr::memchr(ESC, input).is_none() {
            self.mask_raw_into(input, out);
            return;
        }
        let mut raw = Vec::with_capacity(input.len());
        self.mask_raw_into(input, &mut raw);
        self.mask_shown_into(&raw, out, true, usize::MAX);
    }

    fn mask_raw_into(&self, input: &[u8], out: &mut Vec<u8>) {
        let mut copied = 0;
        for found in self.automaton.find_iter(input) {
            out.extend_from_slice(&input[copied..found.start()]);
            out.extend_from_slice(MASK.as_bytes());
            copied = found.end();
        }
        out.extend_from_slice(&input[copied..]);
    }

    /// Masks the secrets `data` shows once its escape sequences are removed (`s\e[0mecret`
    /// shows `secret` on a terminal and in a log stripped of escapes): each match, escape
    /// sequences inside it included, becomes one mask. Only matches starting before the
    /// `keep` view byte are masked; returns where in `data` the last one ended (0 without
    /// one). `at_end`: nothing follows `data`, an escape sequence cut off by its end hides
    /// the rest.
    fn mask_shown_into(&self, data: &[u8], out: &mut Vec<u8>, at_end: bool, keep: usize) -> usize {
        let view = View::new(data, at_end);
        let mut copied = 0;
        for found in self.automaton.find_iter(&view.bytes) {
            if found.start() >= keep {
                break;
            }
            let (start, end) = (view.pos[found.start()], view.pos[found.end() - 1] + 1);
            out.extend_from_slice(&data[copied..start]);
            out.extend_from_slice(MASK.as_bytes());
            copied = end;
        }
        if keep == usize::MAX {
            out.extend_from_slice(&data[copied..]);
        }
        copied
    }
}

const ESC: u8 = 0x1b;

/// What a text shows once its escape sequences are removed, as `exec::ansi::strip` removes
/// them (CSI `ESC [ … final`, OSC `ESC ] … BEL` or `ESC ] … ESC \`, `ESC ( x`, `ESC x`): its bytes, and
/// where in the text each one is.
struct View {
    bytes: Vec<u8>,
    pos: Vec<usize>,
    /// Where an escape sequence cut off by the end of the text starts (not `at_end`).
    open: Option<usize>,
}

impl View {
    fn new(data: &[u8], at_end: bool) -> View {
        let mut view = View { bytes: Vec::with_capacity(data.len()), pos: Vec::with_capacity(data.len()), open: None };
        let mut at = 0;
        while at < data.len() {
            if data[at] != ESC {
                view.bytes.push(data[at]);
                view.pos.push(at);
                at += 1;
                continue;
            }
            match escape_len(&data[at..]) {
                Some(len) => at += len,
                None if at_end => break,
                None => {
                    view.open = Some(at);
                    break;
                }
            }
        }
        view
    }
}

/// The length of the escape sequence `data` starts with (at an ESC), or `None` when `data`
/// ends inside it.
fn escape_len(data: &[u8]) -> Option<usize> {
    // The bytes of one UTF-8 character at `at`: an invalid byte (a lead without its
    // continuation bytes, a byte that never starts a character) is one, as a terminal
    // replaces it and goes on; `None` when `data` ends inside the character.
    let char_len = |at: usize| -> Option<usize> {
        let want = match *data.get(at)? {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return Some(1),
        };
        for i in 1..want {
            match data.get(at + i) {
                None => return None,
                Some(0x80..=0xbf) => {}
                Some(_) => return Some(1),
            }
        }
        Some(want)
    };
    match *data.get(1)? {
        b'[' => data[2..].iter().position(|b| (0x40..=0x7e).contains(b)).map(|i| i + 3),
        b']' => {
            let mut i = 2;
            while i < data.len() {
                if data[i] == 0x07 {
                    return Some(i + 1);
                }
                if data[i] == ESC && data.get(i + 1) == Some(&b'\\') {
                    return Some(i + 2);
                }
                i += 1;
            }
            None
        }
        b'(' | b')' => char_len(2).map(|len| 2 + len),
        _ => char_len(1).map(|len| 1 + len),
    }
}

/// `data` with its escape sequences removed, as [`View`] sees it (the fuzz target `mask`
/// compares what is shown, not what is written).
pub fn shown_bytes(data: &[u8]) -> Vec<u8> {
    View::new(data, true).bytes
}

/// `text` with its escape sequences removed, as [`View`] sees it.
pub fn shown_form(text: &str) -> String {
    String::from_utf8_lossy(&View::new(text.as_bytes(), true).bytes).into_owned()
}

/// The encoded forms of `secret` that are masked like the secret itself: base64 (padded,
/// unpadded, URL-safe), hex in lower and upper case (`xxd -p`, `xxd -u`, `printf %X`), and
/// percent-encoded as URLs carry it (see [`percent_forms`]).
fn encodings(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let bytes = secret.as_bytes();
    let mut forms =
        vec![STANDARD.encode(bytes), URL_SAFE_NO_PAD.encode(bytes), hex::encode(bytes), hex::encode_upper(bytes)];
    // The padded form's unpadded stem, so a padded value is found inside a longer stream too.
    forms.push(STANDARD_NO_PAD.encode(bytes));
    forms.extend(percent_forms(bytes));
    forms.retain(|form| form != secret);
    forms.sort();
    forms.dedup();
    forms
}

/// A secret as a URL carries it: the password of `postgres://user:PASS@host` or the value
/// of `?password=PASS`. Encoders differ in what they leave as it is, so each common one is
/// covered: every byte but RFC 3986's unreserved ones (Python's `quote(s, safe="")`), also
/// `/` (`quote`'s default), also `!'()*` (JavaScript's `encodeURIComponent`), also the
/// sub-delimiters a userinfo may hold (Go's `url.UserPassword`); and the form encoding of a
/// query, a space as `+` (`quote_plus`, `URLSearchParams`, `form_urlencoded`). Each with
/// `%XX` in upper and in lower case.
fn percent_forms(bytes: &[u8]) -> Vec<String> {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    const PATH_SAFE: &AsciiSet = &UNRESERVED.remove(b'/');
    const URI_COMPONENT: &AsciiSet = &UNRESERVED.remove(b'!').remove(b'\'').remove(b'(').remove(b')').remove(b'*');
    const USERINFO: &AsciiSet =
        &URI_COMPONENT.remove(b'$').remove(b'&').remove(b'+').remove(b',').remove(b';').remove(b'=');
    let Ok(text) = std::str::from_utf8(bytes) else { return Vec::new() };
    let mut upper: Vec<String> = [UNRESERVED, PATH_SAFE, URI_COMPONENT, USERINFO]
        .iter()
        .map(|set| utf8_percent_encode(text, set).to_string())
        .collect();
    upper.push(url::form_urlencoded::byte_serialize(bytes).collect());
    // `quote_plus`: unreserved kept, a space as `+`.
    upper.push(utf8_percent_encode(text, UNRESERVED).to_string().replace("%20", "+"));
    let lower = upper.iter().map(|form| lower_escapes(form)).collect::<Vec<_>>();
    upper.extend(lower);
    upper
}

/// `form` with the hex digits of each `%XX` in lower case.
fn lower_escapes(form: &str) -> String {
    let mut out = String::with_capacity(form.len());
    let mut hex_left = 0;
    for c in form.chars() {
        if hex_left > 0 {
            out.push(c.to_ascii_lowercase());
            hex_left -= 1;
        } else {
            hex_left = if c == '%' { 2 } else { 0 };
            out.push(c);
        }
    }
    out
}

impl Redactor {
    /// Registers a secret. Values shorter than [`MIN_SECRET_LEN`] characters are ignored:
    /// callers refuse them before they get here.
    pub fn add(&self, secret: &str) {
        self.add_all([secret]);
    }

    /// Registers several secrets at once: the matcher is rebuilt (on its next use) once for
    /// the batch, not once per value, and a value already known changes nothing. A build
    /// costs the secrets' total length, so registering each value derived while rendering
    /// a step on its own, between uses, made rendering quadratic in the secrets' size.
    pub fn add_all<'a>(&self, secrets: impl IntoIterator<Item = &'a str>) {
        let mut new = Vec::new();
        for secret in secrets {
            let secret = secret.trim_end_matches(['\n', '\r']);
            if secret.chars().count() >= MIN_SECRET_LEN {
                new.push(secret.to_owned());
            }
            // A secret holding escape sequences shows without them.
            if secret.contains('\u{1b}') {
                let shown = shown_form(secret);
                if shown.trim().chars().count() >= MIN_SECRET_LEN {
                    new.push(shown);
                }
            }
            // The common whole-value encodings a child prints (`base64`, `xxd -p`, a JWT or a
            // basic-auth header): base64 with and without padding, URL-safe, and hex. Bounded
            // to secrets up to 4 KiB so a key file does not triple the matcher.
            if secret.len() >= MIN_SECRET_LEN && secret.len() <= 4096 {
                new.extend(encodings(secret));
            }
            // A multi-line secret (a key file) is also masked line by line, so each of its
            // lines is hidden wherever it turns up alone.
            if secret.contains('\n') {
                new.extend(
                    secret.lines().filter(|line| line.trim().chars().count() >= MIN_SECRET_LEN).map(str::to_owned),
                );
            }
        }
        if new.is_empty() {
            return;
        }
        let Ok(mut secrets) = self.inner.write() else { return };
        for value in new {
            if !secrets.known.contains(&value) {
                secrets.known.insert(value.clone());
                secrets.values.push(value);
                secrets.matcher = None;
            }
        }
    }

    /// Registers every `RUNBOOK_PARAM_*` variable's value: how secret params come in.
    pub fn add_param_variables(&self) {
        let env: Vec<String> = std::env::vars_os()
            .filter(|(name, _)| name.to_str().is_some_and(|n| n.starts_with("RUNBOOK_PARAM_")))
            .filter_map(|(_, value)| value.into_string().ok())
            .collect();
        self.add_all(env.iter().map(String::as_str));
    }

    /// The matcher for the secrets known now (`None` when there are none).
    pub fn matcher(&self) -> Option<Arc<Matcher>> {
        if let Ok(secrets) = self.inner.read()
            && let Some(matcher) = &secrets.matcher
        {
            return Some(matcher.clone());
        }
        let mut secrets = self.inner.write().ok()?;
        if secrets.matcher.is_none() {
            secrets.matcher = Matcher::new(&secrets.values).map(Arc::new);
            secrets.builds += 1;
        }
        secrets.matcher.clone()
    }

    pub fn redact(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_owned();
        }
        // A poisoned lock or a matcher that cannot be built: show nothing rather than a secret.
        let Some(matcher) = self.matcher() else { return MASK.to_owned() };
        let mut out = Vec::with_capacity(text.len());
        matcher.mask_into(text.as_bytes(), &mut out);
        // Matches are whole secrets, which are valid UTF-8, so the text stays valid.
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Masks `text`, then cuts it to `max_chars` characters, then masks what the cut left of
    /// a secret: a secret's beginning at the end of the excerpt. The order matters: cutting
    /// first would leave a secret at the cut unrecognised and show it minus its end.
    pub fn excerpt(&self, text: &str, max_chars: usize) -> (String, bool) {
        let masked = self.redact(text);
        let Some((cut, _)) = masked.char_indices().nth(max_chars) else { return (masked, false) };
        let mut short = masked[..cut].to_owned();
        let Ok(secrets) = self.inner.read() else { return (MASK.to_owned(), true) };
        let partial = secrets
            .values
            .iter()
            .filter_map(|secret| {
                // The longest proper beginning of the secret that ends the excerpt.
                secret.char_indices().skip(1).map(|(i, _)| i).filter(|&i| short.ends_with(&secret[..i])).max()
            })
            .max();
        if let Some(len) = partial {
            short.truncate(short.len() - len);
            short.push_str(MASK);
        }
        (short, true)
    }

    /// How many times the matcher was built: each build costs the secrets' total length
    /// (the fuzz target `render` holds it to one per render).
    pub fn builds(&self) -> usize {
        self.inner.read().map_or(0, |s| s.builds)
    }

    pub fn is_empty(&self) -> bool {
        self.inner.read().is_ok_and(|s| s.values.is_empty())
    }

    /// A masker for one output stream, with the secrets known now.
    pub fn stream(&self) -> StreamMasker {
        StreamMasker { matcher: self.matcher(), raw: Vec::new(), masked: Vec::new() }
    }
}

/// The secrets on a command line that the argument parser refused, before any runbook
/// input was bound (the parser's message quotes what it refused, `--env <secret>`): the
/// value of every secret param's flag and of every `--answer` to a secret prompt, of any
/// of `runbooks`, and every `RUNBOOK_PARAM_*` variable.
pub fn in_arguments<'a>(
    runbooks: impl IntoIterator<Item = &'a runbook_lang::summary::RunbookSummary>,
    args: &[std::ffi::OsString],
) -> Redactor {
    let (mut flags, mut steps) = (Vec::new(), Vec::new());
    for runbook in runbooks {
        let params = runbook.procedures.iter().flat_map(|p| &p.params);
        flags.extend(params.filter(|p| p.secret).map(|p| format!("--{}", p.flag)));
        steps.extend(runbook.secret_answers.iter().cloned());
    }
    let redactor = Redactor::default();
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    for (index, arg) in args.iter().enumerate() {
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value)),
            _ => (*arg, args.get(index + 1).copied()),
        };
        let Some(value) = value else { continue };
        if flags.iter().any(|flag| flag == name) {
            redactor.add(value);
        } else if name == "--answer"
            && let Some((id, answer)) = value.split_once('=')
            && steps.iter().any(|step| step == id)
        {
            redactor.add(answer);
        }
    }
    redactor.add_param_variables();
    redactor
}

/// Masks one output stream that arrives in reads of any size and split anywhere. Bytes that
/// could be the beginning of a secret completed by the next read are held back until that
/// read or the end of the stream; everything before them comes out masked.
#[derive(Debug)]
pub struct StreamMasker {
    matcher: Option<Arc<Matcher>>,
    /// Bytes read but not released yet (the possible beginning of a secret).
    raw: Vec<u8>,
    /// Bytes masked as written but not released yet: what could begin a secret that shows
    /// once escape sequences are removed (`s\e[0m` before `ecret`).
    masked: Vec<u8>,
}

impl StreamMasker {
    /// Masks `input` (the next read) into `out`, holding back what a secret could still
    /// continue from. Two passes, each consistent however the stream is cut: the secrets
    /// as written, then the secrets shown once escape sequences are removed.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let Some(matcher) = self.matcher.clone() else {
            out.extend_from_slice(input);
            return;
        };
        let mut raw_masked = Vec::with_capacity(input.len());
        self.push_raw(&matcher, input, &mut raw_masked);
        self.push_shown(&matcher, &raw_masked, out);
    }

    /// The second pass: the bytes the first released, masked as shown without escape
    /// sequences. Holds back, in shown bytes, what a secret could still continue from, and
    /// an escape sequence not complete yet.
    fn push_shown(&mut self, matcher: &Matcher, input: &[u8], out: &mut Vec<u8>) {
        self.masked.extend_from_slice(input);
        let data = std::mem::take(&mut self.masked);
        let hold = matcher.max_len.saturating_sub(1);
        let release = if memchr::memchr(ESC, &data).is_none() {
            // Shown as written, and the first pass left no secret in it: only the tail is
            // held, by the same rule as below.
            let mut keep_from = data.len().saturating_sub(hold);
            if !matcher.multiline
                && let Some(newline) = memchr::memrchr(b'\n', &data)
            {
                keep_from = keep_from.max(newline + 1);
            }
            out.extend_from_slice(&data[..keep_from]);
            keep_from
        } else {
            let view = View::new(&data, false);
            let mut keep = view.bytes.len().saturating_sub(hold);
            if !matcher.multiline
                && let Some(newline) = memchr::memrchr(b'\n', &view.bytes)
            {
                keep = keep.max(newline + 1);
            }
            let keep_from = view.pos.get(keep).copied().unwrap_or_else(|| view.open.unwrap_or(data.len()));
            let copied = matcher.mask_shown_into(&data, out, false, keep);
            let release = keep_from.max(copied);
            out.extend_from_slice(&data[copied..release]);
            release
        };
        self.masked.extend_from_slice(&data[release..]);
    }

    fn push_raw(&mut self, matcher: &Matcher, input: &[u8], out: &mut Vec<u8>) {
        let held = std::mem::take(&mut self.raw);
        let data: std::borrow::Cow<'_, [u8]> = if held.is_empty() {
            std::borrow::Cow::Borrowed(input)
        } else {
            let mut joined = held;
            joined.extend_from_slice(input);
            std::borrow::Cow::Owned(joined)
        };
        // A secret not complete yet must start after every match found, within its
        // length of the end, and (when no secret spans lines) after the last line end.
        let mut keep_from = data.len().saturating_sub(matcher.max_len.saturating_sub(1));
        if !matcher.multiline
            && let Some(newline) = memchr::memrchr(b'\n', &data)
        {
            keep_from = keep_from.max(newline + 1);
        }
        let mut copied = 0;
        for found in matcher.automaton.find_iter(&data[..]) {
            if found.start() >= keep_from {
                break;
            }
            out.extend_from_slice(&data[copied..found.start()]);
            out.extend_from_slice(MASK.as_bytes());
            copied = found.end();
        }
        let release = keep_from.max(copied);
        out.extend_from_slice(&data[copied..release]);
        self.raw.extend_from_slice(&data[release..]);
    }

    /// Whether there is anything to mask (without secrets, `push` only copies).
    pub fn is_active(&self) -> bool {
        self.matcher.is_some()
    }

    /// The end of the stream: what was held back comes out, masked.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let held = std::mem::take(&mut self.raw);
        match &self.matcher {
            Some(matcher) => {
                let mut data = std::mem::take(&mut self.masked);
                matcher.mask_raw_into(&held, &mut data);
                matcher.mask_shown_into(&data, out, true, usize::MAX);
            }
            None => out.extend_from_slice(&held),
        }
    }

    /// How many bytes are held back.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.raw.len() + self.masked.len()
    }
}

/// An event as every subscriber may see it: registered secrets masked.
pub fn redact_event(event: Event, redactor: &Redactor) -> Event {
    if redactor.is_empty() {
        return event;
    }
    let text = |t: String| redactor.redact(&t);
    match event {
        Event::Notice { id, text: t } => Event::Notice { id, text: text(t) },
        Event::Undo { id, state, text: t } => Event::Undo { id, state, text: text(t) },
        Event::FailureChoice { id, choice, reason, prompt, answer, by } => {
            Event::FailureChoice { id, choice, reason: reason.map(text), prompt, answer: answer.map(text), by }
        }
        Event::StepStarted { id, name, kind, command, attempt } => {
            Event::StepStarted { id, name, kind, command: command.map(text), attempt }
        }
        Event::StageSkipped { procedure, index, name, reason } => {
            Event::StageSkipped { procedure, index, name, reason: text(reason) }
        }
        Event::StepFinished { id, status, duration, exit_code, http_status, message, output, answer, changed } => {
            Event::StepFinished {
                id,
                status,
                duration,
                exit_code,
                http_status,
                message: message.map(text),
                output: output.map(|o| redact_json(redactor, o)),
                answer: answer.map(text),
                changed: changed.map(text),
            }
        }
        Event::WatchSample { id, sample, passing, streak, hold, value, error, left } => Event::WatchSample {
            id,
            sample,
            passing,
            streak,
            hold,
            value: value.map(text),
            error: error.map(text),
            left,
        },
        Event::NotifyFailed { webhook_env, notification, error } => {
            Event::NotifyFailed { webhook_env, notification, error: text(error) }
        }
        Event::RunFinished { outcome, message, duration, done, skipped, failed } => {
            Event::RunFinished { outcome, message: message.map(text), duration, done, skipped, failed }
        }
        // Child output is masked as it streams (see `process`), with secrets split across
        // reads; the run's and stages' names are the runbook's own.
        other @ (Event::Output { .. }
        | Event::RunStarted { .. }
        | Event::StageStarted { .. }
        | Event::StageDoneEarlier { .. }
        | Event::Recovered { .. }) => other,
    }
}

pub fn redact_json(redactor: &Redactor, value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(s) => serde_json::Value::String(redactor.redact(&s)),
        serde_json::Value::Array(items) => items.into_iter().map(|v| redact_json(redactor, v)).collect(),
        serde_json::Value::Object(map) => map.into_iter().map(|(k, v)| (k, redact_json(redactor, v))).collect(),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_longest_secret_first_and_multiline_secrets_by_line() {
        let r = Redactor::default();
        r.add("hunter2");
        r.add("postgres://app:hunter2@10.0.0.1/app");
        r.add("line-one\nline-two");
        assert_eq!(r.redact("url=postgres://app:hunter2@10.0.0.1/app pw=hunter2"), "url=******** pw=********");
        assert_eq!(r.redact("got line-two"), "got ********");
        r.add("ab");
        assert_eq!(r.redact("ab"), "ab");
    }

    #[test]
    fn a_secret_is_masked_as_upper_case_hex_and_percent_encoded() {
        let r = Redactor::default();
        r.add("p@ss w/rd:1");
        let hex_upper = hex::encode_upper("p@ss w/rd:1");
        for shown in [
            format!("xxd -u: {hex_upper}"),
            "postgres://app:p%40ss%20w%2Frd%3A1@10.0.0.1/db".to_owned(),
            "postgres://app:p%40ss%20w%2frd%3a1@10.0.0.1/db".to_owned(),
            "postgres://app:p%40ss%20w/rd%3A1@10.0.0.1/db".to_owned(),
            "https://h/?password=p%40ss+w%2Frd%3A1&x=1".to_owned(),
            "https://h/?password=p%40ss+w%2frd%3a1&x=1".to_owned(),
        ] {
            let masked = r.redact(&shown);
            assert!(masked.contains(MASK), "{shown} -> {masked}");
            for leak in ["p%40ss", "p%40ss", &hex_upper] {
                assert!(!masked.contains(leak), "{shown} -> {masked}");
            }
        }
        // A secret without characters to encode adds no form of its own.
        assert_eq!(encodings("hunter22").iter().filter(|f| f.as_str() == "hunter22").count(), 0);
    }

    #[test]
    fn an_excerpt_is_masked_before_it_is_cut_and_a_cut_secret_is_masked_too() {
        let r = Redactor::default();
        r.add("s3cr3t-value");
        let body = format!("{}s3cr3t-value and more", "x".repeat(195));
        // Cut after 200 characters: 5 characters into the secret.
        let (short, cut) = r.excerpt(&body, 200);
        assert!(cut);
        assert!(!short.contains("s3cr3"), "{short}");
        // A body that holds only the secret's beginning, cut inside it.
        let (short, _) = r.excerpt(&format!("{}s3cr", "y".repeat(196)), 199);
        assert!(!short.contains("s3c"), "{short}");
        assert!(short.ends_with(MASK), "{short}");
    }

    fn masked_stream(r: &Redactor, chunks: &[&[u8]]) -> Vec<u8> {
        let mut masker = r.stream();
        let mut out = Vec::new();
        for chunk in chunks {
            masker.push(chunk, &mut out);
        }
        masker.finish(&mut out);
        out
    }

    #[test]
    fn a_secret_split_across_two_reads_is_masked() {
        let r = Redactor::default();
        r.add("hunter22");
        assert_eq!(masked_stream(&r, &[b"pw=hun", b"ter22 ok\n"]), b"pw=******** ok\n");
        assert_eq!(masked_stream(&r, &[b"pw=hunter2", b"x\n"]), b"pw=hunter2x\n");
    }

    #[test]
    fn a_secret_split_by_an_escape_sequence_is_masked_as_shown_and_as_written() {
        let r = Redactor::default();
        r.add("hunter22");
        for text in ["pw=hun\u{1b}[0mter22 ok", "pw=h\u{1b}]8;;x\u{7}unter22 ok", "pw=\u{1b}[1mhunter22\u{1b}[m ok"] {
            let whole = r.redact(text);
            assert!(!shown_form(&whole).contains("hunter22") && !whole.contains("hunter22"), "{whole:?}");
            let bytes = text.as_bytes();
            for cut in 0..bytes.len() {
                let out = masked_stream(&r, &[&bytes[..cut], &bytes[cut..]]);
                assert_eq!(out, whole.as_bytes(), "cut at {cut}");
            }
        }
        // `\e[` eats the `h` as its final byte: shown `unter22`, written `hunter22`.
        assert_eq!(r.redact("\u{1b}[hunter22"), "\u{1b}[********");
        // A secret holding an escape sequence is masked as shown too.
        r.add("key\u{1b}[31mred");
        assert_eq!(r.redact("got keyred"), "got ********");
    }

    /// Found by the masker proptest: an escape followed by a byte that starts no valid
    /// character hid the next real character from the masker's view, while a terminal
    /// (and `from_utf8_lossy`) shows it.
    #[test]
    fn an_escape_before_an_invalid_byte_does_not_hide_the_next_character() {
        let r = Redactor::default();
        r.add("a00");
        let out = masked_stream(&r, &[b"\x1b\xc0a0\x1b[0m0"]);
        let shown = String::from_utf8_lossy(&out);
        assert!(!shown_form(&shown).contains("a00"), "{shown:?}");
    }

    #[test]
    fn a_complete_line_is_released_at_once() {
        let r = Redactor::default();
        r.add("a-long-secret-value");
        let mut masker = r.stream();
        let mut out = Vec::new();
        masker.push(b"progress 10%\n", &mut out);
        assert_eq!(out, b"progress 10%\n");
        assert_eq!(masker.held(), 0);
    }

    fn secret_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]{3,12}",
            "[\\PC]{3,10}",
            ".{3,10}",
            Just(".*+?()[]{}|^$\\".to_owned()),
            "[ab]{3,6}",
            "[a-z]{2,5}\n[a-z]{3,5}",
        ]
        .prop_filter("long enough", |s| s.trim_end_matches(['\n', '\r']).chars().count() >= MIN_SECRET_LEN)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the secret and however the output is cut into reads, the masked stream
        /// never contains the secret, and is what masking the whole output at once gives.
        #[test]
        fn the_stream_masker_never_shows_a_secret_whatever_the_chunking(
            secret in secret_strategy(),
            parts in proptest::collection::vec(prop_oneof![
                Just(Vec::new()), Just(b"\n".to_vec()), "[a-z \n]{0,20}".prop_map(String::into_bytes),
                Just(b"\x1b[0m".to_vec()), Just(b"\x1b]8;;x\x07".to_vec()), Just(b"\x1b".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..8),
            ], 0..8),
            cuts in proptest::collection::vec(0usize..64, 0..12),
        ) {
            let r = Redactor::default();
            r.add(&secret);
            let mut output = Vec::new();
            for (index, part) in parts.iter().enumerate() {
                output.extend_from_slice(part);
                // Every other time the secret is split by an escape sequence.
                match secret.char_indices().nth(1 + index % 2) {
                    Some((at, _)) if index % 2 == 1 => {
                        output.extend_from_slice(&secret.as_bytes()[..at]);
                        output.extend_from_slice(b"\x1b[0m");
                        output.extend_from_slice(&secret.as_bytes()[at..]);
                    }
                    _ => output.extend_from_slice(secret.as_bytes()),
                }
            }
            let mut chunks = Vec::new();
            let mut rest = &output[..];
            for cut in cuts {
                let cut = cut.min(rest.len());
                chunks.push(&rest[..cut]);
                rest = &rest[cut..];
            }
            chunks.push(rest);
            let masked = masked_stream(&r, &chunks);
            let whole = masked_stream(&r, &[&output]);
            prop_assert_eq!(&masked, &whole);
            let shown = String::from_utf8_lossy(&masked);
            prop_assert!(!shown.contains(secret.trim_end_matches(['\n', '\r'])), "leaked in {:?}", shown);
            prop_assert!(!shown_form(&shown).contains(secret.trim_end_matches(['\n', '\r'])), "shown in {:?}", shown);
        }
    }
}
