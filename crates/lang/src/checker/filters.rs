//! Filters a template uses (`{{ x | upper }}`), found by a light scan of its tags: an
//! unknown filter is a validation error, not a failure in the middle of a run.

/// Names after `|` inside `{{ }}` / `{% %}` (or anywhere in an expression), outside string
/// literals.
pub fn used(text: &str, is_expression: bool) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut in_tag = is_expression;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !is_expression && !in_tag {
            if bytes[i..].starts_with(b"{{") || bytes[i..].starts_with(b"{%") {
                in_tag = true;
                i += 2;
                continue;
            }
            i += 1;
            continue;
        }
        if let Some(q) = quote {
            if b == b'\\' {
                i += 2;
                continue;
            }
            if b == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match b {
            b'"' | b'\'' => quote = Some(b),
            b'}' | b'%' if !is_expression && bytes.get(i + 1) == Some(&b'}') => {
                in_tag = false;
                i += 2;
                continue;
            }
            b'|' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                    j += 1;
                }
                let start = j;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                if j > start {
                    out.push(text[start..j].to_owned());
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::used;

    #[test]
    fn filters_are_found_in_tags_only_and_not_in_strings() {
        let names = used;
        assert_eq!(names("a | b {{ x | upper | nope(1) }} c", false), ["upper", "nope"]);
        assert_eq!(names("{{ 'a | b' ~ \"|c\" | lower }}", false), ["lower"]);
        assert_eq!(names("{% for i in xs | sort %}{{ i }}{% endfor %}", false), ["sort"]);
        assert_eq!(names("steps.a.json | map(attribute='n') | list", true), ["map", "list"]);
        assert!(names("{{ x }} | grep y", false).is_empty());
    }
}
