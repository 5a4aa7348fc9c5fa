//! YAML scalars for the two cloud-config dialects (Flatcar's coreos-cloudinit reads YAML 1.1
//! with go-yaml, cloud-init with PyYAML): text as a literal block when that keeps it byte
//! for byte, else double-quoted with everything but printable ASCII escaped.

use std::fmt::Write as _;

/// `content` as a YAML literal block indented by `indent` spaces, ending in a newline; or,
/// when a literal block would change it (a leading blank on its first line, characters
/// YAML treats as line breaks or refuses), as a double-quoted scalar.
pub fn text(content: &str, indent: usize) -> String {
    let literal_safe = !content.is_empty()
        && !content.trim_start_matches('\n').starts_with([' ', '\t'])
        && !content
            .chars()
            .any(|c| (c.is_control() && c != '\n' && c != '\t') || is_yaml_break(c));
    if !literal_safe {
        return format!("{}\n", quoted(content));
    }
    // Chomping: `|` keeps exactly one final newline, `|-` none, `|+` all of them.
    let trailing = content.len() - content.trim_end_matches('\n').len();
    let indicator = match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    };
    let mut out = format!("{indicator}\n");
    let pad = " ".repeat(indent);
    for line in content.trim_end_matches('\n').split('\n') {
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        out.push('\n');
    }
    for _ in 1..trailing {
        out.push('\n');
    }
    out
}

/// YAML 1.1 (which coreos-cloudinit's go-yaml and PyYAML speak) also breaks lines on these.
fn is_yaml_break(c: char) -> bool {
    matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}')
}

/// A YAML double-quoted scalar with everything but printable ASCII escaped, so no YAML
/// reader can take it for a number, a boolean or a line break.
pub fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08X}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_block_keeps_text_and_final_newline() {
        assert_eq!(text("a\n\n b\n", 2), "|\n  a\n\n   b\n");
    }

    #[test]
    fn chomping_indicator_follows_the_trailing_newlines() {
        assert_eq!(text("a", 2), "|-\n  a\n");
        assert_eq!(text("a\n\n", 2), "|+\n  a\n\n");
    }

    #[test]
    fn text_a_literal_block_would_change_is_quoted() {
        assert_eq!(text("  indented\n", 2), "\"  indented\\n\"\n");
        assert_eq!(text("a\r\nb\n", 2), "\"a\\u000D\\nb\\n\"\n");
        assert_eq!(text("", 2), "\"\"\n");
    }

    #[test]
    fn quoted_escapes_all_but_printable_ascii() {
        assert_eq!(quoted("0644"), "\"0644\"");
        assert_eq!(quoted("é\"\\"), "\"\\u00E9\\\"\\\\\"");
        assert_eq!(quoted("🙂"), "\"\\U0001F642\"");
    }
}
