//! The artifact registry: documents a communication may link to or attach. A proposal may only
//! carry an artifact that is AVAILABLE, of the expected type, of the same tenant and subject
//! (quote + revision), and not superseded. Portal links are signed and expire.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::PgPool;

/// One document in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    pub tenant_id: String,
    pub artifact_id: String,
    pub subject_type: String,
    pub subject_id: String,
    pub artifact_type: String,
    pub status: String,
    pub content_hash: Option<String>,
    pub storage_location: String,
    pub size_bytes: Option<i64>,
    pub media_type: String,
    pub file_name: String,
}

/// Whether an artifact may go out with a communication.
#[derive(Debug, Clone, PartialEq)]
pub enum ArtifactCheck {
    Usable(Box<Artifact>),
    /// Not (yet) in the registry or still being produced: wait and try again.
    NotYetAvailable,
    /// A business refusal: the communication fails for good with this reason.
    Refused {
        code: &'static str,
        message: String,
    },
}

/// How a proposal carries its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryMode {
    PortalLink,
    Attachment,
}

impl DeliveryMode {
    /// Every mode (the Modeler's dropdown offers them).
    pub const ALL: [DeliveryMode; 2] = [DeliveryMode::PortalLink, DeliveryMode::Attachment];

    /// The name a process variable (and the API) gives the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::PortalLink => "PORTAL_LINK",
            DeliveryMode::Attachment => "ATTACHMENT",
        }
    }
}

impl std::str::FromStr for DeliveryMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| format!("deliveryMode '{s}' is not PORTAL_LINK or ATTACHMENT"))
    }
}

/// A file to attach, as the delivery job keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRef {
    pub artifact_id: String,
    pub storage_location: String,
    pub file_name: String,
    pub media_type: String,
    pub max_bytes: u64,
}

/// The registry's table, on the ledger's database.
#[derive(Clone)]
pub struct Registry {
    pool: PgPool,
}

impl Registry {
    pub fn new(pool: PgPool) -> Registry {
        Registry { pool }
    }

    /// Checks an artifact for a communication about `subject_type`/`subject_id`.
    pub async fn check_for_delivery(
        &self,
        tenant_id: &str,
        artifact_id: &str,
        subject_type: &str,
        subject_id: &str,
        expected_type: &str,
    ) -> Result<ArtifactCheck, sqlx::Error> {
        let artifact: Option<Artifact> = sqlx::query_as(
        "SELECT tenant_id, artifact_id, subject_type, subject_id, artifact_type, status, content_hash, storage_location,
                size_bytes, media_type, file_name
         FROM artifact WHERE tenant_id = $1 AND artifact_id = $2",
    )
    .bind(tenant_id)
    .bind(artifact_id)
    .fetch_optional(&self.pool)
    .await?;
        // Another tenant's document is one this tenant does not have: its existence is never told.
        let Some(artifact) = artifact else {
            return Ok(ArtifactCheck::NotYetAvailable);
        };
        Ok(decide(artifact, subject_type, subject_id, expected_type))
    }
}

/// The rules, apart from the lookup.
pub fn decide(
    artifact: Artifact,
    subject_type: &str,
    subject_id: &str,
    expected_type: &str,
) -> ArtifactCheck {
    let id = artifact.artifact_id.clone();
    if artifact.subject_type != subject_type || artifact.subject_id != subject_id {
        return ArtifactCheck::Refused {
            code: "ARTIFACT_NOT_AUTHORIZED",
            message: format!(
                "artifact '{id}' belongs to {} {}, not to {subject_id}",
                artifact.subject_type, artifact.subject_id
            ),
        };
    }
    if artifact.artifact_type != expected_type {
        return ArtifactCheck::Refused {
            code: "ARTIFACT_WRONG_TYPE",
            message: format!(
                "artifact '{id}' is a {}, not a {expected_type}",
                artifact.artifact_type
            ),
        };
    }
    match artifact.status.as_str() {
        "AVAILABLE" => ArtifactCheck::Usable(Box::new(artifact)),
        "SUPERSEDED" => ArtifactCheck::Refused {
            code: "ARTIFACT_SUPERSEDED",
            message: format!("artifact '{id}' has been superseded by a newer document"),
        },
        _ => ArtifactCheck::NotYetAvailable,
    }
}

impl Registry {
    /// Registers (or updates) an artifact; a new AVAILABLE document supersedes the older ones of
    /// the same tenant, subject and type.
    pub async fn register(&self, artifact: &Artifact) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if artifact.status == "AVAILABLE" {
            sqlx::query(
                "UPDATE artifact SET status = 'SUPERSEDED', updated_at = now()
             WHERE tenant_id = $1 AND subject_type = $2 AND subject_id = $3 AND artifact_type = $4
               AND artifact_id <> $5 AND status = 'AVAILABLE'",
            )
            .bind(&artifact.tenant_id)
            .bind(&artifact.subject_type)
            .bind(&artifact.subject_id)
            .bind(&artifact.artifact_type)
            .bind(&artifact.artifact_id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
        "INSERT INTO artifact (tenant_id, artifact_id, subject_type, subject_id, artifact_type, status, content_hash,
                               storage_location, size_bytes, media_type, file_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (tenant_id, artifact_id) DO UPDATE SET status = EXCLUDED.status, content_hash = EXCLUDED.content_hash,
             storage_location = EXCLUDED.storage_location, size_bytes = EXCLUDED.size_bytes,
             media_type = EXCLUDED.media_type, file_name = EXCLUDED.file_name, updated_at = now()",
    )
    .bind(&artifact.tenant_id)
    .bind(&artifact.artifact_id)
    .bind(&artifact.subject_type)
    .bind(&artifact.subject_id)
    .bind(&artifact.artifact_type)
    .bind(&artifact.status)
    .bind(&artifact.content_hash)
    .bind(&artifact.storage_location)
    .bind(artifact.size_bytes)
    .bind(&artifact.media_type)
    .bind(&artifact.file_name)
    .execute(&mut *tx)
    .await?;
        tx.commit().await
    }
}

fn signature(secret: &[u8], tenant_id: &str, artifact_id: &str, expires: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{tenant_id}\n{artifact_id}\n{expires}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A portal link that expires at `expires`, signed with HMAC-SHA256. Never log it.
pub fn signed_link(
    base_url: &str,
    secret: &[u8],
    tenant_id: &str,
    artifact_id: &str,
    expires: DateTime<Utc>,
) -> String {
    let expires = expires.timestamp();
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "{}/{}/{}?expires={expires}&signature={}",
        base_url.trim_end_matches('/'),
        encode(tenant_id),
        encode(artifact_id),
        signature(secret, tenant_id, artifact_id, expires)
    )
}

/// What the portal checks: the signature is right and the link has not expired.
pub fn verify_link(
    secret: &[u8],
    tenant_id: &str,
    artifact_id: &str,
    expires: i64,
    given: &str,
    now: DateTime<Utc>,
) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{tenant_id}\n{artifact_id}\n{expires}").as_bytes());
    let Ok(given) = hex::decode(given) else {
        return false;
    };
    now.timestamp() < expires && mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(status: &str) -> Artifact {
        Artifact {
            tenant_id: "acme".into(),
            artifact_id: "doc-1".into(),
            subject_type: "QUOTE_REVISION".into(),
            subject_id: "Q-1/4".into(),
            artifact_type: "PROPOSAL_DOCUMENT".into(),
            status: status.into(),
            content_hash: None,
            storage_location: "/tmp/doc-1.pdf".into(),
            size_bytes: Some(10),
            media_type: "application/pdf".into(),
            file_name: "proposal.pdf".into(),
        }
    }

    #[test]
    fn a_delivery_mode_has_one_name_for_variables_and_the_api() {
        for mode in DeliveryMode::ALL {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
            assert_eq!(mode.as_str().parse::<DeliveryMode>(), Ok(mode));
        }
        assert!("portal_link".parse::<DeliveryMode>().is_err());
    }

    #[test]
    fn only_an_available_document_of_the_same_subject_and_type_is_usable() {
        let ok = decide(
            artifact("AVAILABLE"),
            "QUOTE_REVISION",
            "Q-1/4",
            "PROPOSAL_DOCUMENT",
        );
        assert!(matches!(ok, ArtifactCheck::Usable(_)));
        let other_revision = decide(
            artifact("AVAILABLE"),
            "QUOTE_REVISION",
            "Q-1/5",
            "PROPOSAL_DOCUMENT",
        );
        assert!(matches!(
            other_revision,
            ArtifactCheck::Refused {
                code: "ARTIFACT_NOT_AUTHORIZED",
                ..
            }
        ));
        let superseded = decide(
            artifact("SUPERSEDED"),
            "QUOTE_REVISION",
            "Q-1/4",
            "PROPOSAL_DOCUMENT",
        );
        assert!(matches!(
            superseded,
            ArtifactCheck::Refused {
                code: "ARTIFACT_SUPERSEDED",
                ..
            }
        ));
        let pending = decide(
            artifact("PENDING"),
            "QUOTE_REVISION",
            "Q-1/4",
            "PROPOSAL_DOCUMENT",
        );
        assert_eq!(pending, ArtifactCheck::NotYetAvailable);
        let wrong = decide(
            artifact("AVAILABLE"),
            "QUOTE_REVISION",
            "Q-1/4",
            "PRICE_SHEET",
        );
        assert!(matches!(
            wrong,
            ArtifactCheck::Refused {
                code: "ARTIFACT_WRONG_TYPE",
                ..
            }
        ));
    }

    #[test]
    fn signed_links_verify_until_they_expire_and_only_unaltered() {
        let secret = b"test-secret";
        let now = Utc::now();
        let expires = now + chrono::Duration::hours(1);
        let link = signed_link(
            "https://portal.example/docs/",
            secret,
            "acme",
            "doc 1",
            expires,
        );
        assert!(link.starts_with("https://portal.example/docs/acme/doc+1?expires="));
        let sig = link.split("signature=").nth(1).unwrap();
        let ts = expires.timestamp();
        assert!(verify_link(secret, "acme", "doc 1", ts, sig, now));
        assert!(
            !verify_link(secret, "acme", "doc 2", ts, sig, now),
            "another artifact"
        );
        assert!(
            !verify_link(secret, "acme", "doc 1", ts + 3600, sig, now),
            "a longer life"
        );
        assert!(
            !verify_link(b"other", "acme", "doc 1", ts, sig, now),
            "another key"
        );
        assert!(
            !verify_link(
                secret,
                "acme",
                "doc 1",
                ts,
                sig,
                expires + chrono::Duration::seconds(1)
            ),
            "expired"
        );
    }
}
