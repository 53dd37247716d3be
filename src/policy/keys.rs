//! Idempotency keys from a topic's pattern, e.g.
//! `quote-proposal-delivery:{businessKey}:{artifactId}:{recipientRef}:v1`.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyError {
    #[error("idempotency key pattern '{pattern}' uses '{{{name}}}', which has no value")]
    MissingValue { pattern: String, name: String },
    #[error("idempotency key pattern '{0}' has an unclosed '{{'")]
    Unclosed(String),
}

/// Fills `{name}` placeholders from `values`. Values are escaped so that a ':' inside a value
/// can never make two different inputs produce the same key.
pub fn derive_key(pattern: &str, values: &BTreeMap<&str, String>) -> Result<String, KeyError> {
    let mut key = String::with_capacity(pattern.len() + 64);
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        key.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| KeyError::Unclosed(pattern.to_string()))?;
        let name = &after[..end];
        let value =
            values
                .get(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| KeyError::MissingValue {
                    pattern: pattern.to_string(),
                    name: name.to_string(),
                })?;
        key.push_str(&escape(value));
        rest = &after[end + 1..];
    }
    key.push_str(rest);
    Ok(key)
}

/// The placeholders a pattern uses (for validating topic files).
pub fn placeholders(pattern: &str) -> Result<Vec<String>, KeyError> {
    let mut names = Vec::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| KeyError::Unclosed(pattern.to_string()))?;
        names.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    Ok(names)
}

fn escape(value: &str) -> String {
    value.replace('%', "%25").replace(':', "%3A")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATTERN: &str = "quote-proposal-delivery:{businessKey}:{artifactId}:{recipientRef}:v1";

    fn values(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn derives_the_proposal_key_from_the_business_key_and_inputs() {
        let v = values(&[
            ("businessKey", "Q-1001-r4"),
            ("artifactId", "doc-9"),
            ("recipientRef", "contact-551"),
        ]);
        assert_eq!(
            derive_key(PATTERN, &v).unwrap(),
            "quote-proposal-delivery:Q-1001-r4:doc-9:contact-551:v1"
        );
    }

    #[test]
    fn same_inputs_same_key_other_inputs_other_key() {
        let a = values(&[
            ("businessKey", "B"),
            ("artifactId", "A"),
            ("recipientRef", "R"),
        ]);
        let b = values(&[
            ("businessKey", "B"),
            ("artifactId", "A2"),
            ("recipientRef", "R"),
        ]);
        assert_eq!(
            derive_key(PATTERN, &a).unwrap(),
            derive_key(PATTERN, &a).unwrap()
        );
        assert_ne!(
            derive_key(PATTERN, &a).unwrap(),
            derive_key(PATTERN, &b).unwrap()
        );
    }

    #[test]
    fn separators_inside_values_cannot_collide() {
        let a = values(&[
            ("businessKey", "x:y"),
            ("artifactId", "z"),
            ("recipientRef", "r"),
        ]);
        let b = values(&[
            ("businessKey", "x"),
            ("artifactId", "y:z"),
            ("recipientRef", "r"),
        ]);
        assert_ne!(
            derive_key(PATTERN, &a).unwrap(),
            derive_key(PATTERN, &b).unwrap()
        );
    }

    #[test]
    fn a_missing_or_empty_value_is_an_error_naming_it() {
        let v = values(&[
            ("businessKey", ""),
            ("artifactId", "A"),
            ("recipientRef", "R"),
        ]);
        assert_eq!(
            derive_key(PATTERN, &v).unwrap_err(),
            KeyError::MissingValue {
                pattern: PATTERN.into(),
                name: "businessKey".into()
            }
        );
        assert!(matches!(
            derive_key("k:{open", &v),
            Err(KeyError::Unclosed(_))
        ));
        assert_eq!(
            placeholders(PATTERN).unwrap(),
            vec!["businessKey", "artifactId", "recipientRef"]
        );
    }
}
