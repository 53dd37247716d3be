//! Payload schemas: the type of each field a template version declares, and whether a value
//! has it.

use serde::Deserialize;
use serde_json::Value;

/// A payload field's type: `string`, `integer`, `number`, `boolean`, `list` (of strings, e.g. the
/// lines of a digest); `?` makes it optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct FieldType {
    pub kind: FieldKind,
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    String,
    Integer,
    Number,
    Boolean,
    List,
}

impl TryFrom<String> for FieldType {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        let (name, required) = match text.strip_suffix('?') {
            Some(name) => (name, false),
            None => (text.as_str(), true),
        };
        let kind = match name {
            "string" => FieldKind::String,
            "integer" => FieldKind::Integer,
            "number" => FieldKind::Number,
            "boolean" => FieldKind::Boolean,
            "list" => FieldKind::List,
            other => {
                return Err(format!(
                "unknown field type '{other}' (string, integer, number, boolean, list; '?' for optional)"
            ))
            }
        };
        Ok(FieldType { kind, required })
    }
}

impl FieldType {
    pub(crate) fn accepts(self, value: &Value) -> bool {
        match (self.kind, value) {
            (_, Value::Null) => !self.required,
            (FieldKind::String, Value::String(_)) => true,
            (FieldKind::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (FieldKind::Number, Value::Number(_)) => true,
            (FieldKind::Boolean, Value::Bool(_)) => true,
            (FieldKind::List, Value::Array(items)) => items.iter().all(Value::is_string),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_types_parse_and_check() {
        let t = FieldType::try_from("integer?".to_string()).unwrap();
        assert!(!t.required && t.kind == FieldKind::Integer);
        assert!(
            t.accepts(&Value::Null)
                && t.accepts(&serde_json::json!(4))
                && !t.accepts(&serde_json::json!("4"))
        );
        assert!(FieldType::try_from("date".to_string()).is_err());
    }
}
