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

/// The position of each `{{else …}}` node of an else chain. Handlebars' mapping has no entry
/// for them, so they are matched, in the order of the source, with the `{{else <expression>}}`
/// (and `{{^<expression>}}`) tags the source has; if the counts differ, none is (their
/// findings then name the block's `{{#…}}`).
fn chain_positions(source: &str, template: &Template) -> HashMap<*const HelperTemplate, Pos> {
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
fn chain_tags(source: &str) -> Vec<usize> {
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
fn line_col(source: &str, offset: usize) -> Pos {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::AllowedName;

    fn schema() -> BTreeMap<String, FieldType> {
        [
            ("quoteNumber", "string"),
            ("recipientName", "string"),
            ("status", "string"),
            ("count", "integer"),
            ("items", "list"),
            ("lines", "list?"),
            ("proposalLink", "string?"),
            ("shippingCost", "number"),
            ("margin", "number"),
        ]
        .into_iter()
        .map(|(name, kind)| {
            (
                name.to_string(),
                FieldType::try_from(kind.to_string()).unwrap(),
            )
        })
        .collect()
    }

    /// The findings of an internal template's source, as `line:column: message`.
    fn internal(source: &str) -> Vec<String> {
        findings(source, None)
    }

    /// The findings of a customer template's source (the guard without exceptions).
    fn customer(source: &str) -> Vec<String> {
        findings(source, Some(&NameGuard::default()))
    }

    fn findings(source: &str, guard: Option<&NameGuard>) -> Vec<String> {
        analyse(source, &schema(), guard)
            .unwrap_or_else(|e| panic!("{source}: {e}"))
            .findings
            .iter()
            .map(Finding::to_string)
            .collect()
    }

    /// One finding, containing `expected`.
    #[track_caller]
    fn refused(found: Vec<String>, expected: &str) {
        assert!(
            found.len() == 1 && found[0].contains(expected),
            "expected one finding with {expected:?}, got {found:?}"
        );
    }

    #[test]
    fn unescaped_output_is_found_where_it_is() {
        let analysis = analyse(
            "<p>{{quoteNumber}}</p>\n{{#if proposalLink}}<b>{{{proposalLink}}}</b>{{/if}}",
            &schema(),
            None,
        )
        .unwrap();
        assert_eq!(analysis.unescaped, vec![(2, 24)]);
        assert!(analysis.findings.is_empty(), "{:?}", analysis.findings);
    }

    #[test]
    fn what_the_shipped_templates_do_is_accepted() {
        for source in [
            "Dear {{recipientName}}, {{{quoteNumber}}} {{&status}}",
            "{{#if proposalLink}}{{proposalLink}}{{else}}none{{/if}}",
            "{{#unless proposalLink}}a{{else if count}}b{{else}}c{{/unless}}",
            "{{#each items}}\n- {{this}}{{/each}}",
            "{{! a comment {{margin}} }}{{!-- {{margin}} --}}{{quoteNumber}}",
            "\\{{margin}} is not an expression",
            "{{./quoteNumber}} {{this.quoteNumber}} {{@root.quoteNumber}}",
            "{{~#if count~}} {{count}} {{~/if~}}",
        ] {
            assert_eq!(customer(source), Vec::<String>::new(), "{source}");
        }
    }

    /// What the walker accepts, Handlebars renders in strict mode (the model is the engine's).
    #[test]
    fn what_is_accepted_renders_in_strict_mode() {
        let mut handlebars = handlebars::Handlebars::new();
        handlebars.set_strict_mode(true);
        let payload = serde_json::json!({
            "quoteNumber": "Q-1", "recipientName": "Ada", "status": "SHIPPED", "count": 2,
            "items": ["a", "b"], "lines": ["l"], "proposalLink": "https://p", "shippingCost": 4.5,
            "margin": 0.3,
        });
        let mut empty = payload.clone();
        empty["items"] = serde_json::json!([]);
        for source in [
            "Dear {{recipientName}}, {{{quoteNumber}}} {{&status}}",
            "{{#unless proposalLink}}a{{else if count}}b{{else}}c{{/unless}}",
            "{{./quoteNumber}} {{this.quoteNumber}} {{@root.quoteNumber}}",
            "{{#each items}}{{this}} {{@index}} {{@first}} {{@last}} {{../recipientName}} {{@root.count}}{{#if @last}}.{{/if}}{{else}}{{recipientName}}{{/each}}",
            "{{#each items as |item idx|}}{{idx}}: {{item}}{{#if (eq item ../status)}}!{{/if}}{{#each ../lines as |line|}}{{item}}/{{line}} {{@../index}}{{/each}}{{/each}}",
            "{{#if (and (eq status \"SHIPPED\") (not (gt count 3)))}}x{{/if}}{{#if (ne (len items) 0) includeZero=true}}{{/if}}{{len items}}{{lte count 4}}",
        ] {
            assert_eq!(internal(source), Vec::<String>::new(), "{source}");
            for data in [&payload, &empty] {
                handlebars
                    .render_template(source, data)
                    .unwrap_or_else(|e| panic!("{source}: {e}"));
            }
        }
        // And what it refuses for going astray fails there, or shows what it should not.
        for source in [
            "{{#each items}}{{recipientName}}{{/each}}",
            "{{#each items}}{{this.name}}{{/each}}",
            "{{quoteNumber.margin}}",
            "{{@index}}",
            "{{len}}",
        ] {
            assert!(!internal(source).is_empty(), "{source}");
            assert!(
                handlebars.render_template(source, &payload).is_err(),
                "{source}"
            );
        }
    }

    #[test]
    fn each_opens_the_scope_of_the_list_items() {
        let source = "{{#each items}}{{this}} {{@index}} {{@first}} {{@last}} {{../recipientName}} {{@root.count}}{{#if @last}}.{{/if}}{{else}}{{recipientName}}{{/each}}";
        let analysis = analyse(source, &schema(), None).unwrap();
        assert_eq!(analysis.findings, vec![]);
        assert_eq!(
            analysis.fields.iter().collect::<Vec<_>>(),
            ["count", "items", "recipientName"]
        );
        refused(
            internal("{{#each items}}{{this.name}}{{/each}}"),
            "1:16: uses 'this.name', which goes below the items of 'items' (strings)",
        );
        refused(
            internal("{{#each items}}{{recipientName}}{{/each}}"),
            "uses 'recipientName', which goes below the items of 'items' (strings); a payload field is '@root.recipientName'",
        );
        refused(
            internal("{{#each items}}{{#each this}}{{/each}}{{/each}}"),
            "'#each this' goes over an item or an index",
        );
        assert_eq!(
            internal("{{#each items}}{{#each ../lines}}{{this}} {{@../index}}{{/each}}{{/each}}")
                .len(),
            0
        );
        refused(
            internal("{{#each items}}{{@../index}}{{/each}}"),
            "uses '@../index' outside the #each blocks it is in (1)",
        );
        refused(
            internal("{{#each items}}{{@key}}{{/each}}"),
            "uses '@key': the @-variables are @index, @first and @last",
        );
        refused(
            internal("{{@index}}"),
            "uses '@index' outside the #each blocks it is in (0)",
        );
        refused(
            internal("{{#each quoteNumber}}{{/each}}"),
            "'#each quoteNumber' goes over the string field 'quoteNumber': #each needs a list field",
        );
        refused(
            internal("{{#each \"abc\"}}{{/each}}"),
            "'#each' needs a list field, not a literal",
        );
        refused(
            internal("{{#each items lines}}{{/each}}"),
            "'#each' takes one list field, not 2",
        );
    }

    #[test]
    fn block_parameters_are_names_not_fields() {
        // The false refusal: `as` was taken for a field.
        let source = "{{#each items as |item|}}{{item}}{{/each}}";
        assert_eq!(customer(source), Vec::<String>::new());
        let source = "{{#each items as |item idx|}}{{idx}}: {{item}}{{#if (eq item ../status)}}!{{/if}}{{#each ../lines as |line|}}{{item}}/{{line}}{{/each}}{{/each}}";
        assert_eq!(customer(source), Vec::<String>::new());
        refused(
            internal("{{#each items as |item|}}{{item.margin}}{{/each}}"),
            "uses 'item.margin', which goes below the block parameter 'item', an item of 'items' (a string)",
        );
        refused(
            internal("{{#each items as |item i|}}{{i.x}}{{/each}}"),
            "goes below the block parameter 'i', the index of an item (a number)",
        );
        refused(
            internal("{{#each items as |item|}}{{/each}}{{item}}"),
            "uses 'item', which is not in the payload schema",
        );
        refused(
            internal("{{#if count as |x|}}{{/if}}"),
            "'#if' has no block parameters",
        );
        refused(
            internal("{{#each items as |it$em|}}{{/each}}"),
            "'#each … as |it$em|': a block parameter must be an ASCII identifier",
        );
    }

    #[test]
    fn paths_resolve_against_the_payload_schema() {
        refused(
            internal("{{quoteNumber.margin}}"),
            "1:1: uses 'quoteNumber.margin', which goes below the string field 'quoteNumber'",
        );
        refused(
            internal("{{items.first}}"),
            "uses 'items.first', which goes below the list field 'items'",
        );
        refused(
            internal("{{@root.count.value}}"),
            "uses '@root.count.value', which goes below the integer field 'count'",
        );
        refused(
            internal("{{customerName}}"),
            "uses 'customerName', which is not in the payload schema",
        );
        refused(
            internal("{{this}}"),
            "uses 'this', which is the whole payload: name a field",
        );
        refused(
            internal("{{#each items}}{{../this}}{{/each}}"),
            "uses '../this', which is the whole payload",
        );
        refused(
            internal("{{@root}}"),
            "uses '@root', which is the whole payload",
        );
        refused(
            internal("{{../quoteNumber}}"),
            "uses '../quoteNumber', which goes above the root",
        );
        refused(
            internal("{{#if count}}{{../quoteNumber}}{{/if}}"),
            "goes above the root",
        );
        refused(
            internal("{{[quote number]}}"),
            "uses '[quote number]': 'quote number' is not an ASCII identifier",
        );
        refused(
            internal("{{m\u{0430}rgin}}"),
            "'m\u{0430}rgin' is not an ASCII identifier",
        );
        refused(internal("{{items.[0]}}"), "'0' is not an ASCII identifier");
        refused(
            internal("{{len}}"),
            "uses 'len', which is a helper, not a payload field",
        );
    }

    #[test]
    fn only_the_known_helpers_are_allowed() {
        assert_eq!(
            internal("{{#if (and (eq status \"SHIPPED\") (not (gt count 3)))}}x{{/if}}{{#unless (or (lt count 1) (gte count 2))}}{{/unless}}{{#if (ne (len items) 0) includeZero=true}}{{/if}}{{len items}}{{lte count 4}}"),
            Vec::<String>::new()
        );
        refused(
            internal("{{lookup this \"margin\"}}"),
            "uses the helper 'lookup': a dynamic key escapes the check",
        );
        refused(
            internal("{{#if (lookup @root \"margin\")}}{{/if}}"),
            "uses the helper 'lookup'",
        );
        refused(internal("{{log quoteNumber}}"), "uses the helper 'log'");
        refused(
            internal("{{#with quoteNumber}}{{this}}{{/with}}"),
            "uses the helper 'with'",
        );
        refused(
            internal("{{{{raw}}}}{{margin}}{{{{/raw}}}}"),
            "uses the helper 'raw'",
        );
        refused(
            internal("{{formatMoney margin}}"),
            "uses the unknown helper 'formatMoney'",
        );
        refused(
            internal("{{#if (formatMoney margin)}}{{/if}}"),
            "uses the unknown helper 'formatMoney'",
        );
        refused(
            internal("{{#if (count)}}{{/if}}"),
            "uses the unknown helper 'count'",
        );
        refused(
            internal("{{#items}}{{this}}{{/items}}"),
            "uses the unknown helper 'items'",
        );
        refused(
            internal("{{#eq status \"A\"}}{{/eq}}"),
            "uses '#eq' as a block: write {{#if (eq …)}}",
        );
        refused(
            internal("{{if count}}"),
            "uses 'if' outside a block: write {{#if …}}…{{/if}}",
        );
        refused(
            internal("{{#if (eq count)}}{{/if}}"),
            "'eq' takes 2 argument(s), not 1",
        );
        refused(
            internal("{{#if}}{{/if}}"),
            "'#if' takes one condition, not 0",
        );
        refused(
            internal("{{#if count foo=1}}{{/if}}"),
            "'#if' has no option 'foo' (only includeZero)",
        );
        refused(
            internal("{{#if count includeZero=margin.x}}{{/if}}"),
            "uses 'margin.x', which goes below the number field 'margin'",
        );
        refused(
            internal("{{#each items foo=1}}{{/each}}"),
            "'#each' has no options (foo)",
        );
        refused(internal("{{> footer}}"), "uses the partial 'footer'");
        refused(
            internal("{{#> layout}}x{{/layout}}"),
            "uses the partial 'layout'",
        );
        refused(
            internal("{{*inline \"p\"}}"),
            "uses the decorator '*inline': decorators and inline partials are not allowed",
        );
        refused(
            internal("{{#*inline \"p\"}}{{margin}}{{/inline}}"),
            "uses the decorator '*inline'",
        );
    }

    #[test]
    fn a_customer_template_may_not_name_internal_data_anywhere_in_a_path() {
        assert_eq!(
            customer("{{grossMargin}}"),
            [
                "1:1: uses 'grossMargin': a CUSTOMER template may not see internal data",
                "1:1: uses 'grossMargin', which is not in the payload schema",
            ]
        );
        let found = customer("{{quoteNumber.margin}}");
        assert_eq!(
            found,
            [
                "1:1: uses 'quoteNumber.margin': 'margin' is internal data, which a CUSTOMER template may not see",
                "1:1: uses 'quoteNumber.margin', which goes below the string field 'quoteNumber'",
            ]
        );
        for source in [
            "{{@root.margin}}",
            "{{#if margin}}{{/if}}",
            "{{#if (gt margin 3)}}{{/if}}",
            "{{#each items as |unitCost|}}{{unitCost}}{{/each}}",
            "{{#each items}}{{@root.riskScoreV2}}{{/each}}",
        ] {
            let found = customer(source);
            assert!(
                found.iter().any(|f| f.contains("internal data")),
                "{source}: {found:?}"
            );
        }
        // An internal template may see it.
        assert_eq!(internal("{{margin}}"), Vec::<String>::new());
        // A reviewed exception.
        let guard = NameGuard::new(vec![AllowedName {
            name: "shippingCost".into(),
            reason: "what the customer pays for shipping".into(),
            reviewed_by: "commercial-legal".into(),
        }])
        .unwrap();
        assert_eq!(
            findings("{{shippingCost}}", Some(&guard)),
            Vec::<String>::new()
        );
        refused(customer("{{shippingCost}}"), "internal data");
    }

    #[test]
    fn findings_name_the_line_and_column_of_their_tag() {
        let source = "Dear {{recipientName}},\n\
                      \n\
                      {{#if proposalLink}}\n\
                      Grüezi {{quoteNumber.margin}}\r\n\
                      {{else if (eq status \"x\")}}\n\
                      \x20 {{#each items}}{{this}}{{/each}}\n\
                      {{else if (lookup this \"y\")}}\n\
                      \x20   {{#if a}}{{else if b}}{{/if}}\n\
                      {{else}}\n\
                      \x20 {{> footer}}\n\
                      {{/if}} {{@index}}";
        assert_eq!(
            internal(source),
            [
                "4:8: uses 'quoteNumber.margin', which goes below the string field 'quoteNumber'",
                "7:1: uses the helper 'lookup': a dynamic key escapes the check; name the field instead",
                "8:5: uses 'a', which is not in the payload schema",
                "8:14: uses 'b', which is not in the payload schema",
                "10:3: uses the partial 'footer': partials are not allowed (their expressions escape this template's checks)",
                "11:9: uses '@index' outside the #each blocks it is in (0)",
            ]
        );
        // `{{else}}` chains of `{{^…}}` and with tildes, nested in an each.
        let source = "{{#each items}}\n{{#if this}}x{{~else  if  (gt count 1)~}}y{{^unless @root.nope}}z{{/if}}{{/each}}";
        assert_eq!(
            internal(source),
            [
                "2:14: uses 'count', which goes below the items of 'items' (strings); a payload field is '@root.count'",
                "2:43: uses '@root.nope': 'nope' is not in the payload schema",
            ]
        );
    }

    #[test]
    fn a_source_that_does_not_parse_is_one_finding_where_it_breaks() {
        let err = analyse("line\n  {{#if count}}\n{{/each}}", &schema(), None).unwrap_err();
        assert_eq!((err.line, err.column), (3, 1), "{err}");
        assert!(err.message.starts_with("does not parse"), "{err}");
        assert!(analyse("{{quoteNumber", &schema(), None).is_err());
        // Handlebars' grammar has no bare `.` (`this` is written `this`).
        assert!(analyse("{{#each items}}{{.}}{{/each}}", &schema(), None).is_err());
    }

    #[test]
    fn chain_tags_are_found_as_the_grammar_finds_them() {
        let source = "{{#if a}}{{else if b}}{{! {{else if c}} }}\\{{else if d}}{{{{raw}}}}{{else if e}}{{{{/raw}}}}{{^x}}{{else}}{{^}}{{else \"}}\" }}{{/if}}";
        let tags: Vec<Pos> = chain_tags(source)
            .into_iter()
            .map(|offset| line_col(source, offset))
            .collect();
        // `{{else "}}" }}` calls a helper named `else`: it is an expression, not a chain.
        assert_eq!(tags, [(1, 10), (1, 93)]);
        assert_eq!(line_col("a\r\nb\rc\nü", 9), (3, 2));
    }
}
