//! Camunda 7 typed variables: `{"value": …, "type": "String", "valueInfo": {…}}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One variable as the REST API carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypedValue {
    #[serde(default)]
    pub value: Value,
    #[serde(rename = "type", default)]
    pub type_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_info: Option<Value>,
}

/// A set of variables by name.
pub type Variables = BTreeMap<String, TypedValue>;

/// Why a variable could not be read as what a handler needs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VariableError {
    #[error("process variable '{name}' is missing")]
    Missing { name: String },
    #[error("process variable '{name}' is {found}, expected {expected}")]
    WrongType {
        name: String,
        expected: &'static str,
        found: String,
    },
    #[error("process variable '{name}' is empty")]
    Empty { name: String },
}

impl TypedValue {
    pub fn string(value: impl Into<String>) -> Self {
        TypedValue {
            value: Value::String(value.into()),
            type_name: Some("String".into()),
            value_info: None,
        }
    }

    pub fn integer(value: i32) -> Self {
        TypedValue {
            value: Value::from(value),
            type_name: Some("Integer".into()),
            value_info: None,
        }
    }

    pub fn long(value: i64) -> Self {
        TypedValue {
            value: Value::from(value),
            type_name: Some("Long".into()),
            value_info: None,
        }
    }

    pub fn boolean(value: bool) -> Self {
        TypedValue {
            value: Value::Bool(value),
            type_name: Some("Boolean".into()),
            value_info: None,
        }
    }

    fn type_label(&self) -> String {
        match (&self.type_name, &self.value) {
            (Some(t), _) => t.clone(),
            (None, Value::Null) => "Null".into(),
            (None, v) => format!("untyped {v}"),
        }
    }

    fn is_type(&self, names: &[&str]) -> bool {
        self.type_name
            .as_deref()
            .is_some_and(|t| names.iter().any(|n| n.eq_ignore_ascii_case(t)))
    }
}

/// Reads variables by name with the types Camunda's Java side produces.
pub trait VariablesExt {
    fn get_typed(&self, name: &str) -> Option<&TypedValue>;

    /// A non-empty String variable.
    fn require_str(&self, name: &str) -> Result<&str, VariableError> {
        match self.opt_str(name)? {
            Some(s) => Ok(s),
            None => Err(VariableError::Missing { name: name.into() }),
        }
    }

    /// A String variable that may be absent or null; an empty string counts as an error.
    fn opt_str(&self, name: &str) -> Result<Option<&str>, VariableError> {
        let Some(v) = self.get_typed(name) else {
            return Ok(None);
        };
        if v.value.is_null() {
            return Ok(None);
        }
        match (&v.value, v.is_type(&["String"]) || v.type_name.is_none()) {
            (Value::String(s), true) if s.trim().is_empty() => {
                Err(VariableError::Empty { name: name.into() })
            }
            (Value::String(s), true) => Ok(Some(s.as_str())),
            _ => Err(VariableError::WrongType {
                name: name.into(),
                expected: "String",
                found: v.type_label(),
            }),
        }
    }

    /// An Integer, Long or Short variable (a numeric String is refused: types are a contract).
    fn require_i64(&self, name: &str) -> Result<i64, VariableError> {
        let Some(v) = self.get_typed(name).filter(|v| !v.value.is_null()) else {
            return Err(VariableError::Missing { name: name.into() });
        };
        let numeric = v.is_type(&["Integer", "Long", "Short"]) || v.type_name.is_none();
        match (&v.value, numeric) {
            (Value::Number(n), true) if n.is_i64() => Ok(n.as_i64().expect("checked is_i64")),
            _ => Err(VariableError::WrongType {
                name: name.into(),
                expected: "Integer",
                found: v.type_label(),
            }),
        }
    }
}

impl VariablesExt for Variables {
    fn get_typed(&self, name: &str) -> Option<&TypedValue> {
        self.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> Variables {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn decodes_the_engine_wire_format() {
        let v = vars(json!({
            "quoteId": {"type": "String", "value": "Q-1", "valueInfo": {}},
            "revisionNo": {"type": "Integer", "value": 4, "valueInfo": {}},
            "locale": {"type": "Null", "value": null, "valueInfo": {}}
        }));
        assert_eq!(v.require_str("quoteId").unwrap(), "Q-1");
        assert_eq!(v.require_i64("revisionNo").unwrap(), 4);
        assert_eq!(v.opt_str("locale").unwrap(), None);
        assert_eq!(v.opt_str("absent").unwrap(), None);
    }

    #[test]
    fn missing_and_wrong_types_name_the_variable() {
        let v = vars(json!({
            "revisionNo": {"type": "String", "value": "4"},
            "quoteId": {"type": "Integer", "value": 7},
            "blank": {"type": "String", "value": "  "}
        }));
        assert_eq!(
            v.require_str("artifactId").unwrap_err(),
            VariableError::Missing {
                name: "artifactId".into()
            }
        );
        let err = v.require_i64("revisionNo").unwrap_err();
        assert_eq!(
            err.to_string(),
            "process variable 'revisionNo' is String, expected Integer"
        );
        let err = v.require_str("quoteId").unwrap_err();
        assert_eq!(
            err.to_string(),
            "process variable 'quoteId' is Integer, expected String"
        );
        assert_eq!(
            v.require_str("blank").unwrap_err(),
            VariableError::Empty {
                name: "blank".into()
            }
        );
    }

    #[test]
    fn long_values_are_accepted_as_integers() {
        let v = vars(json!({"n": {"type": "Long", "value": 9_000_000_000i64}}));
        assert_eq!(v.require_i64("n").unwrap(), 9_000_000_000);
    }

    #[test]
    fn encodes_typed_values_as_the_engine_expects() {
        let mut v = Variables::new();
        v.insert("communicationId".into(), TypedValue::string("abc"));
        v.insert("count".into(), TypedValue::integer(3));
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            json!({
                "communicationId": {"value": "abc", "type": "String"},
                "count": {"value": 3, "type": "Integer"}
            })
        );
    }
}
