//! Terminal escape sequences in a child's output, removed when `runbook`'s own output is not a
//! terminal (a CI log, a file), where they would show as `^[[1m` noise.

/// `text` without CSI (`ESC [ … final`), OSC (`ESC ] … BEL` or `ESC \`) and other two-byte
/// escape sequences. Text without ESC comes back unchanged.
pub fn strip(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\u{1b}') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates, then one final byte in @..~.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ST (ESC \).
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            // A two-byte sequence (ESC ( B, ESC =, ...): drop ESC and the next character; a
            // charset designation takes one more.
            Some('(' | ')') => {
                chars.next();
            }
            Some(_) | None => {}
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `line` without terminal escape sequences (gcloud prints bold names) or control characters.
pub fn strip_line(line: &str) -> String {
    strip(line).chars().filter(|c| !c.is_control() || *c == '\t').collect()
}

#[cfg(test)]
mod tests {
    use super::strip;

    #[test]
    fn gcloud_bold_and_colour_sequences_are_removed() {
        assert_eq!(strip("\u{1b}[1mUpdated\u{1b}[m property [core/project]."), "Updated property [core/project].");
        assert_eq!(strip("\u{1b}[31;1merror\u{1b}[0m: x"), "error: x");
        assert_eq!(strip("\u{1b}]8;;http://x\u{7}link\u{1b}]8;;\u{1b}\\ end"), "link end");
        assert_eq!(strip("\u{1b}(Bplain"), "plain");
    }

    #[test]
    fn text_without_escapes_and_a_cut_off_sequence_are_safe() {
        assert_eq!(strip("naïve ✓ text"), "naïve ✓ text");
        assert_eq!(strip("tail \u{1b}["), "tail ");
        assert_eq!(strip("\u{1b}"), "");
        assert_eq!(strip(""), "");
    }
}
