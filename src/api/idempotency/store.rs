//! The keys of the idempotency layer in PostgreSQL (`api_idempotency`,
//! `migrations/20261202000020_api_idempotency.sql`): a claim that concurrent requests race
//! for in one statement, the lease a running request renews, its stored response or its
//! release, and the purge of expired keys.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use sqlx::PgPool;
use tracing::instrument::WithSubscriber;
use uuid::Uuid;

use super::{Fingerprint, Scope, REPLAYED_HEADER};

/// How often (at most) one herald purges the expired keys.
const PURGE_EVERY: Duration = Duration::from_secs(600);
/// How many expired keys one purge deletes at most.
const PURGE_BATCH: i64 = 1000;

/// The state of a key, as the table's CHECK constraint lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyState {
    /// Its first request runs now (or its herald crashed: see the lease).
    InFlight,
    /// Its first request ran; the response is stored.
    Done,
}

impl KeyState {
    const ALL: [KeyState; 2] = [KeyState::InFlight, KeyState::Done];

    fn as_str(self) -> &'static str {
        match self {
            KeyState::InFlight => "IN_FLIGHT",
            KeyState::Done => "DONE",
        }
    }

    fn parse(text: &str) -> Result<KeyState, IdempotencyError> {
        KeyState::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| IdempotencyError::Corrupt(format!("unknown state '{text}'")))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("idempotency store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("idempotency store: a stored key is unreadable: {0}")]
    Corrupt(String),
}

/// A response as stored, and replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoredResponse {
    pub(super) status: StatusCode,
    pub(super) content_type: Option<HeaderValue>,
    pub(super) body: Bytes,
}

impl StoredResponse {
    pub(super) fn replay(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if let Some(content_type) = self.content_type {
            headers.insert(header::CONTENT_TYPE, content_type);
        }
        headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        response
    }
}

/// What a request found for its key.
pub(super) enum Claim {
    /// The request holds the key now: a new key, an expired one, or one whose lease ran out.
    Taken { claim_id: Uuid, reused: bool },
    /// Another request holds the key, or ran with it.
    Held {
        fingerprint: Fingerprint,
        state: KeyState,
        response: Option<StoredResponse>,
    },
    /// The key vanished between two looks (its request failed and released it): look again.
    Gone,
}

/// A row of `api_idempotency`, as a claim reads it.
#[derive(sqlx::FromRow)]
struct KeyRow {
    fingerprint: Vec<u8>,
    state: String,
    response_status: Option<i16>,
    response_content_type: Option<String>,
    response_body: Option<Vec<u8>>,
    response_key_id: Option<String>,
    response_nonce: Option<Vec<u8>>,
}

/// The keys, in PostgreSQL; cheap to clone.
#[derive(Clone)]
pub struct IdempotencyStore {
    pool: PgPool,
    ttl: Duration,
    pub(super) lease: Duration,
    pub(super) body_limit: usize,
    /// When this herald last purged expired keys (Unix seconds).
    last_purge: Arc<AtomicI64>,
    /// Seals the stored answers (they may carry a secret shown once); none: kept as they are
    /// (then no answer carries one: webhook subscriptions need the keyring).
    keyring: Option<crate::keyring::Keyring>,
}

impl IdempotencyStore {
    /// How long a key is kept by default.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
    /// How long a request holds its key without renewing the lease, by default.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
    /// The largest request body read by default (beyond it: 413).
    pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

    /// Keys kept for `ttl`; a request holds its key for `lease` past its last renewal.
    pub fn new(pool: PgPool, ttl: Duration, lease: Duration) -> IdempotencyStore {
        IdempotencyStore {
            pool,
            ttl,
            lease,
            body_limit: IdempotencyStore::DEFAULT_BODY_LIMIT,
            last_purge: Arc::new(AtomicI64::new(0)),
            keyring: None,
        }
    }

    /// Seals the stored answers with `keyring` (the current key; older ones open theirs).
    pub fn with_keyring(mut self, keyring: Option<crate::keyring::Keyring>) -> IdempotencyStore {
        self.keyring = keyring;
        self
    }

    /// Reads request bodies up to `bytes` (beyond: 413).
    pub fn with_body_limit(mut self, bytes: usize) -> IdempotencyStore {
        self.body_limit = bytes;
        self
    }

    pub(super) async fn claim(
        &self,
        scope: &Scope,
        key: &str,
        fingerprint: &Fingerprint,
    ) -> Result<Claim, IdempotencyError> {
        let claim_id = Uuid::new_v4();
        // One statement, so that concurrent requests race in PostgreSQL: a new key is inserted,
        // an expired one or (for the same request) one whose lease ran out is taken over, and a
        // live one is left alone. `xmax <> 0` tells a row updated by the upsert.
        let taken: Option<bool> = sqlx::query_scalar(
            "INSERT INTO api_idempotency AS k (tenant_id, idempotency_key, fingerprint, state, claim_id,
                 lease_until, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), now(),
                 now() + make_interval(secs => $7))
             ON CONFLICT (tenant_id, idempotency_key) DO UPDATE
             SET fingerprint = EXCLUDED.fingerprint, state = EXCLUDED.state, claim_id = EXCLUDED.claim_id,
                 lease_until = EXCLUDED.lease_until, created_at = EXCLUDED.created_at,
                 expires_at = EXCLUDED.expires_at, response_status = NULL,
                 response_content_type = NULL, response_body = NULL
             WHERE k.expires_at <= now()
                OR (k.state = $4 AND k.lease_until <= now() AND k.fingerprint = EXCLUDED.fingerprint)
             RETURNING k.xmax <> 0",
        )
        .bind(&scope.tenant)
        .bind(key)
        .bind(fingerprint.0.as_slice())
        .bind(KeyState::InFlight.as_str())
        .bind(claim_id)
        .bind(self.lease.as_secs_f64())
        .bind(self.ttl.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(reused) = taken {
            return Ok(Claim::Taken { claim_id, reused });
        }
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT fingerprint, state, response_status, response_content_type, response_body,
                    response_key_id, response_nonce
                 FROM api_idempotency
                 WHERE tenant_id = $1 AND idempotency_key = $2 AND expires_at > now()",
        )
        .bind(&scope.tenant)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(KeyRow {
            fingerprint: stored,
            state,
            response_status: status,
            response_content_type: content_type,
            response_body: body,
            response_key_id: key_id,
            response_nonce: nonce,
        }) = row
        else {
            return Ok(Claim::Gone);
        };
        let fingerprint =
            Fingerprint(stored.try_into().map_err(|_| {
                IdempotencyError::Corrupt("a fingerprint of the wrong size".into())
            })?);
        let state = KeyState::parse(&state)?;
        let body = match (body, key_id, nonce) {
            (Some(ciphertext), Some(key_id), Some(nonce)) => {
                let keyring = self.keyring.as_ref().ok_or_else(|| {
                    IdempotencyError::Corrupt("a sealed answer, and no keyring to open it".into())
                })?;
                let sealed = crate::keyring::Sealed {
                    key_id,
                    nonce,
                    ciphertext,
                };
                let plain = keyring
                    .open(&sealed)
                    .map_err(|e| IdempotencyError::Corrupt(format!("a sealed answer: {e}")))?;
                Some(secrecy::ExposeSecret::expose_secret(&plain).to_vec())
            }
            (body, None, None) => body,
            _ => {
                return Err(IdempotencyError::Corrupt(
                    "a sealed answer without its key id or nonce".into(),
                ))
            }
        };
        let response = match (state, status, body) {
            (KeyState::Done, Some(status), Some(body)) => Some(StoredResponse {
                status: u16::try_from(status)
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .ok_or_else(|| IdempotencyError::Corrupt(format!("status {status}")))?,
                content_type: content_type
                    .map(|c| HeaderValue::try_from(c.as_str()))
                    .transpose()
                    .map_err(|_| IdempotencyError::Corrupt("a content type".into()))?,
                body: Bytes::from(body),
            }),
            (KeyState::InFlight, None, None) => None,
            _ => {
                return Err(IdempotencyError::Corrupt(format!(
                    "a {} key with{} a response",
                    state.as_str(),
                    if state == KeyState::Done { "out" } else { "" }
                )))
            }
        };
        Ok(Claim::Held {
            fingerprint,
            state,
            response,
        })
    }

    /// Extends the lease of the request holding `claim_id`; false when it no longer holds it.
    pub(super) async fn renew(
        &self,
        scope: &Scope,
        key: &str,
        claim_id: Uuid,
    ) -> Result<bool, sqlx::Error> {
        let renewed = sqlx::query(
            "UPDATE api_idempotency SET lease_until = now() + make_interval(secs => $4)
             WHERE tenant_id = $1 AND idempotency_key = $2 AND claim_id = $3",
        )
        .bind(&scope.tenant)
        .bind(key)
        .bind(claim_id)
        .bind(self.lease.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Stores the response of the request holding `claim_id`; false when it no longer holds it.
    pub(super) async fn store(
        &self,
        scope: &Scope,
        key: &str,
        claim_id: Uuid,
        response: &StoredResponse,
    ) -> Result<bool, sqlx::Error> {
        let sealed = self.keyring.as_ref().map(|k| k.seal(&response.body));
        let (body, key_id, nonce) = match &sealed {
            Some(sealed) => (
                sealed.ciphertext.as_slice(),
                Some(sealed.key_id.as_str()),
                Some(sealed.nonce.as_slice()),
            ),
            None => (response.body.as_ref(), None, None),
        };
        let stored = sqlx::query(
            "UPDATE api_idempotency SET state = $4, claim_id = NULL, lease_until = NULL,
                 response_status = $5, response_content_type = $6, response_body = $7,
                 response_key_id = $8, response_nonce = $9
             WHERE tenant_id = $1 AND idempotency_key = $2 AND claim_id = $3",
        )
        .bind(&scope.tenant)
        .bind(key)
        .bind(claim_id)
        .bind(KeyState::Done.as_str())
        .bind(response.status.as_u16() as i16)
        .bind(response.content_type.as_ref().and_then(|c| c.to_str().ok()))
        .bind(body)
        .bind(key_id)
        .bind(nonce)
        .execute(&self.pool)
        .await?;
        Ok(stored.rows_affected() == 1)
    }

    /// Gives the key of the request holding `claim_id` back: the client may retry with it.
    pub(super) async fn release(
        &self,
        scope: &Scope,
        key: &str,
        claim_id: Uuid,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "DELETE FROM api_idempotency
             WHERE tenant_id = $1 AND idempotency_key = $2 AND claim_id = $3",
        )
        .bind(&scope.tenant)
        .bind(key)
        .bind(claim_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes expired keys (a batch at most); how many.
    pub async fn purge_expired(&self) -> Result<u64, sqlx::Error> {
        let purged = sqlx::query(
            "DELETE FROM api_idempotency WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM api_idempotency WHERE expires_at <= now() LIMIT $1))",
        )
        .bind(PURGE_BATCH)
        .execute(&self.pool)
        .await?;
        Ok(purged.rows_affected())
    }

    /// Purges expired keys in the background, at most once per [`PURGE_EVERY`] per herald.
    pub(super) fn purge_now_and_then(&self) {
        let now = chrono::Utc::now().timestamp();
        let last = self.last_purge.load(Ordering::Relaxed);
        if now - last < PURGE_EVERY.as_secs() as i64
            || self
                .last_purge
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let store = self.clone();
        tokio::spawn(
            async move {
                match store.purge_expired().await {
                    Ok(0) => {}
                    Ok(purged) => tracing::debug!(purged, "expired idempotency keys purged"),
                    Err(err) => {
                        tracing::warn!(error = %err, "purging expired idempotency keys failed")
                    }
                }
            }
            .with_current_subscriber(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_checks_the_states_this_module_knows() {
        let migration = include_str!("../../../migrations/20261202000020_api_idempotency.sql");
        let states: Vec<String> = KeyState::ALL
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        assert!(
            migration.contains(&format!("CHECK (state IN ({}))", states.join(", "))),
            "the CHECK of api_idempotency.state lists {states:?}"
        );
        for state in KeyState::ALL {
            assert_eq!(KeyState::parse(state.as_str()).unwrap(), state);
        }
        assert!(KeyState::parse("PENDING").is_err());
    }
}
