use super::positions::{chain_tags, line_col};
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
        internal("{{#each items}}{{#each ../lines}}{{this}} {{@../index}}{{/each}}{{/each}}").len(),
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
