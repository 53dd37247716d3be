//! Which version herald uses: the approved, not withdrawn version effective at a time for a
//! locale (`de-AT` → `de` → `en`) and a market, the steps that led to it, and every version that
//! can still be selected.

use chrono::{DateTime, Utc};

use super::{Template, TemplateError, TemplateRegistry};

impl TemplateRegistry {
    /// The approved, not withdrawn version of `family` effective at `at`, for `locale`
    /// (falling back from the most specific locale to the language, then English: `de-AT` →
    /// `de` → `en`) and `market` (a version for the market wins over one for all markets).
    pub fn resolve(
        &self,
        family: &str,
        locale: Option<&str>,
        market: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<&Template, TemplateError> {
        self.explain(family, locale, market, at).0
    }

    /// [`TemplateRegistry::resolve`], with the steps it took: each locale and market it tried,
    /// in order, and what it found (`herald templates resolve`).
    pub fn explain(
        &self,
        family: &str,
        locale: Option<&str>,
        market: Option<&str>,
        at: DateTime<Utc>,
    ) -> (Result<&Template, TemplateError>, Vec<String>) {
        let requested = locale.unwrap_or("en");
        let mut steps = Vec::new();
        for candidate in locale_chain(requested) {
            let effective = |t: &&Template| {
                t.meta.family == family
                    && t.meta.locale.eq_ignore_ascii_case(&candidate)
                    && self.in_force(t)
                    && t.meta.effective_from <= at
            };
            let markets: Vec<Option<&str>> = match market {
                Some(m) => vec![Some(m), None],
                None => vec![None],
            };
            for wanted in markets {
                let found = self
                    .templates
                    .iter()
                    .filter(effective)
                    .filter(|t| same_market(t.meta.market.as_deref(), wanted))
                    .max_by_key(|t| t.meta.effective_from);
                let place = match wanted {
                    Some(m) => format!("locale '{candidate}', market '{m}'"),
                    None => format!("locale '{candidate}', all markets"),
                };
                match found {
                    Some(t) => {
                        let next = self
                            .templates
                            .iter()
                            .filter(|n| {
                                n.meta.family == family
                                    && n.meta.locale.eq_ignore_ascii_case(&candidate)
                                    && same_market(n.meta.market.as_deref(), wanted)
                                    && self.in_force(n)
                                    && n.meta.effective_from > at
                            })
                            .min_by_key(|n| n.meta.effective_from)
                            .map(|n| {
                                format!(
                                    "; {} takes over from {}",
                                    n.id(),
                                    n.meta.effective_from.to_rfc3339()
                                )
                            })
                            .unwrap_or_default();
                        steps.push(format!(
                            "{place}: {} (effective from {}, approved by {}){next}",
                            t.id(),
                            t.meta.effective_from.to_rfc3339(),
                            t.meta.approved_by.as_deref().unwrap_or("?")
                        ));
                        return (Ok(t), steps);
                    }
                    None => {
                        let later: Vec<String> = self
                            .templates
                            .iter()
                            .filter(|t| {
                                t.meta.family == family
                                    && t.meta.locale.eq_ignore_ascii_case(&candidate)
                                    && same_market(t.meta.market.as_deref(), wanted)
                            })
                            .map(|t| {
                                if self.withdrawn.contains_key(&t.id()) {
                                    format!("{} is withdrawn", t.id())
                                } else if !t.is_approved() {
                                    format!("{} is not approved", t.id())
                                } else {
                                    format!(
                                        "{} is effective only from {}",
                                        t.id(),
                                        t.meta.effective_from.to_rfc3339()
                                    )
                                }
                            })
                            .collect();
                        steps.push(if later.is_empty() {
                            format!("{place}: no version")
                        } else {
                            format!("{place}: none effective ({})", later.join("; "))
                        });
                    }
                }
            }
        }
        (
            Err(TemplateError::NotFound {
                family: family.into(),
                locale: requested.into(),
                at,
            }),
            steps,
        )
    }

    /// Every version of `family` that herald may select at `now` or later: for each locale and
    /// market, the approved version effective at `now` and every approved version that becomes
    /// effective after it. Superseded versions are no longer selectable.
    pub fn selectable(&self, family: &str, now: DateTime<Utc>) -> Vec<&Template> {
        let approved: Vec<&Template> = self
            .templates
            .iter()
            .filter(|t| t.meta.family == family && self.in_force(t))
            .collect();
        approved
            .iter()
            .copied()
            .filter(|t| {
                t.meta.effective_from > now
                    || !approved.iter().any(|later| {
                        later.meta.locale.eq_ignore_ascii_case(&t.meta.locale)
                            && same_market(later.meta.market.as_deref(), t.meta.market.as_deref())
                            && later.meta.effective_from > t.meta.effective_from
                            && later.meta.effective_from <= now
                    })
            })
            .collect()
    }
}

/// Markets are compared as locales are: `ch` is `CH`.
pub(super) fn same_market(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (None, None) => true,
        _ => false,
    }
}

fn locale_chain(locale: &str) -> Vec<String> {
    let mut chain = vec![locale.to_string()];
    if let Some((language, _)) = locale.split_once(['-', '_']) {
        chain.push(language.to_string());
    }
    if !chain.iter().any(|l| l.eq_ignore_ascii_case("en")) {
        chain.push("en".into());
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_falls_back_to_language_then_english() {
        assert_eq!(locale_chain("de-AT"), vec!["de-AT", "de", "en"]);
        assert_eq!(locale_chain("en"), vec!["en"]);
        assert_eq!(locale_chain("fr"), vec!["fr", "en"]);
    }
}
