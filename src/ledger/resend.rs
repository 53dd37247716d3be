//! What a resend starts from: the original record as the intake needs it to make a new one
//! (its kind, subject, recipient, template, the documents it carries), and its content: the
//! delivery job's while it holds it, else the inputs kept for resends. A job's render payload
//! and raw address are erased once the communication reaches a final state (only a webhook's
//! payload is kept, for replay); in the same transaction they are kept here, sealed together
//! with the keyring, for `delivery.resend_window` (table `resend_input`), then swept away.
//! Neither is ever logged or put into an error.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, Row};

use super::{
    Channel, ClaimedJob, Classification, CommunicationId, CommunicationStatus, Ledger, LedgerError,
    RecipientType, Subject,
};
use crate::keyring::{KeyError, Keyring, Sealed};

/// What a resend needs of a job that ended, as it is kept (sealed as one JSON document).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResendInputs {
    pub payload: Value,
    pub address: Option<String>,
}

/// Never prints the payload or the address.
impl std::fmt::Debug for ResendInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResendInputs(…)")
    }
}

impl ResendInputs {
    /// The inputs sealed under the ring's current key.
    pub(crate) fn seal(&self, keyring: &Keyring) -> Sealed {
        let plain = secrecy::SecretSlice::from(
            serde_json::to_vec(self).expect("a JSON value and a string serialise"),
        );
        keyring.seal(plain.expose_secret())
    }

    /// Kept inputs, opened (one that opens but does not read is damaged data).
    pub(crate) fn open(keyring: &Keyring, sealed: &Sealed) -> Result<ResendInputs, KeyError> {
        let plain = keyring.open(sealed)?;
        serde_json::from_slice(plain.expose_secret())
            .map_err(|_| KeyError::Decrypt(sealed.key_id.clone()))
    }
}

/// Whether the end of `job`'s attempt leaves inputs to keep for a resend: the job is done (no
/// retry due), it is not a webhook's (a webhook keeps its payload and is replayed, not
/// resent), it had a payload, and the window keeps anything.
pub(crate) fn keeps_inputs(job: &ClaimedJob, retry_due: bool, window: Duration) -> bool {
    !retry_due
        && job.channel != Channel::Webhook
        && !job.render_payload.is_null()
        && !window.is_zero()
}

/// Writes, in the caller's transaction, the sealed inputs of `jobs` (whose attempts just ended
/// them), each kept for `window` from now.
pub(super) async fn keep_inputs(
    conn: &mut PgConnection,
    keyring: &Keyring,
    window: Duration,
    jobs: &[&ClaimedJob],
) -> Result<(), LedgerError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(jobs.len());
    let mut key_ids = Vec::with_capacity(jobs.len());
    let mut nonces = Vec::with_capacity(jobs.len());
    let mut ciphertexts = Vec::with_capacity(jobs.len());
    for job in jobs {
        let sealed = ResendInputs {
            payload: job.render_payload.clone(),
            address: job.recipient_address.clone(),
        }
        .seal(keyring);
        ids.push(job.communication_id.0);
        key_ids.push(sealed.key_id);
        nonces.push(sealed.nonce);
        ciphertexts.push(sealed.ciphertext);
    }
    sqlx::query(
        "INSERT INTO resend_input (communication_id, key_id, nonce, ciphertext, kept_until)
         SELECT i.communication_id, i.key_id, i.nonce, i.ciphertext,
                now() + make_interval(secs => $5::double precision)
         FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::bytea[])
             AS i(communication_id, key_id, nonce, ciphertext)
         ON CONFLICT (communication_id) DO UPDATE SET key_id = EXCLUDED.key_id,
             nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext,
             kept_until = EXCLUDED.kept_until",
    )
    .bind(&ids)
    .bind(&key_ids)
    .bind(&nonces)
    .bind(&ciphertexts)
    .bind(window.as_secs_f64())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The original of a resend (its `Debug` leaves out the payload and the address).
#[derive(Clone)]
pub struct ResendSource {
    pub id: CommunicationId,
    pub class: Classification,
    pub status: CommunicationStatus,
    pub channel: Channel,
    pub is_parent: bool,
    pub subject: Subject,
    pub recipient_type: RecipientType,
    pub recipient_ref: String,
    pub template_family: String,
    pub template_version: String,
    pub rule_ref: Option<String>,
    pub correlation_id: String,
    pub priority: Option<i32>,
    /// The render payload, while the delivery job holds it or its kept inputs do.
    pub payload: Option<Value>,
    /// The raw address, while the delivery job holds it or its kept inputs do.
    pub address: Option<String>,
    pub locale: Option<String>,
    /// The files the job attaches (empty for a portal link).
    pub attachments: Vec<crate::artifacts::AttachmentRef>,
    /// (artifact id, role) of the documents it carries.
    pub artifacts: Vec<(String, String)>,
}

impl std::fmt::Debug for ResendSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResendSource")
            .field("id", &self.id)
            .field("class", &self.class)
            .field("status", &self.status)
            .field("channel", &self.channel)
            .field("recipient_type", &self.recipient_type)
            .field("recipient_ref", &self.recipient_ref)
            .field("template_family", &self.template_family)
            .field("template_version", &self.template_version)
            .field("artifacts", &self.artifacts)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Deletes kept resend inputs whose window has passed, `batch` at most (the oldest first;
    /// rows another sweeper holds are skipped); how many.
    pub async fn purge_expired_resend_inputs(&self, batch: i64) -> Result<u64, LedgerError> {
        let purged = sqlx::query(
            "DELETE FROM resend_input WHERE communication_id IN (
                 SELECT communication_id FROM resend_input WHERE kept_until <= now()
                 ORDER BY kept_until LIMIT $1 FOR UPDATE SKIP LOCKED)",
        )
        .bind(batch)
        .execute(&self.pool)
        .await?;
        Ok(purged.rows_affected())
    }

    /// The tenant's communication `id` as a resend starts from it; another tenant's is `None`,
    /// as one that does not exist.
    pub async fn resend_source(
        &self,
        tenant_id: &str,
        id: CommunicationId,
    ) -> Result<Option<ResendSource>, LedgerError> {
        let Some(row) = sqlx::query(
            "SELECT r.*, j.render_payload, j.recipient_address, j.locale, j.priority,
                    COALESCE(j.attachments, '[]'::jsonb) AS job_attachments,
                    k.key_id AS kept_key_id, k.nonce AS kept_nonce, k.ciphertext AS kept_ciphertext
             FROM communication_record r LEFT JOIN delivery_job j USING (communication_id)
                  LEFT JOIN resend_input k
                      ON k.communication_id = r.communication_id AND k.kept_until > now()
             WHERE r.communication_id = $1 AND r.tenant_id = $2",
        )
        .bind(id.0)
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let artifacts = sqlx::query(
            "SELECT artifact_id, artifact_role FROM communication_artifact_link
             WHERE communication_id = $1 ORDER BY artifact_id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.get("artifact_id"), r.get("artifact_role")))
        .collect();
        let attachments =
            serde_json::from_value(row.get::<Value, _>("job_attachments")).map_err(|_| {
                LedgerError::Unreadable {
                    id,
                    what: "delivery job's attachments",
                }
            })?;
        let (payload, address) = match row.get::<Option<Value>, _>("render_payload") {
            Some(payload) => (Some(payload), row.get("recipient_address")),
            None => match row.get::<Option<String>, _>("kept_key_id") {
                Some(key_id) => {
                    let sealed = Sealed {
                        key_id,
                        nonce: row.get("kept_nonce"),
                        ciphertext: row.get("kept_ciphertext"),
                    };
                    let keyring = self.keyring.as_ref().ok_or(KeyError::NoKeyring)?;
                    let kept = ResendInputs::open(keyring, &sealed)?;
                    (Some(kept.payload), kept.address)
                }
                None => (None, None),
            },
        };
        Ok(Some(ResendSource {
            id,
            class: Classification {
                communication_type: row.try_get("communication_type")?,
                category: row.try_get("message_category")?,
            },
            status: row.try_get("status")?,
            channel: row.try_get("channel")?,
            is_parent: row.get("is_parent"),
            subject: Subject::new(
                row.get::<String, _>("subject_type"),
                row.get::<String, _>("subject_id"),
            )
            .of(row.get("quote_id"), row.get("order_id")),
            recipient_type: row.try_get("recipient_type")?,
            recipient_ref: row.get("recipient_ref"),
            template_family: row.get("template_family"),
            template_version: row.get("template_version"),
            rule_ref: row.get("rule_ref"),
            correlation_id: row.get("correlation_id"),
            priority: row.get("priority"),
            payload,
            address,
            locale: row.get("locale"),
            attachments,
            artifacts,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::CommunicationType;

    fn ring(spec: &str) -> Keyring {
        Keyring::from_settings(Some(spec), None).unwrap().unwrap()
    }

    fn job(channel: Channel, payload: Value) -> ClaimedJob {
        ClaimedJob {
            communication_id: CommunicationId(uuid::Uuid::now_v7()),
            tenant_id: "acme".into(),
            attempt_no: 1,
            channel,
            communication_type: CommunicationType::OrderConfirmation,
            recipient_address: Some("kim@customer.example".into()),
            address_masked: Some("k***@customer.example".into()),
            render_payload: payload,
            locale: None,
            template_family: "order-confirmation-email".into(),
            template_version: "2026.11.0".into(),
            correlation_id: "c".into(),
            business_key: None,
            attachments: Vec::new(),
            requested_at: chrono::Utc::now(),
            origin_id: CommunicationId(uuid::Uuid::now_v7()),
        }
    }

    #[test]
    fn kept_inputs_are_sealed_whole_and_open_only_with_their_key() {
        let key = ring(&format!("k1:{}", "ab".repeat(32)));
        let inputs = ResendInputs {
            payload: serde_json::json!({"orderNumber": "ON-1", "recipientName": "Kim"}),
            address: Some("kim@customer.example".into()),
        };
        let sealed = inputs.seal(&key);
        assert_eq!(sealed.key_id, "k1");
        let text = String::from_utf8_lossy(&sealed.ciphertext);
        for plain in ["kim@customer.example", "ON-1", "Kim"] {
            assert!(!text.contains(plain), "{plain}");
        }
        assert_eq!(ResendInputs::open(&key, &sealed).unwrap(), inputs);
        assert_eq!(format!("{inputs:?}"), "ResendInputs(…)");
        let other = ring(&format!("k1:{}", "cd".repeat(32)));
        assert_eq!(
            ResendInputs::open(&other, &sealed),
            Err(KeyError::Decrypt("k1".into()))
        );
        // Ciphertext that opens but is not what herald sealed is damaged data.
        let foreign = key.seal(b"{\"payload\": 1, \"extra\": true}");
        assert_eq!(
            ResendInputs::open(&key, &foreign),
            Err(KeyError::Decrypt("k1".into()))
        );
    }

    #[test]
    fn only_a_done_job_with_a_payload_of_a_resent_channel_keeps_its_inputs_in_a_window() {
        let day = Duration::from_secs(86_400);
        let order = serde_json::json!({"orderNumber": "ON-1"});
        let email = job(Channel::Email, order.clone());
        assert!(keeps_inputs(&email, false, day));
        assert!(keeps_inputs(
            &job(Channel::InApp, order.clone()),
            false,
            day
        ));
        // A retry is due: the job keeps them itself.
        assert!(!keeps_inputs(&email, true, day));
        // "0s" keeps nothing.
        assert!(!keeps_inputs(&email, false, Duration::ZERO));
        // A webhook is replayed from the payload its job keeps.
        assert!(!keeps_inputs(&job(Channel::Webhook, order), false, day));
        // Nothing to resend from.
        assert!(!keeps_inputs(&job(Channel::Email, Value::Null), false, day));
    }
}
