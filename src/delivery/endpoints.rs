//! Webhook subscriptions: a tenant's endpoints, the event types they receive, their signing
//! secrets (Standard Webhooks `whsec_…`, two valid during a rotation) and their health.
//!
//! Secrets are stored sealed under the keyring's current key (`crate::keyring`); rows written
//! before that keep their plaintext columns until [`encrypt_plaintext`] seals them (at start,
//! or `herald keys rotate`). Without a keyring no subscription can be created.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use sqlx::{PgPool, Row};

use crate::keyring::{stored_secret, KeyError, Keyring, Sealed};
use crate::ledger::{Channel, RecipientType, ResolvedRecipient, SubscriptionStatus};

use crate::policy::Resolution;

const SECRET_PREFIX: &str = "whsec_";

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("{0}")]
    Invalid(String),
    #[error("no webhook subscription '{0}'")]
    NotFound(String),
    #[error("webhook signing secrets: {0}")]
    Key(#[from] KeyError),
    #[error("ledger database unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

/// A subscription as the API shows it: never its secrets.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub subscription_id: String,
    pub tenant_id: String,
    pub endpoint_url: String,
    pub event_types: Vec<String>,
    pub status: SubscriptionStatus,
    pub disabled_reason: Option<String>,
    pub consecutive_failures: i32,
    pub circuit_open_until: Option<DateTime<Utc>>,
    /// At most this many messages a second to the endpoint, across all senders (None: no limit).
    #[serde(rename = "rateLimitPerSecond")]
    pub rate_limit_per_s: Option<i32>,
    pub created_at: DateTime<Utc>,
}

/// The secrets a message is signed with now.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    pub keys: Vec<Vec<u8>>,
    /// Why a stored secret could not be used (it does not open, or is no whsec_ secret).
    pub problem: Option<String>,
}

/// A new `whsec_` secret: 32 random bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The key bytes of a `whsec_` secret (24 to 64 bytes, base64).
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or("a signing secret starts with whsec_")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("a signing secret is whsec_ and base64: {e}"))?;
    if !(24..=64).contains(&bytes.len()) {
        return Err(format!(
            "a signing secret has 24 to 64 bytes, this one {}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

fn subscription(row: &sqlx::postgres::PgRow) -> Result<Subscription, sqlx::Error> {
    Ok(Subscription {
        subscription_id: row.get("subscription_id"),
        tenant_id: row.get("tenant_id"),
        endpoint_url: row.get("endpoint_url"),
        event_types: row.get("event_types"),
        status: row.try_get("status")?,
        disabled_reason: row.get("disabled_reason"),
        consecutive_failures: row.get("consecutive_failures"),
        circuit_open_until: row.get("circuit_open_until"),
        rate_limit_per_s: row.get("rate_limit_per_s"),
        created_at: row.get("created_at"),
    })
}

const COLUMNS: &str =
    "subscription_id, tenant_id, endpoint_url, event_types, status, disabled_reason,
     consecutive_failures, circuit_open_until, rate_limit_per_s, created_at";

/// The subscriptions' table, on the ledger's database, for the API and the intake (the
/// webhook adapter reads endpoints with the functions below, on the pool it was given).
#[derive(Clone)]
pub struct Endpoints {
    pool: PgPool,
    /// Seals the secrets of new and rotated subscriptions (None: none can be made).
    keyring: Option<Keyring>,
}

impl Endpoints {
    pub fn new(pool: PgPool, keyring: Option<Keyring>) -> Endpoints {
        Endpoints { pool, keyring }
    }

    /// The same table, sealing with `keyring`.
    pub fn with_keyring(self, keyring: Option<Keyring>) -> Endpoints {
        Endpoints { keyring, ..self }
    }

    fn seal(&self, secret: &str) -> Result<Sealed, SubscriptionError> {
        let keyring = self.keyring.as_ref().ok_or(KeyError::NoKeyring)?;
        Ok(keyring.seal(secret.as_bytes()))
    }

    /// Registers an endpoint (already checked by the SSRF guard); returns it with its secret,
    /// which is shown this once.
    pub async fn create(
        &self,
        tenant_id: &str,
        endpoint_url: &str,
        event_types: &[String],
        secret: Option<String>,
        rate_limit_per_s: Option<i32>,
    ) -> Result<(Subscription, String), SubscriptionError> {
        if rate_limit_per_s.is_some_and(|r| r < 1) {
            return Err(SubscriptionError::Invalid(
                "rateLimitPerSecond: at least 1 (or absent: no limit)".into(),
            ));
        }
        if event_types.is_empty() || event_types.iter().any(|t| t.trim().is_empty()) {
            return Err(SubscriptionError::Invalid(
                "eventTypes: at least one, none empty".into(),
            ));
        }
        let secret = secret.unwrap_or_else(generate_secret);
        secret_key(&secret).map_err(|e| SubscriptionError::Invalid(format!("secret: {e}")))?;
        let sealed = self.seal(&secret)?;
        let id = format!("ws_{}", uuid::Uuid::now_v7().simple());
        let row = sqlx::query(&format!(
            "INSERT INTO webhook_subscription (subscription_id, tenant_id, endpoint_url, event_types,
                 secret_key_id, secret_nonce, secret_ciphertext, rate_limit_per_s)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
        ))
        .bind(&id)
        .bind(tenant_id)
        .bind(endpoint_url)
        .bind(event_types)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(rate_limit_per_s)
        .fetch_one(&self.pool)
        .await?;
        Ok((subscription(&row)?, secret))
    }

    pub async fn get(&self, tenant_id: &str, id: &str) -> Result<Subscription, SubscriptionError> {
        one(
        &self.pool,
        &format!(
            "SELECT {COLUMNS} FROM webhook_subscription WHERE subscription_id = $1 AND tenant_id = $2"
        ),
        tenant_id,
        id,
    )
    .await
    }

    /// A new secret; the old one stays valid for `grace` (messages are signed with both).
    pub async fn rotate(
        &self,
        tenant_id: &str,
        id: &str,
        grace: std::time::Duration,
    ) -> Result<String, SubscriptionError> {
        let secret = generate_secret();
        let sealed = self.seal(&secret)?;
        let until = Utc::now() + chrono::Duration::from_std(grace).unwrap_or_default();
        // The current secret becomes the previous one in the form it is stored in (a row
        // written before secrets were sealed may still hold it in plaintext until it is sealed).
        let done = sqlx::query(
            "UPDATE webhook_subscription SET previous_secret = secret,
                 previous_secret_key_id = secret_key_id, previous_secret_nonce = secret_nonce,
                 previous_secret_ciphertext = secret_ciphertext, previous_secret_until = $3,
                 secret = NULL, secret_key_id = $4, secret_nonce = $5, secret_ciphertext = $6,
                 updated_at = now()
             WHERE subscription_id = $1 AND tenant_id = $2",
        )
        .bind(id)
        .bind(tenant_id)
        .bind(until)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(SubscriptionError::NotFound(id.into()));
        }
        Ok(secret)
    }

    /// Enables a disabled endpoint again and closes its circuit.
    pub async fn enable(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Subscription, SubscriptionError> {
        one(
            &self.pool,
            &format!(
                "UPDATE webhook_subscription SET status = 'ACTIVE', disabled_reason = NULL,
                 consecutive_failures = 0, circuit_open_until = NULL, updated_at = now()
             WHERE subscription_id = $1 AND tenant_id = $2 RETURNING {COLUMNS}"
            ),
            tenant_id,
            id,
        )
        .await
    }

    /// The tenant's active subscriptions to `event_type`, as recipients on the WEBHOOK channel
    /// (the address is the subscription id: the adapter reads the endpoint when it sends).
    pub async fn subscribers(
        &self,
        tenant_id: &str,
        event_type: &str,
    ) -> Result<Vec<Resolution>, sqlx::Error> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT subscription_id FROM webhook_subscription
         WHERE tenant_id = $1 AND status = 'ACTIVE' AND $2 = ANY(event_types)
         ORDER BY subscription_id",
        )
        .bind(tenant_id)
        .bind(event_type)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids
            .into_iter()
            .map(|id| Resolution::Resolved {
                recipient: ResolvedRecipient {
                    recipient_type: RecipientType::WebhookSubscription,
                    recipient_ref: subscription_ref(&id),
                    channel: Channel::Webhook,
                    address: Some(id),
                    locale: None,
                    timezone: None,
                    quiet_hours: None,
                    market: None,
                },
                display_name: None,
            })
            .collect())
    }
}

/// The subscription `sql` returns for `$1` = its id and `$2` = its tenant, or NotFound.
async fn one(
    pool: &PgPool,
    sql: &str,
    tenant_id: &str,
    id: &str,
) -> Result<Subscription, SubscriptionError> {
    sqlx::query(sql)
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(pool)
        .await?
        .map(|row| subscription(&row))
        .transpose()?
        .ok_or_else(|| SubscriptionError::NotFound(id.into()))
}

/// The recipient reference of a subscription.
pub fn subscription_ref(id: &str) -> String {
    format!("webhook:{id}")
}

/// What the adapter needs to send to a subscription.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub tenant_id: String,
    pub url: String,
    pub status: SubscriptionStatus,
    pub keys: SigningKeys,
    pub circuit_open_until: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub rate_limit_per_s: Option<i32>,
}

const SECRET_COLUMNS: &str = "secret, secret_key_id, secret_nonce, secret_ciphertext,
     previous_secret, previous_secret_key_id, previous_secret_nonce, previous_secret_ciphertext";

pub async fn endpoint(
    pool: &PgPool,
    keyring: Option<&Keyring>,
    id: &str,
) -> Result<Option<Endpoint>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT tenant_id, endpoint_url, status, {SECRET_COLUMNS}, previous_secret_until,
                circuit_open_until, consecutive_failures, rate_limit_per_s
         FROM webhook_subscription WHERE subscription_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        let now = Utc::now();
        let mut keys = Vec::new();
        let mut problem = None;
        let until: Option<DateTime<Utc>> = row.get("previous_secret_until");
        let previous_valid = until.is_some_and(|until| until > now);
        for (prefix, valid) in [("secret", true), ("previous_secret", previous_valid)] {
            let Some(stored) = stored_secret(&row, prefix)?.filter(|_| valid) else {
                continue;
            };
            match stored
                .reveal(keyring)
                .map_err(|e| e.to_string())
                .and_then(|secret| secret_key(&secret))
            {
                Ok(key) => keys.push(key),
                Err(e) => {
                    tracing::warn!(subscription = id, which = prefix, error = %e, "a signing secret cannot be used");
                    problem.get_or_insert(format!("{prefix}: {e}"));
                }
            }
        }
        Ok(Endpoint {
            tenant_id: row.get("tenant_id"),
            url: row.get("endpoint_url"),
            status: row.try_get("status")?,
            keys: SigningKeys { keys, problem },
            circuit_open_until: row.get("circuit_open_until"),
            consecutive_failures: row.get("consecutive_failures"),
            rate_limit_per_s: row.get("rate_limit_per_s"),
        })
    })
    .transpose()
}

/// Records how the endpoint answered: a success closes the circuit; a failure of the endpoint
/// (not of the message, and not while its circuit is open) counts towards opening it, and a
/// long run disables the endpoint.
/// A message's turn under its endpoint's rate limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    /// The slot is reserved: send after this wait.
    Reserved(std::time::Duration),
    /// The next free slot is further than the wait allowed: nothing reserved, try again then.
    TooFar(std::time::Duration),
}

/// Reserves the next slot of an endpoint limited to `per_s` messages a second (GCRA: one
/// atomic update, so senders across the fleet share the limit). A slot further than
/// `max_wait` is not reserved.
pub async fn reserve_slot(
    pool: &PgPool,
    id: &str,
    per_s: i32,
    max_wait: std::time::Duration,
) -> Result<Slot, sqlx::Error> {
    let (wait_ms, reserved): (f64, bool) = sqlx::query_as(
        "WITH cur AS (
             SELECT GREATEST(rate_next_at, clock_timestamp()) AS at, clock_timestamp() AS now
             FROM webhook_subscription WHERE subscription_id = $1 FOR UPDATE),
         reserved AS (
             UPDATE webhook_subscription s SET rate_next_at = cur.at + make_interval(secs => 1.0 / $2::int)
             FROM cur
             WHERE s.subscription_id = $1 AND cur.at <= cur.now + make_interval(secs => $3::double precision / 1000)
             RETURNING 1)
         SELECT (EXTRACT(EPOCH FROM (cur.at - cur.now)) * 1000)::float8, EXISTS (SELECT 1 FROM reserved)
         FROM cur",
    )
    .bind(id)
    .bind(per_s)
    .bind(max_wait.as_millis() as i64)
    .fetch_optional(pool)
    .await?
    .unwrap_or((0.0, true));
    let wait = std::time::Duration::from_secs_f64(wait_ms.max(0.0) / 1000.0);
    Ok(if reserved {
        Slot::Reserved(wait)
    } else {
        Slot::TooFar(wait)
    })
}

pub async fn record_health(
    pool: &PgPool,
    id: &str,
    healthy: bool,
    threshold: i32,
    cooldown: std::time::Duration,
    disable_after: i32,
) -> Result<(), sqlx::Error> {
    if healthy {
        sqlx::query(
            "UPDATE webhook_subscription SET consecutive_failures = 0, circuit_open_until = NULL
             WHERE subscription_id = $1 AND (consecutive_failures <> 0 OR circuit_open_until IS NOT NULL)",
        )
        .bind(id)
        .execute(pool)
        .await?;
    } else {
        sqlx::query(
            // Requests already in flight when the circuit opened fail too: they do not count, or
            // one burst would disable an endpoint that was down for a moment.
            "UPDATE webhook_subscription SET consecutive_failures = consecutive_failures + 1,
                 circuit_open_until = CASE WHEN consecutive_failures + 1 >= $2
                     THEN now() + make_interval(secs => $3) ELSE circuit_open_until END,
                 status = CASE WHEN consecutive_failures + 1 >= $4 THEN 'DISABLED' ELSE status END,
                 disabled_reason = CASE WHEN consecutive_failures + 1 >= $4
                     THEN format('%s failures in a row', consecutive_failures + 1) ELSE disabled_reason END,
                 updated_at = now()
             WHERE subscription_id = $1 AND (circuit_open_until IS NULL OR circuit_open_until <= now())",
        )
        .bind(id)
        .bind(threshold)
        .bind(cooldown.as_secs_f64())
        .bind(disable_after)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Disables an endpoint that said it is gone (HTTP 410).
pub async fn disable(pool: &PgPool, id: &str, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_subscription SET status = 'DISABLED', disabled_reason = $2, updated_at = now()
         WHERE subscription_id = $1",
    )
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_whsec_base64_of_enough_bytes() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(secret_key(&secret).unwrap().len(), 32);
        assert!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(secret_key("whsec_not*base64").is_err());
        assert!(
            secret_key("whsec_c2hvcnQ=").is_err(),
            "5 bytes is too short"
        );
    }
}
