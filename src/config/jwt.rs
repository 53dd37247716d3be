//! The settings of JWT bearer tokens (`[api.jwt]`): where the identity provider's keys are, which
//! issuer and audience tokens must name, and which claims carry the tenant and the scopes. The
//! verifier is `api::jwt`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The settings of JWT bearer tokens (`[api.jwt]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// Where the identity provider's public keys are: an `http://` or `https://` URL of its
    /// JWKS (e.g. `https://idp.example/.well-known/jwks.json`) or the path of a JWKS file.
    pub jwks: JwksSource,
    /// The issuer a token must name in `iss`, exactly.
    pub issuer: String,
    /// The audience a token must name in `aud` (a string, or one of the array's entries).
    pub audience: String,
    /// The top-level claim that holds the caller's tenant (default `tenant`). A token without
    /// it is refused unless it carries the platform scope.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// The top-level claim that holds the caller's scopes (default `scope`): a space-separated
    /// string, as OAuth 2 writes it, or a JSON array of strings. A token without it has no
    /// scopes.
    #[serde(default = "default_scopes_claim")]
    pub scopes_claim: String,
    /// The scope that makes a token a platform credential (default `herald:platform`): it acts
    /// across tenants and needs no tenant claim.
    #[serde(default = "default_platform_scope")]
    pub platform_scope: String,
    /// The clock skew allowed on `exp` and `nbf`, in humantime form (default `30s`; whole
    /// seconds).
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// How often the JWKS is read again, in humantime form (default `10m`).
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// The signature algorithms a token may use (default `["RS256", "ES256", "EdDSA"]`); any of
    /// RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA. HS* and `none` cannot be
    /// named.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<SigningAlgorithm>,
}

fn default_tenant_claim() -> String {
    "tenant".into()
}

fn default_scopes_claim() -> String {
    "scope".into()
}

fn default_platform_scope() -> String {
    "herald:platform".into()
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(600)
}

fn default_algorithms() -> Vec<SigningAlgorithm> {
    vec![
        SigningAlgorithm::RS256,
        SigningAlgorithm::ES256,
        SigningAlgorithm::EdDSA,
    ]
}

/// An asymmetric JWS algorithm a token may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum SigningAlgorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// Where a JWKS is read from: written as one string, a URL when it starts with `http://` or
/// `https://`, a file path otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum JwksSource {
    Url(url::Url),
    File(PathBuf),
}

impl TryFrom<String> for JwksSource {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            url::Url::parse(text)
                .map(JwksSource::Url)
                .map_err(|e| format!("jwks: '{text}' is not a valid URL: {e}"))
        } else if text.contains("://") {
            Err(format!(
                "jwks: '{text}': only http(s) URLs and file paths are read"
            ))
        } else if text.is_empty() {
            Err("jwks: must not be empty (a file path or an http(s) URL)".into())
        } else {
            Ok(JwksSource::File(PathBuf::from(text)))
        }
    }
}

impl From<JwksSource> for String {
    fn from(source: JwksSource) -> String {
        source.to_string()
    }
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::Url(url) => write!(f, "{url}"),
            JwksSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}
