//! A tenant's policy as an administrator sets it: whether it communicates at all, its quiet
//! hours and time zone (`tenant_policy`), and the domains it never sends to (`blocked_domain`).
//! The preference checks read both (`preferences::load_facts`); entries of tenant `*` are
//! global and not a tenant's to change.

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use sqlx::{PgPool, Row};

/// The tenant of the global entries.
const GLOBAL_TENANT: &str = "*";

/// The longest domain name (RFC 1035).
pub const MAX_DOMAIN_CHARS: usize = 253;

/// A tenant's policy; a tenant without a row has the defaults (communicating, no quiet
/// hours, UTC) and no `updated_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantPolicy {
    pub communications_enabled: bool,
    /// Quiet hours (start, end) in `timezone`, both or neither.
    pub quiet: Option<(NaiveTime, NaiveTime)>,
    pub timezone: Tz,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A domain the tenant does not send to.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockedDomain {
    pub domain: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Why a domain is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("a domain has no blanks or control characters")]
    Blank,
    #[error("a domain has a dot, and no empty label")]
    Shape,
    #[error("a domain has at most {MAX_DOMAIN_CHARS} characters")]
    TooLong,
}

/// A domain as the policy check compares it: lower-cased as it lower-cases an address's
/// domain (ASCII), with a dot, no empty label, no blanks or control characters, no `@` or `/`,
/// at most 253 characters.
pub fn domain(text: &str) -> Result<String, DomainError> {
    if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DomainError::Blank);
    }
    if text.chars().count() > MAX_DOMAIN_CHARS {
        return Err(DomainError::TooLong);
    }
    if !text.contains('.') || text.split('.').any(str::is_empty) || text.contains(['@', '/']) {
        return Err(DomainError::Shape);
    }
    Ok(text.to_ascii_lowercase())
}

/// Unknown time zones written before validation read as UTC, as the policy check reads them.
fn zone(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
}

pub(super) async fn get(pool: &PgPool, tenant_id: &str) -> Result<TenantPolicy, sqlx::Error> {
    let row = sqlx::query(
        "SELECT communications_enabled, quiet_start, quiet_end, timezone, updated_at
         FROM tenant_policy WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => TenantPolicy {
            communications_enabled: true,
            quiet: None,
            timezone: Tz::UTC,
            updated_at: None,
        },
        Some(row) => TenantPolicy {
            communications_enabled: row.get("communications_enabled"),
            quiet: match (row.get("quiet_start"), row.get("quiet_end")) {
                (Some(start), Some(end)) => Some((start, end)),
                _ => None,
            },
            timezone: zone(row.get("timezone")),
            updated_at: Some(row.get("updated_at")),
        },
    })
}

pub(super) async fn put(
    pool: &PgPool,
    tenant_id: &str,
    communications_enabled: bool,
    quiet: Option<(NaiveTime, NaiveTime)>,
    timezone: Tz,
) -> Result<TenantPolicy, sqlx::Error> {
    debug_assert_ne!(tenant_id, GLOBAL_TENANT);
    let updated_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO tenant_policy (tenant_id, communications_enabled, quiet_start, quiet_end, timezone, updated_at)
         VALUES ($1, $2, $3, $4, $5, now())
         ON CONFLICT (tenant_id) DO UPDATE SET communications_enabled = EXCLUDED.communications_enabled,
             quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end,
             timezone = EXCLUDED.timezone, updated_at = now()
         RETURNING updated_at",
    )
    .bind(tenant_id)
    .bind(communications_enabled)
    .bind(quiet.map(|q| q.0))
    .bind(quiet.map(|q| q.1))
    .bind(timezone.name())
    .fetch_one(pool)
    .await?;
    Ok(TenantPolicy {
        communications_enabled,
        quiet,
        timezone,
        updated_at: Some(updated_at),
    })
}

fn blocked(row: &sqlx::postgres::PgRow) -> BlockedDomain {
    BlockedDomain {
        domain: row.get("domain"),
        reason: row.get("reason"),
        created_at: row.get("created_at"),
    }
}

/// The tenant's own blocked domains, by name.
pub(super) async fn blocked_domains(
    pool: &PgPool,
    tenant_id: &str,
) -> Result<Vec<BlockedDomain>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT domain, reason, created_at FROM blocked_domain WHERE tenant_id = $1 ORDER BY domain",
    )
    .bind(tenant_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(blocked).collect())
}

/// Blocks a (checked) domain, or gives the block its new reason: the block, and whether it is
/// new.
pub(super) async fn block(
    pool: &PgPool,
    tenant_id: &str,
    domain: &str,
    reason: Option<&str>,
) -> Result<(BlockedDomain, bool), sqlx::Error> {
    debug_assert_ne!(tenant_id, GLOBAL_TENANT);
    let row = sqlx::query(
        "INSERT INTO blocked_domain (tenant_id, domain, reason) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, domain) DO UPDATE SET reason = EXCLUDED.reason
         RETURNING domain, reason, created_at, (xmax = 0) AS inserted",
    )
    .bind(tenant_id)
    .bind(domain)
    .bind(reason)
    .fetch_one(pool)
    .await?;
    Ok((blocked(&row), row.get("inserted")))
}

/// Unblocks the tenant's own block of a domain: false when it has none.
pub(super) async fn unblock(
    pool: &PgPool,
    tenant_id: &str,
    domain: &str,
) -> Result<bool, sqlx::Error> {
    if tenant_id == GLOBAL_TENANT {
        return Ok(false);
    }
    let deleted = sqlx::query("DELETE FROM blocked_domain WHERE tenant_id = $1 AND domain = $2")
        .bind(tenant_id)
        .bind(domain)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lower_cased_and_checked() {
        assert_eq!(domain("Spam.Example").as_deref(), Ok("spam.example"));
        assert_eq!(domain("a.b.c").as_deref(), Ok("a.b.c"));
        assert_eq!(domain(""), Err(DomainError::Blank));
        assert_eq!(domain("spam .example"), Err(DomainError::Blank));
        assert_eq!(domain("spam.example\n"), Err(DomainError::Blank));
        assert_eq!(domain("localhost"), Err(DomainError::Shape));
        assert_eq!(domain(".example"), Err(DomainError::Shape));
        assert_eq!(domain("a..example"), Err(DomainError::Shape));
        assert_eq!(domain("x@spam.example"), Err(DomainError::Shape));
        let long = format!("{}.example", "a".repeat(246));
        assert_eq!(long.len(), 254);
        assert_eq!(domain(&long), Err(DomainError::TooLong));
        assert!(domain(&long[1..]).is_ok());
    }
}
