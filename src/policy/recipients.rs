//! Recipient resolution. A recipient that cannot be reached is a business status with a
//! reason code, never an error of the worker.

use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::keyring::RefKey;
use crate::ledger::{Channel, RecipientType, ResolvedRecipient};

/// What resolution found.
#[derive(Debug, Clone)]
pub enum Resolution {
    Resolved {
        recipient: ResolvedRecipient,
        display_name: Option<String>,
    },
    /// Cannot be delivered: FAILED_FINAL with this reason code.
    Failed {
        recipient_type: RecipientType,
        recipient_ref: String,
        code: &'static str,
        message: String,
    },
    /// Policy says no: SUPPRESSED with this reason code.
    Suppressed {
        recipient_type: RecipientType,
        recipient_ref: String,
        code: &'static str,
        message: String,
    },
}

impl Resolution {
    /// Who the recipient is (a contact, an address, an engine user …), resolved or not.
    pub fn recipient_type(&self) -> RecipientType {
        match self {
            Resolution::Resolved { recipient, .. } => recipient.recipient_type,
            Resolution::Failed { recipient_type, .. }
            | Resolution::Suppressed { recipient_type, .. } => *recipient_type,
        }
    }

    pub fn recipient_ref(&self) -> &str {
        match self {
            Resolution::Resolved { recipient, .. } => &recipient.recipient_ref,
            Resolution::Failed { recipient_ref, .. }
            | Resolution::Suppressed { recipient_ref, .. } => recipient_ref,
        }
    }

    /// The same recipient under another reference (the one an earlier record carries).
    pub fn with_recipient_ref(mut self, reference: String) -> Resolution {
        match &mut self {
            Resolution::Resolved { recipient, .. } => recipient.recipient_ref = reference,
            Resolution::Failed { recipient_ref, .. }
            | Resolution::Suppressed { recipient_ref, .. } => *recipient_ref = reference,
        }
        self
    }
}

/// sha256 of the normalised address: for dedupe, search and suppression without the address.
pub fn hash_address(address: &str) -> String {
    hex::encode(Sha256::digest(
        address.trim().to_ascii_lowercase().as_bytes(),
    ))
}

/// The recipient reference of an address given explicitly: `address:<HMAC-SHA256 of the
/// normalised address>` under the key of `HERALD_KEYS__RECIPIENT_REF` (without the key, the
/// reference cannot be guessed from the address); the one place this format is made.
pub fn address_ref(key: &RefKey, address: &str) -> String {
    format!(
        "address:{}",
        key.mac_hex(address.trim().to_ascii_lowercase().as_bytes())
    )
}

/// The reference explicit addresses had before it was keyed (`address:<first 16 hex of the
/// address's sha256>`): records made then keep it, and a request for the same communication
/// finds them by it (`Intake::keep_earlier_ref`). Never made for a new record.
pub fn earlier_address_ref(address: &str) -> String {
    format!("address:{}", &hash_address(address)[..16])
}

/// `j***@example.com`: enough for an operator to recognise, never the address itself.
pub fn mask_address(address: &str) -> String {
    match address.trim().rsplit_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// Masks every email address in a text (provider answers often quote the recipient).
pub fn redact_addresses(text: &str) -> String {
    text.split_inclusive(|c: char| {
        c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '"' | '\'')
    })
    .map(|piece| {
        let trimmed = piece.trim_end_matches(|c: char| {
            c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | ',' | ';' | '"' | '\'')
        });
        if trimmed.contains('@') && trimmed.len() > 2 {
            format!("{}{}", mask_address(trimmed), &piece[trimmed.len()..])
        } else {
            piece.to_string()
        }
    })
    .collect()
}

pub(crate) fn valid_email(address: &str) -> Result<(), String> {
    address
        .trim()
        .parse::<lettre::Address>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// An address given explicitly in the process variables.
pub fn explicit_email(key: &RefKey, address: &str, locale: Option<&str>) -> Resolution {
    let address = address.trim();
    let recipient_ref = address_ref(key, address);
    if let Err(reason) = valid_email(address) {
        return Resolution::Failed {
            recipient_type: RecipientType::Address,
            recipient_ref,
            code: "INVALID_ADDRESS",
            message: format!("the explicit recipient is not a valid email address ({reason})"),
        };
    }
    Resolution::Resolved {
        recipient: ResolvedRecipient {
            recipient_type: RecipientType::Address,
            recipient_ref,
            channel: Channel::Email,
            address: Some(address.to_string()),
            locale: locale.map(str::to_string),
            timezone: None,
            quiet_hours: None,
            market: None,
        },
        display_name: None,
    }
}

/// A contact of herald's directory, within the tenant.
pub async fn contact_email(
    pool: &PgPool,
    tenant_id: &str,
    contact_id: &str,
    locale: Option<&str>,
) -> Result<Resolution, sqlx::Error> {
    type ContactRow = (
        String,
        Option<String>,
        Option<String>,
        bool,
        Option<String>,
        Option<chrono::NaiveTime>,
        Option<chrono::NaiveTime>,
        Option<String>,
    );
    let row: Option<ContactRow> = sqlx::query_as(
        "SELECT display_name, email, locale, active, timezone, quiet_start, quiet_end, market
         FROM contact WHERE tenant_id = $1 AND contact_id = $2",
    )
    .bind(tenant_id)
    .bind(contact_id)
    .fetch_optional(pool)
    .await?;
    let recipient_ref = contact_id.to_string();
    let failed = |code, message: String| Resolution::Failed {
        recipient_type: RecipientType::Contact,
        recipient_ref: recipient_ref.clone(),
        code,
        message,
    };
    let Some((
        display_name,
        email,
        contact_locale,
        active,
        timezone,
        quiet_start,
        quiet_end,
        market,
    )) = row
    else {
        return Ok(failed(
            "RECIPIENT_NOT_FOUND",
            format!("no contact '{contact_id}' in tenant '{tenant_id}'"),
        ));
    };
    if !active {
        return Ok(Resolution::Suppressed {
            recipient_type: RecipientType::Contact,
            recipient_ref,
            code: "RECIPIENT_INACTIVE",
            message: format!("contact '{contact_id}' is inactive"),
        });
    }
    let Some(email) = email.filter(|e| !e.trim().is_empty()) else {
        return Ok(failed(
            "NO_VALID_ADDRESS",
            format!("contact '{contact_id}' has no email address"),
        ));
    };
    if let Err(reason) = valid_email(&email) {
        return Ok(failed(
            "INVALID_ADDRESS",
            format!("contact '{contact_id}' has an invalid email address ({reason})"),
        ));
    }
    Ok(Resolution::Resolved {
        recipient: ResolvedRecipient {
            recipient_type: RecipientType::Contact,
            recipient_ref,
            channel: Channel::Email,
            address: Some(email.trim().to_string()),
            locale: locale.map(str::to_string).or(contact_locale),
            timezone,
            quiet_hours: quiet_start.zip(quiet_end),
            market,
        },
        display_name: Some(display_name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_addresses_inside_provider_answers() {
        assert_eq!(
            redact_addresses("550 5.1.1 <nobody@customer.example>: recipient rejected"),
            "550 5.1.1 <n***@customer.example>: recipient rejected"
        );
        assert_eq!(redact_addresses("no address here"), "no address here");
        assert_eq!(
            redact_addresses("to a@b.example, c@d.example"),
            "to a***@b.example, c***@d.example"
        );
    }

    #[test]
    fn masks_and_hashes_addresses() {
        assert_eq!(mask_address("jane.doe@example.com"), "j***@example.com");
        assert_eq!(mask_address("nonsense"), "***");
        assert_eq!(
            hash_address(" Jane@Example.com "),
            hash_address("jane@example.com")
        );
        assert_eq!(hash_address("a@b.c").len(), 64);
    }

    fn key(byte: &str) -> RefKey {
        RefKey::from_setting(Some(&byte.repeat(32)))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn explicit_addresses_are_validated_and_never_become_the_ref() {
        match explicit_email(&key("ab"), "jane@example.com", Some("de")) {
            Resolution::Resolved { recipient, .. } => {
                assert!(recipient.recipient_ref.starts_with("address:"));
                assert!(!recipient.recipient_ref.contains('@'));
                assert_eq!(recipient.locale.as_deref(), Some("de"));
            }
            other => panic!("{other:?}"),
        }
        match explicit_email(&key("ab"), "not an address", None) {
            Resolution::Failed { code, .. } => assert_eq!(code, "INVALID_ADDRESS"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_explicit_address_ref_is_a_keyed_mac_of_the_normalised_address() {
        let reference = address_ref(&key("ab"), " Jane@Example.com ");
        assert_eq!(reference, address_ref(&key("ab"), "jane@example.com"));
        assert_eq!(reference.len(), "address:".len() + 64);
        assert_ne!(reference, address_ref(&key("cd"), "jane@example.com"));
        // Not the unkeyed hash anyone could compute from the address.
        let unkeyed = hash_address("jane@example.com");
        assert!(!reference.contains(&unkeyed) && !reference.contains(&unkeyed[..16]));
        assert_eq!(
            earlier_address_ref("Jane@Example.com"),
            format!("address:{}", &unkeyed[..16])
        );
        let failed = explicit_email(&key("ab"), "nope", None);
        assert_eq!(
            failed
                .with_recipient_ref("address:0123456789abcdef".into())
                .recipient_ref(),
            "address:0123456789abcdef"
        );
    }
}
