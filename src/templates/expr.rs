//! A template's expressions, parsed with Handlebars' own parser (not grepped) and checked
//! against its payload schema before the template is ever used: every expression, helper,
//! block, block parameter, hash value and subexpression, with the scopes `#each` opens.
//!
//! - The root scope is the payload schema: a root field must be declared; nothing goes below a
//!   scalar or a list (`{{quoteNumber.margin}}`); `this` at the root (the whole payload) is
//!   refused; `@root.x` is `x` of the root, `../x` is `x` of the enclosing scope, `./x` and
//!   `this.x` are `x`.
//! - `{{#each list}}`: the block's scope is the list's items (strings): `this`, `@index`,
//!   `@first` and `@last` are fine, `this.x` (or `x`) is not; `as |item index|` binds the item
//!   and its index; the `{{else}}` of an `#each` is in the enclosing scope. `#if` and `#unless`
//!   (with `{{else}}` and `{{else if …}}` chains) keep the scope.
//! - Helpers: the blocks `if`, `unless` and `each`; the comparisons and logic `eq`, `ne`, `gt`,
//!   `gte`, `lt`, `lte`, `and`, `or`, `not` and `len`, in subexpressions (`{{#if (eq a b)}}`)
//!   and expressions. Everything else is refused by name: `lookup` (a dynamic key escapes the
//!   check), `log`, `with`, `raw`, partials, decorators and inline partials, unknown helpers.
//! - Names: every segment of a path is an ASCII identifier; in a CUSTOMER template none names
//!   internal data (the [`NameGuard`]).
//!
//! Paths resolve as Handlebars resolves them (its `context.rs`): the first name of a path is
//! looked up among the block parameters of every enclosing `#each` first, whatever `../` or
//! `this.` precede it; `../` counts `#each` blocks only (`#if` opens no scope).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use handlebars::template::{
    BlockParam, HelperTemplate, Parameter, Subexpression, Template, TemplateElement,
};
use handlebars::{Path, PathSeg};

use super::guard::{is_identifier, NameGuard};
use super::schema::{FieldKind, FieldType};

mod positions;

use positions::chain_positions;

/// A problem in a template's source, where it is: the line and column (from 1, in characters)
/// of the `{{…}}` it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// What a template's source uses, and what is wrong with it.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Every problem, in the order of the source.
    pub findings: Vec<Finding>,
    /// The payload schema's fields the template uses (by any path: `x`, `@root.x`, `../x`).
    pub fields: BTreeSet<String>,
    /// Where the source writes a value unescaped (`{{{x}}}`): refused in HTML bodies.
    pub unescaped: Vec<(usize, usize)>,
}

/// The helpers a template may call in a subexpression or an expression, with their number of
/// arguments (Handlebars' built-ins).
const CONDITIONS: &[(&str, usize)] = &[
    ("eq", 2),
    ("ne", 2),
    ("gt", 2),
    ("gte", 2),
    ("lt", 2),
    ("lte", 2),
    ("and", 2),
    ("or", 2),
    ("not", 1),
    ("len", 1),
];

/// The block helpers a template may use.
const BLOCKS: &[&str] = &["if", "unless", "each"];

/// Every helper Handlebars registers: `{{name}}` calls it rather than showing a field.
const BUILT_IN_HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len",
];

/// Parses `source` with Handlebars' parser and checks each of its expressions against
/// `schema`. `guard` is the name guard of a CUSTOMER template, `None` for an internal one. Err:
/// the source does not parse.
pub fn analyse(
    source: &str,
    schema: &BTreeMap<String, FieldType>,
    guard: Option<&NameGuard>,
) -> Result<Analysis, Finding> {
    let template = Template::compile(source).map_err(|e| {
        let (line, column) = e.pos().unwrap_or((1, 1));
        Finding {
            line,
            column,
            message: format!("does not parse: {}", e.reason()),
        }
    })?;
    let mut walker = Walker {
        schema,
        guard,
        chains: chain_positions(source, &template),
        scopes: vec![Scope::Root],
        analysis: Analysis::default(),
    };
    walker.template(&template, (1, 1));
    Ok(walker.analysis)
}

type Pos = (usize, usize);

/// A scope of names: the payload, or the items of a list an `#each` goes over.
enum Scope {
    Root,
    Each {
        list: String,
        /// The block parameters: `as |item index|`.
        item: Option<String>,
        index: Option<String>,
    },
}

/// What a path or an argument stands for.
enum Value {
    Field(String, FieldKind),
    /// An item of a list (a string): `this` in an `#each`, its block parameter.
    Item,
    /// `@index`, an `#each`'s index parameter.
    Index,
    /// `@first`, `@last`.
    Flag,
    Literal,
    /// A subexpression's result.
    Computed,
}

struct Walker<'a> {
    schema: &'a BTreeMap<String, FieldType>,
    guard: Option<&'a NameGuard>,
    /// Where the `{{else if …}}` tags are (Handlebars' mapping has no entry for them).
    chains: HashMap<*const HelperTemplate, Pos>,
    /// The root, then one scope per enclosing `#each`.
    scopes: Vec<Scope>,
    analysis: Analysis,
}

impl Walker<'_> {
    fn report(&mut self, (line, column): Pos, message: String) {
        self.analysis.findings.push(Finding {
            line,
            column,
            message,
        });
    }

    fn template(&mut self, template: &Template, enclosing: Pos) {
        for (i, element) in template.elements.iter().enumerate() {
            let pos = match (template.mapping.get(i), element) {
                (Some(mapping), _) => (mapping.0, mapping.1),
                (None, TemplateElement::HelperBlock(ht)) => self
                    .chains
                    .get(&(&**ht as *const HelperTemplate))
                    .copied()
                    .unwrap_or(enclosing),
                (None, _) => enclosing,
            };
            match element {
                TemplateElement::RawString(_) | TemplateElement::Comment(_) => {}
                TemplateElement::Expression(ht) => self.expression(ht, pos),
                TemplateElement::HtmlExpression(ht) => {
                    self.analysis.unescaped.push(pos);
                    self.expression(ht, pos)
                }
                TemplateElement::HelperBlock(ht) => self.block(ht, pos),
                TemplateElement::DecoratorExpression(d) | TemplateElement::DecoratorBlock(d) => {
                    let name = display_name(&d.name);
                    self.report(
                        pos,
                        format!(
                            "uses the decorator '*{name}': decorators and inline partials are not allowed"
                        ),
                    )
                }
                TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                    let name = display_name(&d.name);
                    self.report(
                        pos,
                        format!(
                            "uses the partial '{name}': partials are not allowed (their expressions escape this template's checks)"
                        ),
                    )
                }
                _ => self.report(pos, "uses a construct this check does not know".into()),
            }
        }
    }

    /// `{{x}}`, `{{{x}}}`, `{{(helper …)}}`, `{{helper …}}`.
    fn expression(&mut self, ht: &HelperTemplate, pos: Pos) {
        if ht.params.is_empty() && ht.hash.is_empty() {
            match &ht.name {
                Parameter::Path(path) => {
                    let raw = raw(path);
                    if BUILT_IN_HELPERS.contains(&raw) {
                        self.report(
                            pos,
                            format!("uses '{raw}', which is a helper, not a payload field"),
                        );
                    } else {
                        self.path(path, pos);
                    }
                }
                Parameter::Subexpression(sub) => self.subexpression(sub, pos),
                Parameter::Name(name) => self.call(name, ht, pos),
                _ => self.report(pos, "uses an expression this check does not know".into()),
            }
        } else {
            match &ht.name {
                Parameter::Name(name) => self.call(name, ht, pos),
                _ => self.report(pos, "uses an expression this check does not know".into()),
            }
        }
    }

    /// A helper called by an expression or a subexpression.
    fn call(&mut self, name: &str, ht: &HelperTemplate, pos: Pos) {
        if let Some(&(_, arity)) = CONDITIONS.iter().find(|(n, _)| *n == name) {
            if ht.params.len() != arity {
                self.report(
                    pos,
                    format!(
                        "'{name}' takes {arity} argument(s), not {}",
                        ht.params.len()
                    ),
                );
            }
            if !ht.hash.is_empty() {
                let keys = sorted_keys(&ht.hash).join(", ");
                self.report(pos, format!("'{name}' takes no options ({keys})"));
            }
            for param in &ht.params {
                self.value(param, pos);
            }
        } else if BLOCKS.contains(&name) {
            self.report(
                pos,
                format!("uses '{name}' outside a block: write {{{{#{name} …}}}}…{{{{/{name}}}}}"),
            );
        } else {
            self.refuse_helper(name, pos);
        }
    }

    fn subexpression(&mut self, sub: &Subexpression, pos: Pos) {
        match sub.as_element() {
            TemplateElement::Expression(ht) => match ht.name.as_name() {
                // `(x)` calls the helper `x` too.
                Some(name) => self.call(name, ht, pos),
                None => self.report(pos, "a subexpression must name its helper".into()),
            },
            _ => self.report(pos, "uses a subexpression this check does not know".into()),
        }
    }

    fn refuse_helper(&mut self, name: &str, pos: Pos) {
        let why = match name {
            "lookup" => "a dynamic key escapes the check; name the field instead",
            "log" => "it writes template data to the log",
            "with" => "it changes the scope outside the check; name the field instead",
            "raw" => "a raw block is not checked",
            _ => {
                let known: Vec<&str> = CONDITIONS.iter().map(|(n, _)| *n).collect();
                return self.report(
                    pos,
                    format!(
                        "uses the unknown helper '{name}' (the helpers are the blocks if, unless and each, and {})",
                        known.join(", ")
                    ),
                );
            }
        };
        self.report(pos, format!("uses the helper '{name}': {why}"));
    }

    /// A helper's argument or a hash value.
    fn value(&mut self, param: &Parameter, pos: Pos) -> Option<Value> {
        match param {
            Parameter::Path(path) => self.path(path, pos),
            Parameter::Literal(_) => Some(Value::Literal),
            Parameter::Subexpression(sub) => {
                self.subexpression(sub, pos);
                Some(Value::Computed)
            }
            _ => {
                self.report(pos, "uses an argument this check does not know".into());
                None
            }
        }
    }

    /// `{{#name …}}…{{/name}}`, and each `{{else name …}}` of a chain.
    fn block(&mut self, ht: &HelperTemplate, pos: Pos) {
        let Some(name) = ht.name.as_name() else {
            return self.report(pos, "a block must name its helper".into());
        };
        match name {
            "if" | "unless" => {
                if ht.block_param.is_some() {
                    self.report(
                        pos,
                        format!(
                            "'#{name}' has no block parameters (only #each has: as |item index|)"
                        ),
                    );
                }
                if ht.params.len() != 1 {
                    self.report(
                        pos,
                        format!("'#{name}' takes one condition, not {}", ht.params.len()),
                    );
                }
                for param in &ht.params {
                    self.value(param, pos);
                }
                for key in sorted_keys(&ht.hash) {
                    if key != "includeZero" {
                        self.report(
                            pos,
                            format!("'#{name}' has no option '{key}' (only includeZero)"),
                        );
                    }
                    self.value(&ht.hash[key], pos);
                }
                for inner in [&ht.template, &ht.inverse].into_iter().flatten() {
                    self.template(inner, pos);
                }
            }
            "each" => self.each(ht, pos),
            _ if CONDITIONS.iter().any(|(n, _)| *n == name) => self.report(
                pos,
                format!("uses '#{name}' as a block: write {{{{#if ({name} …)}}}}"),
            ),
            _ => self.refuse_helper(name, pos),
        }
    }

    fn each(&mut self, ht: &HelperTemplate, pos: Pos) {
        let list = match ht.params.as_slice() {
            [Parameter::Path(path)] => match self.path(path, pos) {
                Some(Value::Field(field, FieldKind::List)) => Some(field),
                Some(Value::Field(field, kind)) => {
                    self.report(
                        pos,
                        format!(
                            "'#each {}' goes over the {} field '{field}': #each needs a list field",
                            raw(path),
                            kind_name(kind)
                        ),
                    );
                    None
                }
                Some(_) => {
                    self.report(
                        pos,
                        format!(
                            "'#each {}' goes over an item or an index: #each needs a list field",
                            raw(path)
                        ),
                    );
                    None
                }
                None => None,
            },
            [other] => {
                self.value(other, pos);
                self.report(
                    pos,
                    "'#each' needs a list field, not a literal or a subexpression".into(),
                );
                None
            }
            params => {
                self.report(
                    pos,
                    format!("'#each' takes one list field, not {}", params.len()),
                );
                None
            }
        };
        if !ht.hash.is_empty() {
            let keys = sorted_keys(&ht.hash).join(", ");
            self.report(pos, format!("'#each' has no options ({keys})"));
        }
        let (item, index) = match &ht.block_param {
            None => (None, None),
            Some(BlockParam::Single(item)) => (self.block_param(item, pos), None),
            Some(BlockParam::Pair((item, index))) => {
                (self.block_param(item, pos), self.block_param(index, pos))
            }
            Some(_) => {
                self.report(pos, "uses block parameters this check does not know".into());
                (None, None)
            }
        };
        // Without a list the block's scope is unknown: its body is checked once the list is.
        if let Some(list) = list {
            self.scopes.push(Scope::Each { list, item, index });
            if let Some(body) = &ht.template {
                self.template(body, pos);
            }
            self.scopes.pop();
        }
        if let Some(inverse) = &ht.inverse {
            self.template(inverse, pos);
        }
    }

    fn block_param(&mut self, param: &Parameter, pos: Pos) -> Option<String> {
        match param {
            Parameter::Name(name) if is_identifier(name) => Some(name.clone()),
            other => {
                let name = display_name(other);
                self.report(
                    pos,
                    format!(
                        "'#each … as |{name}|': a block parameter must be an ASCII identifier ([A-Za-z_][A-Za-z0-9_]*)"
                    ),
                );
                None
            }
        }
    }

    fn path(&mut self, path: &Path, pos: Pos) -> Option<Value> {
        match path {
            Path::Local((level, name, raw)) => self.local(*level, name, raw, pos),
            Path::Relative((segs, raw)) => self.relative(segs, raw, pos),
        }
    }

    /// `@index`, `@first`, `@last`, `@../index` …
    fn local(&mut self, level: usize, name: &str, raw: &str, pos: Pos) -> Option<Value> {
        let eaches = self.scopes.len() - 1;
        match name {
            "index" | "first" | "last" if level < eaches => Some(if name == "index" {
                Value::Index
            } else {
                Value::Flag
            }),
            "index" | "first" | "last" => {
                self.report(
                    pos,
                    format!("uses '{raw}' outside the #each blocks it is in ({eaches})"),
                );
                None
            }
            "root" => {
                self.report(
                    pos,
                    "uses '@root', which is the whole payload: name a field (@root.field)".into(),
                );
                None
            }
            _ => {
                self.report(
                    pos,
                    format!(
                        "uses '{raw}': the @-variables are @index, @first and @last, inside #each"
                    ),
                );
                None
            }
        }
    }

    fn relative(&mut self, segs: &[PathSeg], raw: &str, pos: Pos) -> Option<Value> {
        let mut names: Vec<&str> = Vec::new();
        let (mut ups, mut from_root) = (0, false);
        for seg in segs {
            let ruled = match seg {
                PathSeg::Named(name) => {
                    names.push(name);
                    continue;
                }
                // The grammar's rule, whose type handlebars does not export.
                PathSeg::Ruled(rule) => format!("{rule:?}"),
                _ => String::new(),
            };
            match ruled.as_str() {
                "path_root" if names.is_empty() && ups == 0 => from_root = true,
                "path_up" if names.is_empty() && !from_root => ups += 1,
                _ => {
                    self.report(
                        pos,
                        format!("uses '{raw}': a path of this form is not allowed"),
                    );
                    return None;
                }
            }
        }
        if let Some(bad) = names.iter().find(|n| !is_identifier(n)) {
            self.report(
                pos,
                format!(
                    "uses '{raw}': '{bad}' is not an ASCII identifier ([A-Za-z_][A-Za-z0-9_]*)"
                ),
            );
            return None;
        }
        if let Some(guard) = self.guard {
            let internal: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| guard.is_internal(n))
                .collect();
            for name in internal {
                let message = if name == raw {
                    format!("uses '{raw}': a CUSTOMER template may not see internal data")
                } else {
                    format!(
                        "uses '{raw}': '{name}' is internal data, which a CUSTOMER template may not see"
                    )
                };
                self.report(pos, message);
            }
        }
        // A block parameter, by the first name, in any enclosing #each.
        if let (false, Some(&first)) = (from_root, names.first()) {
            if let Some((list, is_index)) = self.bound(first) {
                if names.len() > 1 {
                    let what = if is_index {
                        "the index of an item (a number)".to_string()
                    } else {
                        format!("an item of '{list}' (a string)")
                    };
                    self.report(
                        pos,
                        format!(
                            "uses '{raw}', which goes below the block parameter '{first}', {what}"
                        ),
                    );
                    return None;
                }
                return Some(if is_index { Value::Index } else { Value::Item });
            }
        }
        let current = self.scopes.len() - 1;
        let scope = if from_root {
            0
        } else if ups > current {
            self.report(
                pos,
                format!(
                    "uses '{raw}', which goes above the root (it is in {current} #each block(s))"
                ),
            );
            return None;
        } else {
            current - ups
        };
        match &self.scopes[scope] {
            Scope::Root => {
                let Some((&field, below)) = names.split_first() else {
                    self.report(
                        pos,
                        format!("uses '{raw}', which is the whole payload: name a field"),
                    );
                    return None;
                };
                let Some(kind) = self.schema.get(field).map(|t| t.kind) else {
                    let message = if field == raw {
                        format!("uses '{raw}', which is not in the payload schema")
                    } else {
                        format!("uses '{raw}': '{field}' is not in the payload schema")
                    };
                    self.report(pos, message);
                    return None;
                };
                self.analysis.fields.insert(field.to_string());
                if !below.is_empty() {
                    self.report(
                        pos,
                        format!(
                            "uses '{raw}', which goes below the {} field '{field}'",
                            kind_name(kind)
                        ),
                    );
                    return None;
                }
                Some(Value::Field(field.to_string(), kind))
            }
            Scope::Each { list, .. } => match names.first() {
                None => Some(Value::Item),
                Some(first) => {
                    let message = format!(
                        "uses '{raw}', which goes below the items of '{list}' (strings); a payload field is '@root.{first}'"
                    );
                    self.report(pos, message);
                    None
                }
            },
        }
    }

    /// The list whose block parameter `name` is, and whether it is the index (innermost
    /// first, the index before the item: Handlebars' order).
    fn bound(&self, name: &str) -> Option<(String, bool)> {
        self.scopes.iter().rev().find_map(|scope| match scope {
            Scope::Each { list, item, index } => {
                if index.as_deref() == Some(name) {
                    Some((list.clone(), true))
                } else if item.as_deref() == Some(name) {
                    Some((list.clone(), false))
                } else {
                    None
                }
            }
            Scope::Root => None,
        })
    }
}

fn raw(path: &Path) -> &str {
    match path {
        Path::Relative((_, raw)) | Path::Local((_, _, raw)) => raw,
    }
}

fn display_name(param: &Parameter) -> String {
    param
        .as_name()
        .map(str::to_owned)
        .unwrap_or_else(|| "(a computed name)".into())
}

fn sorted_keys<V>(hash: &HashMap<String, V>) -> Vec<&str> {
    let mut keys: Vec<&str> = hash.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::String => "string",
        FieldKind::Integer => "integer",
        FieldKind::Number => "number",
        FieldKind::Boolean => "boolean",
        FieldKind::List => "list",
    }
}

#[cfg(test)]
mod tests;
