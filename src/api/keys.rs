//! API keys: made by `herald api-keys create`, shown once, kept only as their SHA-256 with the
//! tenant, scopes, name and times. A key is `herald_<environment>_<43 characters>`: the
//! environment tells a test key from a live one at a glance, the rest is 32 random bytes in
//! base64url.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// What a credential may do. A route needs exactly one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Commands: proposals, resends, confirmations, escalations, events, artifacts.
    Send,
    /// History and inboxes.
    Read,
    /// Resend, replay, retry, the suppression list, webhook endpoints, contacts, preferences.
    Operate,
    /// The tenant's policy.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Send, Scope::Read, Scope::Operate, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Scope, KeyError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                KeyError::Invalid(format!("'{s}' is not a scope (send, read, operate, admin)"))
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("no API key {0}")]
    NotFound(Uuid),
    #[error("the api_key table cannot be read or written: {0}")]
    Database(#[from] sqlx::Error),
}

/// A tenant id as the API takes it (a credential's tenant, a `Herald-Tenant` header): 1 to 64
/// characters of letters, digits, `.`, `_` and `-`.
pub fn check_tenant(tenant: &str) -> Result<(), String> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err("a tenant id has 1 to 64 letters, digits, '.', '_' or '-'".into())
    }
}

/// A key to make.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The tenant the key acts for; `None` for a platform key.
    pub tenant: Option<String>,
    pub scopes: Vec<Scope>,
    pub name: String,
    pub expires_in: Option<std::time::Duration>,
}

/// A key as `list` shows it: never its secret.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub key_id: Uuid,
    pub tenant_id: Option<String>,
    pub platform: bool,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub hint: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl KeyInfo {
    pub fn usable_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// What a presented key turned out to be.
#[derive(Debug)]
pub enum KeyLookup {
    Valid(KeyInfo),
    Revoked,
    Expired,
    Unknown,
}

/// The prefix of every key of an environment.
pub fn key_prefix(environment: &str) -> String {
    format!("herald_{environment}_")
}

/// The environment name keys carry: 1 to 16 lowercase letters and digits.
pub fn check_environment(environment: &str) -> Result<(), String> {
    if !environment.is_empty()
        && environment.len() <= 16
        && environment
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(format!(
            "api.key_environment '{environment}': 1 to 16 lowercase letters and digits"
        ))
    }
}

fn hash_of(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[derive(Clone)]
pub struct ApiKeys {
    pool: PgPool,
}

const COLUMNS: &str = "key_id, tenant_id, platform, name, scopes, hint, created_at, last_used_at, expires_at, revoked_at";

fn info(row: &sqlx::postgres::PgRow) -> Result<KeyInfo, KeyError> {
    let scopes: Vec<String> = row.get("scopes");
    Ok(KeyInfo {
        key_id: row.get("key_id"),
        tenant_id: row.get("tenant_id"),
        platform: row.get("platform"),
        name: row.get("name"),
        scopes: scopes.iter().map(|s| s.parse()).collect::<Result<_, _>>()?,
        hint: row.get("hint"),
        created_at: row.get("created_at"),
        last_used_at: row.get("last_used_at"),
        expires_at: row.get("expires_at"),
        revoked_at: row.get("revoked_at"),
    })
}

impl ApiKeys {
    pub fn new(pool: PgPool) -> ApiKeys {
        ApiKeys { pool }
    }

    /// Makes a key: returns what is stored and the key itself, which is never shown again.
    pub async fn create(
        &self,
        environment: &str,
        new: NewKey,
    ) -> Result<(KeyInfo, SecretString), KeyError> {
        check_environment(environment).map_err(KeyError::Invalid)?;
        if let Some(tenant) = &new.tenant {
            check_tenant(tenant).map_err(|e| KeyError::Invalid(format!("--tenant: {e}")))?;
        }
        if new.scopes.is_empty() {
            return Err(KeyError::Invalid("--scope: name at least one scope".into()));
        }
        if let Some(problem) =
            super::input::check_text("--name", &new.name, super::input::Text::Name)
        {
            return Err(KeyError::Invalid(problem));
        }
        let expires_at = match new.expires_in {
            Some(d) => Some(
                Utc::now()
                    + chrono::Duration::from_std(d)
                        .map_err(|_| KeyError::Invalid("--expires-in: too long".into()))?,
            ),
            None => None,
        };
        let mut random = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut random);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
        let key = format!("{}{secret}", key_prefix(environment));
        let hint = format!("{}{}…", key_prefix(environment), &secret[..4]);
        let mut scopes = new.scopes.clone();
        scopes.sort();
        scopes.dedup();
        let scope_names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        let row = sqlx::query(&format!(
            "INSERT INTO api_key (key_id, tenant_id, platform, name, scopes, hint, secret_hash, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(&new.tenant)
        .bind(new.tenant.is_none())
        .bind(&new.name)
        .bind(&scope_names)
        .bind(&hint)
        .bind(hash_of(&key).as_slice())
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await?;
        Ok((info(&row)?, SecretString::from(key)))
    }

    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<KeyInfo>, KeyError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_key WHERE $1::text IS NULL OR tenant_id = $1
             ORDER BY created_at, key_id"
        ))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(info).collect()
    }

    /// Revokes a key at once (a key revoked before stays revoked at its first time).
    pub async fn revoke(&self, key_id: Uuid) -> Result<KeyInfo, KeyError> {
        let row = sqlx::query(&format!(
            "UPDATE api_key SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1
             RETURNING {COLUMNS}"
        ))
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(KeyError::NotFound(key_id))?;
        info(&row)
    }

    /// Looks a presented key up by its hash (checked again in constant time); notes its use at
    /// most once a minute.
    pub async fn authenticate(&self, presented: &SecretString) -> Result<KeyLookup, KeyError> {
        let hash = hash_of(presented.expose_secret());
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, secret_hash, now() AS db_now FROM api_key WHERE secret_hash = $1"
        ))
        .bind(hash.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(KeyLookup::Unknown);
        };
        let stored: Vec<u8> = row.get("secret_hash");
        if !bool::from(stored.as_slice().ct_eq(hash.as_slice())) {
            return Ok(KeyLookup::Unknown);
        }
        let key = info(&row)?;
        let now: DateTime<Utc> = row.get("db_now");
        if key.revoked_at.is_some() {
            return Ok(KeyLookup::Revoked);
        }
        if !key.usable_at(now) {
            return Ok(KeyLookup::Expired);
        }
        if key
            .last_used_at
            .is_none_or(|at| now - at > chrono::Duration::seconds(60))
        {
            sqlx::query("UPDATE api_key SET last_used_at = now() WHERE key_id = $1")
                .bind(key.key_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(KeyLookup::Valid(key))
    }

    /// Whether any key can be used now (for the start-up check of an exposed API).
    pub async fn any_usable(&self) -> Result<bool, KeyError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_key
              WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()))",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}

/// Parses `send,read` (the CLI's `--scope`).
pub fn parse_scopes(list: &str) -> Result<Vec<Scope>, KeyError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_refuse_unknown_names() {
        assert_eq!(
            parse_scopes("send, read").unwrap(),
            vec![Scope::Send, Scope::Read]
        );
        assert!(parse_scopes("send,write").is_err());
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
        }
    }

    #[test]
    fn tenants_and_environments_are_checked() {
        assert!(check_tenant("acme-eu.1_x").is_ok());
        for bad in ["", "a b", "a/b", &"x".repeat(65), "tenant\n"] {
            assert!(check_tenant(bad).is_err(), "{bad:?}");
        }
        assert!(check_environment("live").is_ok());
        assert!(check_environment("Live").is_err());
        assert!(check_environment("").is_err());
        assert_eq!(key_prefix("test"), "herald_test_");
    }

    #[test]
    fn the_hash_is_sha256_of_the_whole_key() {
        assert_eq!(
            hex::encode(hash_of("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
