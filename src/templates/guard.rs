//! The leak guard's vocabulary: which payload fields are internal data a customer template
//! may never see, which fields a template's source uses, and how a note a user typed is made
//! harmless before a template shows it.

/// Internal data a customer template may never see (case and separators ignored).
pub const INTERNAL_FIELDS: &[&str] = &[
    "margin",
    "marginpercent",
    "marginamount",
    "cost",
    "costbasis",
    "unitcost",
    "approvalreason",
    "approvalreasons",
    "approvalcomment",
    "riskscore",
    "discountthreshold",
    "floorprice",
    "internalnote",
];

/// A name the guard would call internal, allowed after review (e.g. the shipping cost a
/// customer pays): `[[allow]]` in `templates/fields.toml`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedName {
    pub name: String,
    /// Why it is not internal data.
    pub reason: String,
    /// Who reviewed it.
    pub reviewed_by: String,
}

/// The second line of defence: internal data recognised by its name, with the reviewed
/// exceptions.
#[derive(Debug, Clone, Default)]
pub struct NameGuard {
    allowed: Vec<AllowedName>,
}

impl NameGuard {
    pub fn new(allowed: Vec<AllowedName>) -> NameGuard {
        NameGuard { allowed }
    }

    /// Whether `name` is internal data, unless allowed.
    pub fn is_internal(&self, name: &str) -> bool {
        is_internal_field(name) && !self.allowed.iter().any(|a| a.name == name)
    }

    pub fn allowed(&self) -> &[AllowedName] {
        &self.allowed
    }
}

/// Whether a field name is internal data (`cost_basis`, `CostBasis`, `approval-reason` …).
pub fn is_internal_field(name: &str) -> bool {
    let normalised: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    INTERNAL_FIELDS.contains(&normalised.as_str()) || normalised.starts_with("internal")
}

/// A note a user typed (e.g. the sales rep's message on a proposal): no markup, no control
/// characters, no header tricks, at most 2,000 characters. Templates escape it again.
pub fn sanitize_note(note: &str) -> String {
    let without_tags = ammonia::Builder::empty().clean(note).to_string();
    // ammonia leaves entities for the characters it escaped: bring them back to text, since
    // the template engine escapes for HTML itself.
    let text = without_tags
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(2000)
        .collect::<String>()
        .trim()
        .to_string()
}

/// The root names of the fields a template uses (`{{quote.number}}` → `quote`), without the
/// helpers' keywords.
pub fn fields_used(source: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        let expr = after[..end].trim_matches(|c| c == '{' || c == '}' || c == '~' || c == ' ');
        rest = &after[end + 2..];
        if expr.starts_with('!') || expr.starts_with('/') || expr == "else" {
            continue;
        }
        let mut words = expr.split_whitespace();
        let first = words.next().unwrap_or("");
        let candidates: Vec<&str> = if let Some(helper) = first.strip_prefix('#') {
            let _ = helper;
            words.collect()
        } else if words.clone().next().is_some() {
            // A helper call `{{helper arg}}`: the arguments are fields.
            words.collect()
        } else {
            vec![first]
        };
        for word in candidates {
            let root = word.split('.').next().unwrap_or("");
            let is_literal =
                root.starts_with('"') || root.starts_with('\'') || root.parse::<f64>().is_ok();
            if !root.is_empty()
                && !is_literal
                && root != "this"
                && !root.starts_with('@')
                && !fields.iter().any(|f| f == root)
            {
                fields.push(root.to_string());
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_fields_a_template_uses() {
        assert_eq!(
            fields_used("Quote {{quoteNumber}} {{{raw}}}"),
            vec!["quoteNumber", "raw"]
        );
        assert_eq!(
            fields_used("{{#if messageNote}}{{messageNote}}{{/if}}"),
            vec!["messageNote"]
        );
        assert_eq!(
            fields_used("{{#each items}}{{this.name}}{{/each}}"),
            vec!["items"]
        );
        assert_eq!(
            fields_used("{{! a comment }}{{quote.margin}}"),
            vec!["quote"]
        );
    }

    #[test]
    fn internal_fields_are_recognised_whatever_their_spelling() {
        for name in [
            "margin",
            "costBasis",
            "cost_basis",
            "approval-reason",
            "RiskScore",
            "internalPriceNote",
        ] {
            assert!(is_internal_field(name), "{name}");
        }
        for name in ["quoteNumber", "customerDisplayName", "validUntilDisplay"] {
            assert!(!is_internal_field(name), "{name}");
        }
    }

    #[test]
    fn notes_lose_markup_and_control_characters() {
        assert_eq!(
            sanitize_note("Hi <script>alert(1)</script><b>there</b>"),
            "Hi there"
        );
        assert_eq!(
            sanitize_note("line\r\nBcc: evil@example.com\u{0007}"),
            "line\nBcc: evil@example.com"
        );
        assert_eq!(sanitize_note("5 < 6 & 7 > 3"), "5 < 6 & 7 > 3");
        assert_eq!(sanitize_note(&"x".repeat(5000)).len(), 2000);
    }
}
