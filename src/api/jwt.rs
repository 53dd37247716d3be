//! JWT bearer tokens for callers that sign in through an identity provider. A token is verified
//! against the public keys of a configured JWKS (a file or an http(s) URL): its signature, its
//! issuer, audience, expiry and not-before; its subject, tenant and scopes are read from claims
//! whose names are configured. A token whose scopes include the platform scope acts across
//! tenants and needs no tenant claim.
//!
//! The key set is loaded when the verifier is made (a JWKS that cannot be read or holds no
//! usable key fails the start), refreshed every `jwks_refresh` (lazily, by the first request
//! after that time; an IdP that is down leaves the old keys in use), and fetched again when a
//! token names a key (`kid`) the set does not hold, at most once per [`REFETCH_MIN_INTERVAL`]
//! so that tokens with made-up key ids cannot hammer the IdP.
//!
//! Symmetric keys are never used: the algorithms a setting can name have no HS* (nor `none`),
//! and `oct` keys of a JWKS are skipped.

mod keys;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use keys::{KeySet, Lookup};

pub use crate::config::jwt::{JwksSource, JwtSettings, SigningAlgorithm};

/// The shortest time between two fetches of the JWKS that tokens with an unknown `kid` cause
/// (and between two tries of a periodic refresh that failed).
pub const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// How long one fetch of a JWKS URL may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

impl SigningAlgorithm {
    fn algorithm(self) -> Algorithm {
        match self {
            SigningAlgorithm::RS256 => Algorithm::RS256,
            SigningAlgorithm::RS384 => Algorithm::RS384,
            SigningAlgorithm::RS512 => Algorithm::RS512,
            SigningAlgorithm::PS256 => Algorithm::PS256,
            SigningAlgorithm::PS384 => Algorithm::PS384,
            SigningAlgorithm::PS512 => Algorithm::PS512,
            SigningAlgorithm::ES256 => Algorithm::ES256,
            SigningAlgorithm::ES384 => Algorithm::ES384,
            SigningAlgorithm::EdDSA => Algorithm::EdDSA,
        }
    }
}

/// Why a verifier could not be made, or a JWKS not be read.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("jwt settings: {0}")]
    Settings(String),
    #[error("cannot read the JWKS file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot fetch the JWKS from {url}: {source}")]
    Fetch {
        url: url::Url,
        source: reqwest::Error,
    },
    #[error("the JWKS at {url} answered HTTP {status}")]
    Status {
        url: url::Url,
        status: reqwest::StatusCode,
    },
    #[error("the JWKS from {from} is not a JSON key set: {reason}")]
    Parse { from: String, reason: String },
    #[error("the JWKS from {from} holds no usable signature key for the allowed algorithms")]
    NoUsableKey { from: String },
}

/// Why a token was refused. Its `Display` is a short description fit for an RFC 6750
/// `error_description`; it never holds the token nor the values of its claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtRejection {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's signature algorithm is not accepted")]
    UnsupportedAlgorithm,
    #[error("the token's signature algorithm does not fit its key")]
    AlgorithmMismatch,
    #[error("the token names no key (kid) and the key set holds several")]
    MissingKeyId,
    #[error("the token's signing key is not known")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token is not meant for this audience")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no subject")]
    MissingSubject,
    #[error("the token has no tenant claim")]
    MissingTenant,
    #[error("the token lacks the {0} claim")]
    MissingClaim(String),
    #[error("the token's {0} claim has the wrong form")]
    InvalidClaim(String),
}

impl JwtRejection {
    /// The value of a `WWW-Authenticate` header for this refusal (RFC 6750, section 3):
    /// `Bearer error="invalid_token", error_description="…"`.
    pub fn www_authenticate(&self) -> String {
        // error_description allows %x20-21 / %x23-5B / %x5D-7E: no quote, no backslash.
        let description: String = self
            .to_string()
            .chars()
            .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
            .collect();
        format!("Bearer error=\"invalid_token\", error_description=\"{description}\"")
    }
}

/// What a verified token says about its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The `sub` claim.
    pub subject: String,
    /// The tenant claim; always there unless `platform`.
    pub tenant: Option<String>,
    /// The raw strings of the scopes claim, foreign ones (`openid`, …) included.
    pub scopes: Vec<String>,
    /// Whether the scopes include the platform scope.
    pub platform: bool,
    /// The `exp` claim.
    pub expires_at: DateTime<Utc>,
}

/// Verifies bearer tokens against the keys of a JWKS. Cheap to clone: clones share the keys.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    settings: JwtSettings,
    allowed: Vec<Algorithm>,
    http: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    refresh: tokio::sync::Mutex<Fetches>,
}

/// When the JWKS was fetched.
struct Fetches {
    /// The last fetch that replaced the keys.
    loaded: Instant,
    /// The last try of any fetch, good or not.
    tried: Instant,
    /// The last fetch that a token with an unknown `kid` caused.
    for_unknown_kid: Option<Instant>,
}

impl JwtVerifier {
    /// Checks the settings and loads the JWKS: an error when the file or URL cannot be read or
    /// holds no usable key.
    pub async fn new(settings: JwtSettings, http: reqwest::Client) -> Result<Self, JwtError> {
        check_settings(&settings)?;
        let allowed: Vec<Algorithm> = settings.algorithms.iter().map(|a| a.algorithm()).collect();
        let keys = fetch(&settings.jwks, &http, &allowed).await?;
        tracing::info!(jwks = %settings.jwks, keys = keys.len(), "JWKS loaded");
        let now = Instant::now();
        Ok(JwtVerifier {
            inner: Arc::new(Inner {
                settings,
                allowed,
                http,
                keys: RwLock::new(Arc::new(keys)),
                refresh: tokio::sync::Mutex::new(Fetches {
                    loaded: now,
                    tried: now,
                    for_unknown_kid: None,
                }),
            }),
        })
    }

    /// The settings this verifier was made with.
    pub fn settings(&self) -> &JwtSettings {
        &self.inner.settings
    }

    /// Verifies a token (the part after `Bearer `) and reads its caller.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, JwtRejection> {
        let result = self.verify_inner(token).await;
        if let Err(reason) = &result {
            tracing::debug!(%reason, "bearer token refused");
        }
        result
    }

    async fn verify_inner(&self, token: &str) -> Result<VerifiedToken, JwtRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| header_rejection(token))?;
        if !self.inner.allowed.contains(&header.alg) {
            return Err(JwtRejection::UnsupportedAlgorithm);
        }
        self.refresh_if_due().await;
        let kid = header.kid.as_deref();
        if matches!(self.current().find(kid, header.alg), Lookup::UnknownKid) {
            self.refetch_for_unknown_kid(kid.unwrap_or_default()).await;
        }
        let keys = self.current();
        let key = match keys.find(kid, header.alg) {
            Lookup::Found(key) => key,
            Lookup::UnknownKid => return Err(JwtRejection::UnknownKey),
            Lookup::NoKid { candidates: 0 } => return Err(JwtRejection::UnknownKey),
            Lookup::NoKid { .. } => return Err(JwtRejection::MissingKeyId),
            Lookup::WrongAlgorithm => return Err(JwtRejection::AlgorithmMismatch),
        };
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation(header.alg))
                .map_err(|e| rejection(e.kind()))?;
        self.caller(&data.claims)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let settings = &self.inner.settings;
        let mut validation = Validation::new(alg);
        validation.leeway = settings.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation
    }

    /// The caller of checked claims: subject, tenant, scopes.
    fn caller(&self, claims: &Map<String, Value>) -> Result<VerifiedToken, JwtRejection> {
        let settings = &self.inner.settings;
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(JwtRejection::MissingSubject)
            }
            Some(_) => return Err(JwtRejection::InvalidClaim("sub".into())),
        };
        let scopes = match claims.get(&settings.scopes_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                    _ => Err(JwtRejection::InvalidClaim(settings.scopes_claim.clone())),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(JwtRejection::InvalidClaim(settings.scopes_claim.clone())),
        };
        let platform = scopes.contains(&settings.platform_scope);
        let tenant = match claims.get(&settings.tenant_claim) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Value::String(_)) | None | Some(Value::Null) => None,
            Some(_) => return Err(JwtRejection::InvalidClaim(settings.tenant_claim.clone())),
        };
        if tenant.is_none() && !platform {
            return Err(JwtRejection::MissingTenant);
        }
        let expires_at = claims
            .get("exp")
            .and_then(|exp| {
                exp.as_i64()
                    .or_else(|| exp.as_f64().map(|f| f.round() as i64))
            })
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .ok_or_else(|| JwtRejection::InvalidClaim("exp".into()))?;
        Ok(VerifiedToken {
            subject,
            tenant,
            scopes,
            platform,
            expires_at,
        })
    }

    fn current(&self) -> Arc<KeySet> {
        match self.inner.keys.read() {
            Ok(keys) => Arc::clone(&keys),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn replace(&self, keys: KeySet) {
        let mut current = match self.inner.keys.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = Arc::new(keys);
    }

    /// Reads the JWKS again when `jwks_refresh` has passed since it was last loaded; a request
    /// that finds another one refreshing goes on with the keys there are.
    async fn refresh_if_due(&self) {
        let Ok(mut fetches) = self.inner.refresh.try_lock() else {
            return;
        };
        let due = fetches.loaded.elapsed() >= self.inner.settings.jwks_refresh
            && fetches.tried.elapsed() >= REFETCH_MIN_INTERVAL;
        if due {
            self.fetch_into(&mut fetches, "periodic refresh").await;
        }
    }

    /// Reads the JWKS again for a token whose `kid` the set does not hold, unless that was
    /// done less than [`REFETCH_MIN_INTERVAL`] ago (or another request did it meanwhile).
    async fn refetch_for_unknown_kid(&self, kid: &str) {
        let mut fetches = self.inner.refresh.lock().await;
        if self.current().has_kid(kid) {
            return; // another request fetched it while this one waited
        }
        if fetches
            .for_unknown_kid
            .is_some_and(|at| at.elapsed() < REFETCH_MIN_INTERVAL)
        {
            return;
        }
        fetches.for_unknown_kid = Some(Instant::now());
        self.fetch_into(&mut fetches, "unknown key id").await;
    }

    async fn fetch_into(&self, fetches: &mut Fetches, why: &'static str) {
        fetches.tried = Instant::now();
        let settings = &self.inner.settings;
        match fetch(&settings.jwks, &self.inner.http, &self.inner.allowed).await {
            Ok(keys) => {
                tracing::info!(jwks = %settings.jwks, keys = keys.len(), why, "JWKS reloaded");
                fetches.loaded = Instant::now();
                self.replace(keys);
            }
            Err(error) => {
                tracing::warn!(%error, why, "JWKS reload failed; the keys there were stay in use")
            }
        }
    }
}

fn check_settings(settings: &JwtSettings) -> Result<(), JwtError> {
    let mut problems = Vec::new();
    for (name, value) in [
        ("issuer", &settings.issuer),
        ("audience", &settings.audience),
        ("tenant_claim", &settings.tenant_claim),
        ("scopes_claim", &settings.scopes_claim),
        ("platform_scope", &settings.platform_scope),
    ] {
        if value.trim().is_empty() {
            problems.push(format!("{name} must not be empty"));
        }
    }
    if settings.algorithms.is_empty() {
        problems.push("algorithms must name at least one algorithm".into());
    }
    if settings.jwks_refresh < REFETCH_MIN_INTERVAL {
        problems.push(format!(
            "jwks_refresh must be at least {}",
            humantime::format_duration(REFETCH_MIN_INTERVAL)
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(JwtError::Settings(problems.join("; ")))
    }
}

/// Reads and parses the key set.
async fn fetch(
    source: &JwksSource,
    http: &reqwest::Client,
    allowed: &[Algorithm],
) -> Result<KeySet, JwtError> {
    let bytes = match source {
        JwksSource::File(path) => tokio::fs::read(path)
            .await
            .map_err(|source| JwtError::File {
                path: path.clone(),
                source,
            })?,
        JwksSource::Url(url) => {
            let fetch_error = |source| JwtError::Fetch {
                url: url.clone(),
                source,
            };
            let response = http
                .get(url.clone())
                .timeout(FETCH_TIMEOUT)
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(fetch_error)?;
            if !response.status().is_success() {
                return Err(JwtError::Status {
                    url: url.clone(),
                    status: response.status(),
                });
            }
            response.bytes().await.map_err(fetch_error)?.to_vec()
        }
    };
    let keys = KeySet::parse(&bytes, allowed).map_err(|reason| JwtError::Parse {
        from: source.to_string(),
        reason,
    })?;
    if keys.is_empty() {
        return Err(JwtError::NoUsableKey {
            from: source.to_string(),
        });
    }
    Ok(keys)
}

/// The refusal of a token whose header jsonwebtoken cannot read: an algorithm it does not know
/// (`none` among them) is refused as such; anything else is malformed.
fn header_rejection(token: &str) -> JwtRejection {
    let alg = token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|h| serde_json::from_slice::<Map<String, Value>>(&h).ok())
        .and_then(|h| h.get("alg").map(Value::is_string));
    if alg == Some(true) {
        JwtRejection::UnsupportedAlgorithm
    } else {
        JwtRejection::Malformed
    }
}

fn rejection(kind: &ErrorKind) -> JwtRejection {
    match kind {
        ErrorKind::InvalidSignature => JwtRejection::BadSignature,
        ErrorKind::ExpiredSignature => JwtRejection::Expired,
        ErrorKind::ImmatureSignature => JwtRejection::NotYetValid,
        ErrorKind::InvalidIssuer => JwtRejection::WrongIssuer,
        ErrorKind::InvalidAudience => JwtRejection::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "sub" => JwtRejection::MissingSubject,
        ErrorKind::MissingRequiredClaim(claim) => JwtRejection::MissingClaim(claim.clone()),
        ErrorKind::InvalidClaimFormat(claim) => JwtRejection::InvalidClaim(claim.clone()),
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            JwtRejection::AlgorithmMismatch
        }
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::Signing(_)
        | ErrorKind::Provider(_) => JwtRejection::BadSignature,
        _ => JwtRejection::Malformed,
    }
}
