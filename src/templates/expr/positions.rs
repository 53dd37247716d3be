//! Where the tags of a template's source are: Handlebars' mapping has no entry for the
//! `{{else …}}` nodes of an else chain, so they are found in the source as its grammar finds them.

use std::collections::HashMap;

use handlebars::template::{HelperTemplate, Template, TemplateElement};

use super::Pos;

/// The position of each `{{else …}}` node of an else chain. Handlebars' mapping has no entry
/// for them, so they are matched, in the order of the source, with the `{{else <expression>}}`
/// (and `{{^<expression>}}`) tags the source has; if the counts differ, none is (their
/// findings then name the block's `{{#…}}`).
pub(super) fn chain_positions(
    source: &str,
    template: &Template,
) -> HashMap<*const HelperTemplate, Pos> {
    fn nodes(template: &Template, out: &mut Vec<*const HelperTemplate>) {
        for (i, element) in template.elements.iter().enumerate() {
            match element {
                TemplateElement::HelperBlock(ht) => {
                    if template.mapping.get(i).is_none() {
                        out.push(&**ht as *const HelperTemplate);
                    }
                    for inner in [&ht.template, &ht.inverse].into_iter().flatten() {
                        nodes(inner, out);
                    }
                }
                TemplateElement::DecoratorBlock(d) | TemplateElement::PartialBlock(d) => {
                    if let Some(inner) = &d.template {
                        nodes(inner, out);
                    }
                }
                _ => {}
            }
        }
    }
    let mut chain_nodes = Vec::new();
    nodes(template, &mut chain_nodes);
    let tags = chain_tags(source);
    if chain_nodes.len() != tags.len() {
        return HashMap::new();
    }
    chain_nodes
        .into_iter()
        .zip(tags.into_iter().map(|offset| line_col(source, offset)))
        .collect()
}

/// The byte offsets of the `{{else <expression>}}` and `{{^<expression>}}` tags of `source`,
/// skipping escaped `\{{`, comments and raw blocks as Handlebars' grammar does.
pub(super) fn chain_tags(source: &str) -> Vec<usize> {
    let mut tags = Vec::new();
    let mut at = 0;
    while let Some(found) = source[at..].find("{{") {
        let start = at + found;
        let rest = &source[start..];
        let backslashes = source[..start]
            .bytes()
            .rev()
            .take_while(|&b| b == b'\\')
            .count();
        let skip_to = |from: usize, end: &str| {
            source[from..]
                .find(end)
                .map_or(source.len(), |i| from + i + end.len())
        };
        at = if backslashes == 1 {
            start + if rest.starts_with("{{{{") { 4 } else { 2 }
        } else if rest.starts_with("{{{{") {
            // A raw block: its start tag, its text up to the end tag, the end tag.
            let text = skip_to(start + 4, "}}}}");
            let end = source[text..]
                .find("{{{{")
                .map_or(source.len(), |i| text + i);
            skip_to(end, "}}}}")
        } else if rest.starts_with("{{!--") {
            skip_to(start + 5, "--}}")
        } else if rest.starts_with("{{!") {
            skip_to(start + 3, "}}")
        } else {
            let end = tag_end(source, start + 2);
            let inner = source
                .get(start + 2..end.saturating_sub(2))
                .unwrap_or("")
                .trim_start_matches(|c: char| c.is_whitespace() || c == '~');
            // `else` or `^`, then a helper's name (an identifier of the grammar's).
            let after = inner
                .strip_prefix("else")
                .or_else(|| inner.strip_prefix('^'));
            let names_a_helper = after
                .and_then(|a| a.trim_start().chars().next())
                .is_some_and(|c| c.is_ascii_alphanumeric() || "-_$:".contains(c) || !c.is_ascii());
            if names_a_helper {
                tags.push(start);
            }
            end
        };
    }
    tags
}

/// Where the tag whose content starts at `from` ends (after its `}}`), skipping string
/// literals and `[…]` segments.
fn tag_end(source: &str, from: usize) -> usize {
    let bytes = source.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'}' if bytes.get(i + 1) == Some(&b'}') => return i + 2,
            quote @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' => {
                while i < bytes.len() && bytes[i] != b']' {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    source.len()
}

/// The line and column (from 1, in characters) of a byte offset, as Handlebars' parser counts
/// them (`\r\n` is one line break).
pub(super) fn line_col(source: &str, offset: usize) -> Pos {
    let (mut line, mut column) = (1, 1);
    let mut chars = source[..offset].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {
                chars.next();
                (line, column) = (line + 1, 1);
            }
            '\n' => (line, column) = (line + 1, 1),
            _ => column += 1,
        }
    }
    (line, column)
}
