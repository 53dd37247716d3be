//! Who a template may reach and what it may receive: a family's audience as a whole, the
//! recipient's, and the origin of each payload field (`templates/fields.toml`).

use crate::ledger::RecipientType;

use super::{invalid, Audience, Origin, Template, TemplateError, TemplateRegistry};

impl TemplateRegistry {
    /// The audience of a family (all its versions share it); `None` for an unknown family.
    pub fn audience(&self, family: &str) -> Option<Audience> {
        self.templates
            .iter()
            .find(|t| t.meta.family == family)
            .map(|t| t.meta.audience)
    }

    /// The leak guard by origin: a CUSTOMER template receives only values that enter herald
    /// customer-visible (`fields.toml`). `origins` names each payload field's origin; a field
    /// the version's schema does not have never reaches it (the schema refuses it first).
    pub fn admit_origins(
        &self,
        template: &Template,
        origins: &[(&str, Origin<'_>)],
    ) -> Result<(), TemplateError> {
        match self.origin_problems(template, origins).into_iter().next() {
            Some((field, reason)) => Err(TemplateError::Origin {
                name: template.id(),
                field: field.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Every field of `origins` that `template` may not receive, and why: what
    /// [`TemplateRegistry::admit_origins`] refuses, all of it (for `herald check`).
    pub fn origin_problems<'o>(
        &self,
        template: &Template,
        origins: &[(&'o str, Origin<'_>)],
    ) -> Vec<(&'o str, String)> {
        if template.meta.audience != Audience::Customer {
            return Vec::new();
        }
        origins
            .iter()
            .filter(|(field, _)| template.meta.payload.contains_key(*field))
            .filter_map(|(field, origin)| {
                let verdict = match origin {
                    Origin::Rendered { family }
                        if self.audience(family) != Some(Audience::Customer) =>
                    {
                        Err(format!("{origin} is not a CUSTOMER family"))
                    }
                    _ => self.fields.customer_may_see(origin),
                };
                verdict.err().map(|reason| (*field, reason))
            })
            .collect()
    }

    /// Refuses a template whose audience the recipient may not get: an INTERNAL template never
    /// goes to a customer.
    pub fn admit_recipient(
        &self,
        template: &Template,
        recipient: RecipientType,
    ) -> Result<(), TemplateError> {
        if template.meta.audience == Audience::Internal
            && Audience::of_recipient(recipient) == Audience::Customer
        {
            return Err(TemplateError::Audience {
                name: template.id(),
                audience: template.meta.audience,
                recipient,
            });
        }
        Ok(())
    }
}

/// What holds for a family as a whole: one audience for all its versions.
pub(super) fn audience_problems(templates: &[Template]) -> Vec<TemplateError> {
    let mut problems = Vec::new();
    for (i, t) in templates.iter().enumerate() {
        if let Some(first) = templates[..i]
            .iter()
            .find(|o| o.meta.family == t.meta.family)
        {
            if first.meta.audience != t.meta.audience {
                problems.push(invalid(
                    &t.dir.join("template.toml"),
                    format!(
                        "audience {}: the family {} is {} ({}); a family is CUSTOMER or INTERNAL as a whole",
                        t.meta.audience,
                        t.meta.family,
                        first.meta.audience,
                        first.id()
                    ),
                ));
            }
        }
    }
    problems
}
