//! The leak guard's vocabulary: which payload fields are internal data a customer template
//! may never see, which fields a template's source uses, and how a note a user typed is made
//! harmless before a template shows it.

/// Internal data a customer template may never see, recognised by fragments of its name rather
/// than by a list of spellings: a name is internal when its normalised form (lower case, letters
/// and digits only, digits read as the letters they stand in for: `gross_Margin-EUR` →
/// `grossmargineur`, `c0st` → `cost`) contains every fragment of one entry. Prefixes, suffixes,
/// units, currencies and numbers (`grossMargin`, `marginPct`, `margin_eur`, `unitCost2`, `costUSD`,
/// `riskScoreV2`) therefore change nothing.
///
/// Each line is a kind of internal data and the variants an auditor tries next. A customer-facing
/// name caught by a fragment (a `shippingCost` the customer pays) is a reviewed exception in
/// `templates/fields.toml`, never a shorter list here.
pub const INTERNAL_PATTERNS: &[&[&str]] = &[
    // Margins and their kin: gross/net margin, profit, mark-up; `Marge` (German, French, Dutch).
    &["margin"],
    &["marge"],
    &["profit"],
    &["markup"],
    &["commissionrate"],
    &["commissionamount"],
    &["commissionpct"],
    &["commissionpercent"],
    &["salescommission"],
    // German: contribution margin, trade margin.
    &["deckungsbeitrag"],
    &["handelsspanne"],
    // Costs: unit cost, cost basis, cost of goods sold, what the company pays its suppliers;
    // `Kosten`, `Einkaufspreis` (German).
    &["cost"],
    &["cogs"],
    &["kosten"],
    &["purchaseprice"],
    &["supplierprice"],
    &["einkaufspreis"],
    &["einkaufswert"],
    // Risk scores: risk, fraud and credit scores; `Risiko` (German).
    &["risk"],
    &["risiko"],
    &["fraud"],
    &["creditscore"],
    &["creditrating"],
    // Approval reasons: why a quote was approved or escalated, whatever the word order
    // (`approvalReasonText`, `reasonForApproval`, `approverComment`).
    &["approv", "reason"],
    &["approv", "comment"],
    &["approv", "note"],
    &["approv", "rationale"],
    &["approv", "justif"],
    &["approv", "remark"],
    // Discount thresholds and limits (`maxDiscountThreshold`, `discountLimitPct`, `maxDiscount`).
    &["discount", "threshold"],
    &["discount", "limit"],
    &["discount", "max"],
    &["discount", "ceiling"],
    &["discount", "authority"],
    // `Rabatt` (German): its thresholds and limits.
    &["rabatt", "schwelle"],
    &["rabatt", "grenze"],
    &["rabatt", "limit"],
    &["rabatt", "max"],
    // Floor prices: the lowest price sales may go to (`floorPriceNet`, `priceFloor`, `minPrice`).
    &["floor", "price"],
    &["minprice"],
    &["minimumprice"],
    &["walkaway"],
    &["bottomprice"],
    &["reserveprice"],
    &["mindestpreis"],
    // Internal notes and anything called internal or confidential (`internal_comment`,
    // `myInternalNote`).
    &["internal"],
    &["confidential"],
    &["vertraulich"],
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
    /// A guard with reviewed exceptions, each checked: an ASCII identifier the guard would
    /// refuse (an exception for anything else means nothing), listed once, with a reason and a
    /// reviewer. The error lists every bad entry.
    pub fn new(allowed: Vec<AllowedName>) -> Result<NameGuard, String> {
        let mut problems = Vec::new();
        for (i, entry) in allowed.iter().enumerate() {
            let name = &entry.name;
            if !is_identifier(name) {
                problems.push(format!(
                    "allow '{name}': the name must be an ASCII identifier ([A-Za-z_][A-Za-z0-9_]*)"
                ));
            } else if !is_internal_field(name) {
                problems.push(format!(
                    "allow '{name}': the guard does not refuse this name, so it needs no exception"
                ));
            }
            if allowed[..i].iter().any(|other| &other.name == name) {
                problems.push(format!("allow '{name}': listed twice"));
            }
            if entry.reason.trim().is_empty() {
                problems.push(format!(
                    "allow '{name}': the reason is empty (say why it is not internal data)"
                ));
            }
            if entry.reviewed_by.trim().is_empty() {
                problems.push(format!(
                    "allow '{name}': reviewed_by is empty (name who reviewed it)"
                ));
            }
        }
        if problems.is_empty() {
            Ok(NameGuard { allowed })
        } else {
            Err(problems.join("; "))
        }
    }

    /// Whether `name` is internal data, unless allowed (by its exact name).
    pub fn is_internal(&self, name: &str) -> bool {
        is_internal_field(name) && !self.allowed.iter().any(|a| a.name == name)
    }

    pub fn allowed(&self) -> &[AllowedName] {
        &self.allowed
    }
}

/// Whether a field name is internal data (`grossMargin`, `cost_basis`, `approval-reason`,
/// `myInternalNote` …): see [`INTERNAL_PATTERNS`]. A name that is not ASCII is internal: the
/// fragments cannot read it (a Cyrillic `а` in `mаrgin`), and no field may have one
/// ([`is_identifier`]).
pub fn is_internal_field(name: &str) -> bool {
    if !name.is_ascii() {
        return true;
    }
    // Digits read as the letters they stand in for; `1` stands for `i` or `l`, `9` and `6` for
    // `g`: both readings are tried.
    let reading = |one: char| -> String {
        name.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| match c.to_ascii_lowercase() {
                '0' => 'o',
                '1' => one,
                '3' => 'e',
                '4' => 'a',
                '5' => 's',
                '6' | '9' => 'g',
                '7' => 't',
                '8' => 'b',
                c => c,
            })
            .collect()
    };
    // Letters that pass for others: `l` for `i` (`marglnPct`), `rn` for `m` (`rnargin`).
    let lookalikes = reading('i').replace('l', "i").replace("rn", "m");
    [reading('i'), reading('l'), lookalikes]
        .iter()
        .any(|normalised| {
            INTERNAL_PATTERNS
                .iter()
                .any(|fragments| fragments.iter().all(|f| normalised.contains(f)))
        })
}

/// Whether `name` may name a payload field or a segment of a template's path: an ASCII
/// identifier, `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The spellings an auditor tried, and the next ones.
    const INTERNAL: &[&str] = &[
        "margin",
        "grossMargin",
        "marginPct",
        "margin_eur",
        "MarginPercent",
        "Marge",
        "profitEur",
        "markupRate",
        "costBasis",
        "cost_basis",
        "unitCost2",
        "costUSD",
        "COGS",
        "selbstKosten",
        "c0st",
        "marg1n",
        "RiskScore",
        "riskScoreV2",
        "fraudScore",
        "creditScoreBand",
        "risikoKlasse",
        "approval-reason",
        "approvalReasonText",
        "reasonForApproval",
        "approverComment",
        "approvalNotes",
        "approvalRationale",
        "discountThreshold",
        "maxDiscountThreshold",
        "discountLimitPct",
        "maxDiscount",
        "floorPriceNet",
        "priceFloor",
        "minPrice",
        "internalNote",
        "internal_comment",
        "myInternalNote",
        "internalPriceNote",
        "confidentialRemark",
        // The reviewer's next tries: supplier and purchase prices, German terms, commissions,
        // the lowest price, `1` for `l` and `9` for `g`.
        "purchasePrice",
        "supplierPrice",
        "einkaufspreis",
        "deckungsbeitrag",
        "handelsspanne",
        "maxRabatt",
        "rabattSchwelle",
        "commissionRate",
        "bottomPrice",
        "reservePrice",
        "vertraulich",
        "mar9in",
        "f1oorPrice",
        "marglnPct",
        "rnargin",
    ];

    /// What customer templates are made of.
    const ORDINARY: &[&str] = &[
        "quoteNumber",
        "customerDisplayName",
        "validUntilDisplay",
        "recipientName",
        "orderNumber",
        "status",
        "items",
        "count",
        "revisionNo",
        "documentReference",
        "proposalLink",
        "linkValidUntil",
        "attachmentName",
        "messageNote",
        "quoteId",
        "customerId",
        "acceptedAt",
        "discount",
        "totalPrice",
        "internationalShipping",
        "accountNumber",
        "billingAddress",
        "deliveryDate",
        "orderTotal",
        "unitPrice",
        "salesContact",
        "einkaufsdatum",
        "decommissionDate",
        "deliveryMilestone",
        "billingEmail",
    ];

    #[test]
    fn internal_fields_are_recognised_by_fragments_whatever_their_spelling() {
        for name in INTERNAL {
            assert!(is_internal_field(name), "{name} should be internal");
        }
        for name in ORDINARY {
            assert!(!is_internal_field(name), "{name} should not be internal");
        }
    }

    #[test]
    fn names_that_are_not_ascii_are_internal_and_not_identifiers() {
        // A Cyrillic а (U+0430) in place of the Latin a.
        let disguised = "m\u{0430}rgin";
        assert!(is_internal_field(disguised));
        assert!(!is_identifier(disguised));
        assert!(is_internal_field("quoteNumbér"));
        for name in ["quoteNumber", "_x", "a1", "Q"] {
            assert!(is_identifier(name), "{name}");
        }
        for name in ["", "1a", "a-b", "a.b", "a b", "a$", "quoteNumbér"] {
            assert!(!is_identifier(name), "{name}");
        }
    }

    fn allow(name: &str, reason: &str, reviewed_by: &str) -> AllowedName {
        AllowedName {
            name: name.into(),
            reason: reason.into(),
            reviewed_by: reviewed_by.into(),
        }
    }

    #[test]
    fn a_reviewed_exception_allows_exactly_its_name() {
        let guard = NameGuard::new(vec![allow(
            "shippingCost",
            "the shipping cost the customer pays",
            "commercial-legal",
        )])
        .unwrap();
        assert!(!guard.is_internal("shippingCost"));
        assert!(guard.is_internal("shippingcost"), "exact name only");
        assert!(guard.is_internal("shippingCostInternal"));
        assert!(guard.is_internal("unitCost"));
        assert!(!guard.is_internal("quoteNumber"));
        assert_eq!(guard.allowed().len(), 1);
        assert!(NameGuard::default().is_internal("shippingCost"));
    }

    #[test]
    fn exceptions_without_a_reason_or_a_reviewer_are_refused() {
        let err = NameGuard::new(vec![allow("shippingCost", " ", "legal")]).unwrap_err();
        assert!(
            err.contains("'shippingCost'") && err.contains("reason is empty"),
            "{err}"
        );
        let err =
            NameGuard::new(vec![allow("shippingCost", "paid by the customer", "")]).unwrap_err();
        assert!(err.contains("reviewed_by is empty"), "{err}");
        let err = NameGuard::new(vec![allow("m\u{0430}rgin", "r", "x")]).unwrap_err();
        assert!(err.contains("ASCII identifier"), "{err}");
        let err = NameGuard::new(vec![allow("quoteNumber", "r", "x")]).unwrap_err();
        assert!(err.contains("needs no exception"), "{err}");
        let twice = allow("shippingCost", "r", "x");
        let err = NameGuard::new(vec![twice.clone(), twice]).unwrap_err();
        assert!(err.contains("listed twice"), "{err}");
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
