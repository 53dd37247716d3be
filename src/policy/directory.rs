//! herald's directory: the contacts of each tenant and the recipients' preferences, with what
//! the preference checks read beside them (tenant policy, suppression list, blocked domains,
//! maintenance windows). The intake reads it; the API writes contacts, preferences and the
//! tenant's policy (`tenant`).

use chrono::{DateTime, NaiveTime, Utc};
use sqlx::PgPool;

use crate::ledger::{Channel, MessageCategory, ResolvedRecipient};

use super::preferences::{load_facts, PolicyFacts};
use super::recipients::contact_email;
use super::tenant::{self, BlockedDomain, TenantPolicy};
use super::Resolution;

/// The directory's tables, on the ledger's database.
#[derive(Clone)]
pub struct Directory {
    pool: PgPool,
}

/// A contact as the directory keeps it.
#[derive(Debug, Clone)]
pub struct Contact<'a> {
    pub contact_id: &'a str,
    pub display_name: &'a str,
    pub email: Option<&'a str>,
    pub locale: Option<&'a str>,
    /// The contact's market (`DE`, `CH`), for template versions made for one.
    pub market: Option<&'a str>,
    pub timezone: Option<&'a str>,
    pub active: bool,
    /// Quiet hours (start, end), both or neither.
    pub quiet: (Option<NaiveTime>, Option<NaiveTime>),
}

impl Directory {
    pub fn new(pool: PgPool) -> Directory {
        Directory { pool }
    }

    /// A contact of the tenant, as a recipient by email (or why it cannot be one).
    pub async fn contact_email(
        &self,
        tenant_id: &str,
        contact_id: &str,
        locale: Option<&str>,
    ) -> Result<Resolution, sqlx::Error> {
        contact_email(&self.pool, tenant_id, contact_id, locale).await
    }

    /// What the preference checks need to know about a recipient.
    pub async fn facts(
        &self,
        tenant_id: &str,
        recipient: &ResolvedRecipient,
        category: MessageCategory,
        now: DateTime<Utc>,
    ) -> Result<PolicyFacts, sqlx::Error> {
        load_facts(&self.pool, tenant_id, recipient, category, now).await
    }

    /// Writes contacts of a tenant, all or none (one transaction).
    pub async fn upsert_contacts(
        &self,
        tenant_id: &str,
        contacts: &[Contact<'_>],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for contact in contacts {
            sqlx::query(
                "INSERT INTO contact (tenant_id, contact_id, display_name, email, locale, timezone, active, quiet_start, quiet_end, market, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
                 ON CONFLICT (tenant_id, contact_id) DO UPDATE SET display_name = EXCLUDED.display_name, email = EXCLUDED.email,
                     locale = EXCLUDED.locale, timezone = EXCLUDED.timezone, active = EXCLUDED.active,
                     quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end, market = EXCLUDED.market, updated_at = now()",
            )
            .bind(tenant_id)
            .bind(contact.contact_id)
            .bind(contact.display_name.trim())
            .bind(contact.email.map(str::trim))
            .bind(contact.locale)
            .bind(contact.timezone)
            .bind(contact.active)
            .bind(contact.quiet.0)
            .bind(contact.quiet.1)
            .bind(contact.market)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// A recipient's opt-in or opt-out of a category on a channel.
    pub async fn set_preference(
        &self,
        tenant_id: &str,
        recipient_ref: &str,
        category: MessageCategory,
        channel: Channel,
        opted_in: bool,
        source: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO recipient_preference (tenant_id, recipient_ref, category, channel, opted_in, source, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, now())
             ON CONFLICT (tenant_id, recipient_ref, category, channel) DO UPDATE SET opted_in = EXCLUDED.opted_in,
                 source = EXCLUDED.source, updated_at = now()",
        )
        .bind(tenant_id)
        .bind(recipient_ref)
        .bind(category)
        .bind(channel)
        .bind(opted_in)
        .bind(source)
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    /// The tenant's policy (the defaults when it has set none).
    pub async fn tenant_policy(&self, tenant_id: &str) -> Result<TenantPolicy, sqlx::Error> {
        tenant::get(&self.pool, tenant_id).await
    }

    /// Sets the tenant's policy: communicating or not, quiet hours (both or neither) in a zone.
    pub async fn set_tenant_policy(
        &self,
        tenant_id: &str,
        communications_enabled: bool,
        quiet: Option<(NaiveTime, NaiveTime)>,
        timezone: chrono_tz::Tz,
    ) -> Result<TenantPolicy, sqlx::Error> {
        tenant::put(
            &self.pool,
            tenant_id,
            communications_enabled,
            quiet,
            timezone,
        )
        .await
    }

    /// The tenant's own blocked domains, by name.
    pub async fn blocked_domains(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<BlockedDomain>, sqlx::Error> {
        tenant::blocked_domains(&self.pool, tenant_id).await
    }

    /// Blocks a domain checked by [`tenant::domain`] (or gives its block a new reason): the
    /// block, and whether it is new.
    pub async fn block_domain(
        &self,
        tenant_id: &str,
        domain: &str,
        reason: Option<&str>,
    ) -> Result<(BlockedDomain, bool), sqlx::Error> {
        tenant::block(&self.pool, tenant_id, domain, reason).await
    }

    /// Unblocks the tenant's own block of a domain: false when it has none.
    pub async fn unblock_domain(&self, tenant_id: &str, domain: &str) -> Result<bool, sqlx::Error> {
        tenant::unblock(&self.pool, tenant_id, domain).await
    }
}
