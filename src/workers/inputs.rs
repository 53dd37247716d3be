//! What a handler reads from its task, declared beside the handler: each variable or extension
//! property by name, with its type, whether the handler refuses the task without it, the form a
//! literal value must have, and the words a BPMN designer sees. The topic files' `variables`
//! are held to it when they are read, and `herald element-templates` turns it into the Camunda
//! Modeler element template of each topic ([`super::element_templates`]).

/// One value a handler reads from its task.
#[derive(Debug, Clone, Copy)]
pub struct TaskInput {
    /// The variable's (or extension property's) name, as the handler reads it.
    pub name: &'static str,
    pub kind: InputKind,
    /// The handler refuses the task (an incident) without it.
    pub required: bool,
    /// The form a value typed into the model must have (an expression `${…}` always passes).
    pub pattern: Option<InputPattern>,
    /// The field's label in Camunda Modeler.
    pub label: &'static str,
    /// What the value means, for the designer.
    pub description: &'static str,
    pub source: InputSource,
}

/// The type the handler reads the value as.
#[derive(Debug, Clone, Copy)]
pub enum InputKind {
    /// A String variable.
    String,
    /// A String variable that may run over several lines (a note).
    Text,
    /// An Integer (or Long) variable: a number typed into the model would reach herald as a
    /// String, so the model gives an expression.
    Integer,
    /// A String variable that must be one of these values (taken from the domain's enum).
    Choice(fn() -> Vec<Choice>),
}

/// One value of an [`InputKind::Choice`], with the name a designer picks it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub value: &'static str,
    pub name: &'static str,
}

/// A regular expression (JavaScript syntax, without anchors) a literal value must match, and
/// what the designer is told when it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputPattern {
    pub regex: &'static str,
    pub message: &'static str,
}

/// Where the model puts the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSource {
    /// A variable: the model maps it with an input parameter of the task.
    Variable,
    /// An extension property of the task (`camunda:property`), the model's setting; a process
    /// or input variable of the same name wins over it.
    ExtensionProperty,
}

/// A locale such as `de` or `de-AT`.
pub const LOCALE_PATTERN: InputPattern = InputPattern {
    regex: "[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*",
    message: "A locale such as de or de-AT, or an expression such as ${customerLocale}.",
};
