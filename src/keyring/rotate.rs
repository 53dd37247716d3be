//! `herald keys rotate`: every stored ciphertext moved under the keyring's current key, in
//! batches of rows locked while they are re-sealed: webhook signing secrets (plaintext ones of
//! rows written before secrets were sealed included), retained bodies, inbox bodies, the kept
//! inputs of resends. Rows under the current key already are left alone, so a second run
//! changes nothing; a row that does not open stops the run, naming it (what was moved before
//! stays moved).
//!
//! The tables are the ledger's and the delivery's; this is the one place outside them that
//! writes their ciphertext columns, and it writes nothing else.

use sqlx::{PgPool, Postgres, Row, Transaction};

use super::{stored_secret, KeyError, Keyring, Sealed, StoredSecret};

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("{what} cannot be opened: {source}")]
    Open {
        what: String,
        #[source]
        source: KeyError,
    },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a run moved to the current key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotated {
    /// Webhook signing secrets (a subscription's current and previous one count apart).
    pub webhook_secrets: u64,
    /// Retained bodies of communications.
    pub bodies: u64,
    /// Bodies of inbox notifications.
    pub inbox_bodies: u64,
    /// Inputs kept for resends (payload and address of an ended delivery).
    pub resend_inputs: u64,
}

/// `herald keys rotate`: the keyring of the settings, on the settings' database; returns the
/// current key id and what moved.
pub async fn rotate_configured(
    settings: &crate::config::Settings,
    batch: i64,
) -> Result<(String, Rotated), RotateError> {
    let keyring = super::Keys::from_settings(settings)?
        .ring
        .ok_or(KeyError::NoKeyring)?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&settings.database_url)
        .await?;
    let rotated = rotate(&pool, &keyring, batch).await?;
    pool.close().await;
    Ok((keyring.current_id().to_string(), rotated))
}

/// Moves every stored ciphertext under the current key, `batch` rows per transaction.
pub async fn rotate(pool: &PgPool, keyring: &Keyring, batch: i64) -> Result<Rotated, RotateError> {
    Ok(Rotated {
        webhook_secrets: webhook_secrets(pool, keyring, batch, false).await?,
        bodies: bodies(pool, keyring, batch, Body::Content).await?,
        inbox_bodies: bodies(pool, keyring, batch, Body::Inbox).await?,
        resend_inputs: bodies(pool, keyring, batch, Body::ResendInput).await?,
    })
}

/// Seals the webhook signing secrets still stored in plaintext (rows written before secrets
/// were sealed); herald does this when it starts with a keyring. Returns how many.
pub async fn seal_plaintext_secrets(
    pool: &PgPool,
    keyring: &Keyring,
    batch: i64,
) -> Result<u64, RotateError> {
    webhook_secrets(pool, keyring, batch, true).await
}

/// Subscriptions whose secrets are in plaintext or sealed under another key than the current
/// one (`only_plaintext`: only the former).
async fn webhook_secrets(
    pool: &PgPool,
    keyring: &Keyring,
    batch: i64,
    only_plaintext: bool,
) -> Result<u64, RotateError> {
    let mut moved = 0;
    loop {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(
            "SELECT subscription_id, secret, secret_key_id, secret_nonce, secret_ciphertext,
                    previous_secret, previous_secret_key_id, previous_secret_nonce, previous_secret_ciphertext
             FROM webhook_subscription
             WHERE secret IS NOT NULL OR previous_secret IS NOT NULL
                OR (NOT $1 AND (secret_key_id <> $2 OR previous_secret_key_id <> $2))
             ORDER BY subscription_id LIMIT $3 FOR UPDATE",
        )
        .bind(only_plaintext)
        .bind(keyring.current_id())
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(moved);
        }
        for row in &rows {
            let id: String = row.get("subscription_id");
            for prefix in ["secret", "previous_secret"] {
                let Some(stored) = stored_secret(row, prefix)? else {
                    continue;
                };
                let open = |source| RotateError::Open {
                    what: format!(
                        "the {} of webhook subscription {id}",
                        prefix.replace('_', " ")
                    ),
                    source,
                };
                let sealed = match &stored {
                    StoredSecret::Plain(secret) => keyring.seal(secret.as_bytes()),
                    StoredSecret::Sealed(_) if only_plaintext => continue,
                    StoredSecret::Sealed(sealed) => match keyring.reseal(sealed).map_err(open)? {
                        Some(resealed) => resealed,
                        None => continue,
                    },
                };
                store_secret(&mut tx, &id, prefix, &sealed).await?;
                moved += 1;
            }
        }
        tx.commit().await?;
    }
}

async fn store_secret(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    prefix: &str,
    sealed: &Sealed,
) -> Result<(), sqlx::Error> {
    // `prefix` is one of two constants, never input.
    sqlx::query(&format!(
        "UPDATE webhook_subscription SET {prefix} = NULL, {prefix}_key_id = $2,
             {prefix}_nonce = $3, {prefix}_ciphertext = $4
         WHERE subscription_id = $1"
    ))
    .bind(id)
    .bind(&sealed.key_id)
    .bind(&sealed.nonce)
    .bind(&sealed.ciphertext)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The tables of sealed bodies.
#[derive(Clone, Copy)]
enum Body {
    Content,
    Inbox,
    ResendInput,
}

impl Body {
    /// The select of a batch under another key, and the update of one row (`$1` its id).
    fn statements(self) -> (&'static str, &'static str) {
        match self {
            Body::Content => (
                "SELECT communication_id AS id, key_id, nonce, ciphertext FROM communication_content
                 WHERE key_id <> $1 ORDER BY communication_id LIMIT $2 FOR UPDATE",
                "UPDATE communication_content SET key_id = $2, nonce = $3, ciphertext = $4
                 WHERE communication_id = $1",
            ),
            Body::Inbox => (
                "SELECT notification_id AS id, body_key_id AS key_id, body_nonce AS nonce,
                        body_ciphertext AS ciphertext
                 FROM inbox_notification WHERE body_key_id <> $1
                 ORDER BY notification_id LIMIT $2 FOR UPDATE",
                "UPDATE inbox_notification SET body_key_id = $2, body_nonce = $3, body_ciphertext = $4
                 WHERE notification_id = $1",
            ),
            Body::ResendInput => (
                // Expired rows are the sweeper's to delete, not to re-seal (their key may be gone).
                "SELECT communication_id AS id, key_id, nonce, ciphertext FROM resend_input
                 WHERE key_id <> $1 AND kept_until > now() ORDER BY communication_id LIMIT $2 FOR UPDATE",
                "UPDATE resend_input SET key_id = $2, nonce = $3, ciphertext = $4
                 WHERE communication_id = $1",
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Body::Content => "the retained body of communication",
            Body::Inbox => "the body of inbox notification",
            Body::ResendInput => "the resend inputs of communication",
        }
    }
}

async fn bodies(
    pool: &PgPool,
    keyring: &Keyring,
    batch: i64,
    table: Body,
) -> Result<u64, RotateError> {
    let (select, update) = table.statements();
    let mut moved = 0;
    loop {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(select)
            .bind(keyring.current_id())
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            return Ok(moved);
        }
        for row in &rows {
            let id: uuid::Uuid = row.get("id");
            let sealed = Sealed {
                key_id: row.get("key_id"),
                nonce: row.get("nonce"),
                ciphertext: row.get("ciphertext"),
            };
            let Some(resealed) = keyring
                .reseal(&sealed)
                .map_err(|source| RotateError::Open {
                    what: format!("{} {id}", table.name()),
                    source,
                })?
            else {
                continue;
            };
            sqlx::query(update)
                .bind(id)
                .bind(&resealed.key_id)
                .bind(&resealed.nonce)
                .bind(&resealed.ciphertext)
                .execute(&mut *tx)
                .await?;
            moved += 1;
        }
        tx.commit().await?;
    }
}
