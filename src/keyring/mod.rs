//! Secrets at rest. The keyring holds the AES-256-GCM keys the environment gives
//! (`HERALD_KEYS__ENCRYPTION="k2:<64 hex>,k1:<64 hex>"`, the first one current), each with
//! its key id: new ciphertext is sealed under the current key and records its id; older
//! ciphertext opens with the key its id names (`herald keys rotate` moves it to the current
//! one, see [`rotate`]). The key of the older setting `HERALD_CONTENT__KEY` joins the ring as
//! the key `content` (the id every body sealed before key ids existed carries).
//!
//! [`RefKey`] is the HMAC key of the recipient references of explicit addresses
//! (`HERALD_KEYS__RECIPIENT_REF`). Neither type prints its bytes (`Debug` names the key ids
//! only).
//!
//! The ground floor for what it seals: it knows bytes, not tables (but [`rotate`], which walks
//! the tables that hold ciphertext).

pub mod rotate;

use std::collections::BTreeMap;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretSlice};
use sha2::Sha256;

/// The key id of `HERALD_CONTENT__KEY` in the ring, and of every body sealed before key ids.
pub const LEGACY_CONTENT_KEY_ID: &str = "content";

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum KeyError {
    #[error("{var}: {problem}")]
    BadSetting { var: &'static str, problem: String },
    #[error("no key '{0}' in the keyring (HERALD_KEYS__ENCRYPTION): the ciphertext was sealed under a key that is not configured")]
    UnknownKeyId(String),
    #[error(
        "the ciphertext does not open with key '{0}' (a wrong key under that id, or damaged data)"
    )]
    Decrypt(String),
    #[error("no encryption key is configured: set HERALD_KEYS__ENCRYPTION (e.g. k1:<64 hex>)")]
    NoKeyring,
}

/// Ciphertext as stored: the id of the key it was sealed under, a fresh nonce, the sealed bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// The AES-256-GCM keys by id, and the one new ciphertext is sealed under. Cheap to clone.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: Arc<BTreeMap<String, SecretBox<[u8; 32]>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

const RING_VAR: &str = "HERALD_KEYS__ENCRYPTION";
const CONTENT_VAR: &str = "HERALD_CONTENT__KEY";
const REF_VAR: &str = "HERALD_KEYS__RECIPIENT_REF";

/// 64 hex characters as 32 key bytes.
fn key_bytes(var: &'static str, hex_key: &str) -> Result<SecretBox<[u8; 32]>, KeyError> {
    let bad = |problem: &str| KeyError::BadSetting {
        var,
        problem: problem.to_string(),
    };
    let mut bytes = Box::new([0u8; 32]);
    hex::decode_to_slice(hex_key.trim(), bytes.as_mut_slice())
        .map_err(|_| bad("a key is 64 hex characters (32 bytes)"))?;
    Ok(SecretBox::new(bytes))
}

/// A key id: 1 to 32 letters, digits, `-` or `_`.
fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Keyring {
    /// The ring of `HERALD_KEYS__ENCRYPTION` (`id:hex` entries, comma-separated, the first one
    /// current) and the older `HERALD_CONTENT__KEY` (the key `content`; current when the ring
    /// is empty). None when neither is set.
    pub fn from_settings(
        ring: Option<&str>,
        content_key: Option<&str>,
    ) -> Result<Option<Keyring>, KeyError> {
        let bad = |problem: String| KeyError::BadSetting {
            var: RING_VAR,
            problem,
        };
        let mut keys = BTreeMap::new();
        let mut current = None;
        for entry in ring
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (id, hex_key) = entry
                .split_once(':')
                .ok_or_else(|| bad("each entry is <key id>:<64 hex characters>".into()))?;
            let id = id.trim();
            if !valid_id(id) {
                return Err(bad(format!(
                    "key id '{id}': 1 to 32 letters, digits, '-' or '_'"
                )));
            }
            if id == LEGACY_CONTENT_KEY_ID {
                return Err(bad(format!(
                    "the key id '{LEGACY_CONTENT_KEY_ID}' is {CONTENT_VAR}'s; name the key otherwise"
                )));
            }
            if keys
                .insert(id.to_string(), key_bytes(RING_VAR, hex_key)?)
                .is_some()
            {
                return Err(bad(format!("the key id '{id}' is given twice")));
            }
            current.get_or_insert_with(|| id.to_string());
        }
        if let Some(hex_key) = content_key.map(str::trim).filter(|k| !k.is_empty()) {
            keys.insert(
                LEGACY_CONTENT_KEY_ID.to_string(),
                key_bytes(CONTENT_VAR, hex_key)?,
            );
            current.get_or_insert_with(|| LEGACY_CONTENT_KEY_ID.to_string());
        }
        Ok(current.map(|current| Keyring {
            current,
            keys: Arc::new(keys),
        }))
    }

    /// The id new ciphertext is sealed under.
    pub fn current_id(&self) -> &str {
        &self.current
    }

    fn cipher(&self, key_id: &str) -> Result<Aes256Gcm, KeyError> {
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| KeyError::UnknownKeyId(key_id.to_string()))?;
        Ok(Aes256Gcm::new(key.expose_secret().into()))
    }

    /// Seals `plain` under the current key, with a fresh nonce.
    pub fn seal(&self, plain: &[u8]) -> Sealed {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher(&self.current)
            .expect("the current key is in the ring")
            .encrypt(Nonce::from_slice(&nonce), plain)
            .expect("AES-GCM encryption does not fail for in-memory data");
        Sealed {
            key_id: self.current.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Opens ciphertext with the key its id names.
    pub fn open(&self, sealed: &Sealed) -> Result<SecretSlice<u8>, KeyError> {
        let cipher = self.cipher(&sealed.key_id)?;
        if sealed.nonce.len() != 12 {
            return Err(KeyError::Decrypt(sealed.key_id.clone()));
        }
        cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                sealed.ciphertext.as_slice(),
            )
            .map(SecretSlice::from)
            .map_err(|_| KeyError::Decrypt(sealed.key_id.clone()))
    }

    /// The ciphertext under the current key: opened and sealed again, or None when it is
    /// under the current key already.
    pub fn reseal(&self, sealed: &Sealed) -> Result<Option<Sealed>, KeyError> {
        let plain = self.open(sealed)?;
        Ok((sealed.key_id != self.current).then(|| self.seal(plain.expose_secret())))
    }
}

/// The keys the settings give: the keyring and the recipient-reference key, each None when
/// not configured.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    pub ring: Option<Keyring>,
    pub recipient_ref: Option<RefKey>,
}

impl Keys {
    pub fn from_settings(settings: &crate::config::Settings) -> Result<Keys, KeyError> {
        let exposed =
            |s: &Option<secrecy::SecretString>| s.as_ref().map(|s| s.expose_secret().to_string());
        Ok(Keys {
            ring: Keyring::from_settings(
                exposed(&settings.keys.encryption).as_deref(),
                exposed(&settings.content.key).as_deref(),
            )?,
            recipient_ref: RefKey::from_setting(exposed(&settings.keys.recipient_ref).as_deref())?,
        })
    }
}

/// The HMAC-SHA256 key recipient references of explicit addresses are made with.
#[derive(Clone)]
pub struct RefKey(Arc<SecretBox<[u8; 32]>>);

impl std::fmt::Debug for RefKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefKey(…)")
    }
}

impl RefKey {
    /// The key of `HERALD_KEYS__RECIPIENT_REF` (64 hex characters); None when unset.
    pub fn from_setting(hex_key: Option<&str>) -> Result<Option<RefKey>, KeyError> {
        match hex_key.map(str::trim).filter(|k| !k.is_empty()) {
            Some(hex_key) => Ok(Some(RefKey(Arc::new(key_bytes(REF_VAR, hex_key)?)))),
            None => Ok(None),
        }
    }

    /// HMAC-SHA256 of `data`, in hex.
    pub fn mac_hex(&self, data: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret())
            .expect("HMAC takes a key of any length");
        mac.update(data);
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A stored secret, in the columns `<prefix>_key_id`, `<prefix>_nonce`, `<prefix>_ciphertext`
/// (sealed) or `<prefix>` (in plaintext: a row written before secrets were sealed), or absent.
pub(crate) fn stored_secret(
    row: &sqlx::postgres::PgRow,
    prefix: &str,
) -> Result<Option<StoredSecret>, sqlx::Error> {
    let key_id: Option<String> = sqlx::Row::try_get(row, format!("{prefix}_key_id").as_str())?;
    let nonce: Option<Vec<u8>> = sqlx::Row::try_get(row, format!("{prefix}_nonce").as_str())?;
    let ciphertext: Option<Vec<u8>> =
        sqlx::Row::try_get(row, format!("{prefix}_ciphertext").as_str())?;
    if let (Some(key_id), Some(nonce), Some(ciphertext)) = (key_id, nonce, ciphertext) {
        return Ok(Some(StoredSecret::Sealed(Sealed {
            key_id,
            nonce,
            ciphertext,
        })));
    }
    Ok(sqlx::Row::try_get::<Option<String>, _>(row, prefix)?.map(StoredSecret::Plain))
}

/// A signing secret as a row holds it.
pub(crate) enum StoredSecret {
    Sealed(Sealed),
    Plain(String),
}

impl StoredSecret {
    /// The whsec_ secret.
    pub(crate) fn reveal(&self, keyring: Option<&Keyring>) -> Result<String, KeyError> {
        match self {
            StoredSecret::Plain(secret) => Ok(secret.clone()),
            StoredSecret::Sealed(sealed) => {
                let keyring = keyring.ok_or(KeyError::NoKeyring)?;
                let plain = keyring.open(sealed)?;
                String::from_utf8(secrecy::ExposeSecret::expose_secret(&plain).to_vec())
                    .map_err(|_| KeyError::Decrypt(sealed.key_id.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn ring(spec: &str) -> Keyring {
        Keyring::from_settings(Some(spec), None).unwrap().unwrap()
    }

    #[test]
    fn seals_under_the_current_key_and_opens_with_the_key_its_id_names() {
        let old = ring(&format!("k1:{K1}"));
        let sealed = old.seal(b"whsec_secret");
        assert_eq!(sealed.key_id, "k1");
        assert!(!String::from_utf8_lossy(&sealed.ciphertext).contains("whsec_"));
        assert_eq!(old.open(&sealed).unwrap().expose_secret(), b"whsec_secret");
        assert_ne!(
            old.seal(b"whsec_secret").nonce,
            sealed.nonce,
            "a fresh nonce"
        );

        let both = ring(&format!("k2:{K2},k1:{K1}"));
        assert_eq!(both.current_id(), "k2");
        assert_eq!(both.open(&sealed).unwrap().expose_secret(), b"whsec_secret");
        assert_eq!(both.seal(b"x").key_id, "k2");
    }

    #[test]
    fn an_unknown_key_id_or_a_wrong_key_is_an_error() {
        let sealed = ring(&format!("k1:{K1}")).seal(b"body");
        let other = ring(&format!("k2:{K2}"));
        assert_eq!(
            other.open(&sealed).unwrap_err(),
            KeyError::UnknownKeyId("k1".into())
        );
        let impostor = ring(&format!("k1:{K2}"));
        assert_eq!(
            impostor.open(&sealed).unwrap_err(),
            KeyError::Decrypt("k1".into())
        );
        let mut damaged = sealed.clone();
        damaged.ciphertext[0] ^= 1;
        assert_eq!(
            ring(&format!("k1:{K1}")).open(&damaged).unwrap_err(),
            KeyError::Decrypt("k1".into())
        );
    }

    #[test]
    fn rotation_reseals_only_what_is_under_an_older_key() {
        let sealed = ring(&format!("k1:{K1}")).seal(b"body");
        let rotated = ring(&format!("k2:{K2},k1:{K1}"));
        let moved = rotated.reseal(&sealed).unwrap().expect("moved to k2");
        assert_eq!(moved.key_id, "k2");
        assert_eq!(rotated.open(&moved).unwrap().expose_secret(), b"body");
        assert_eq!(rotated.reseal(&moved).unwrap(), None, "idempotent");
        // Once k1 is dropped, only what was moved still opens.
        let only_new = ring(&format!("k2:{K2}"));
        assert!(only_new.open(&moved).is_ok());
        assert_eq!(
            only_new.reseal(&sealed).unwrap_err(),
            KeyError::UnknownKeyId("k1".into())
        );
    }

    #[test]
    fn the_content_key_joins_the_ring_as_content() {
        let alone = Keyring::from_settings(None, Some(K1)).unwrap().unwrap();
        assert_eq!(alone.current_id(), LEGACY_CONTENT_KEY_ID);
        let sealed = alone.seal(b"old body");
        let ring = Keyring::from_settings(Some(&format!("k2:{K2}")), Some(K1))
            .unwrap()
            .unwrap();
        assert_eq!(ring.current_id(), "k2");
        assert_eq!(ring.open(&sealed).unwrap().expose_secret(), b"old body");
        assert!(Keyring::from_settings(None, None).unwrap().is_none());
        assert!(Keyring::from_settings(Some(" "), Some(""))
            .unwrap()
            .is_none());
    }

    #[test]
    fn malformed_rings_are_refused() {
        for spec in [
            "k1".to_string(),
            format!("k1:{}", &K1[..62]),
            format!("k1:{K1},k1:{K2}"),
            format!("bad id:{K1}"),
            format!("content:{K1}"),
            format!(":{K1}"),
        ] {
            let err = Keyring::from_settings(Some(&spec), None).unwrap_err();
            assert!(
                matches!(err, KeyError::BadSetting { var, .. } if var == RING_VAR),
                "{spec}: {err}"
            );
            assert!(!err.to_string().contains(K1), "{err}");
        }
        assert!(RefKey::from_setting(Some("abcd")).is_err());
    }

    #[test]
    fn debug_prints_no_key() {
        let ring = ring(&format!("k2:{K2},k1:{K1}"));
        let shown = format!("{ring:?}");
        assert!(shown.contains("k2") && shown.contains("k1"), "{shown}");
        assert!(
            !shown.contains("2222") && !shown.contains("1111"),
            "{shown}"
        );
        assert!(!shown.contains("[34, 34"), "{shown}");
        let refs = RefKey::from_setting(Some(K1)).unwrap().unwrap();
        assert_eq!(format!("{refs:?}"), "RefKey(…)");
    }

    #[test]
    fn refs_are_keyed_macs() {
        let a = RefKey::from_setting(Some(K1)).unwrap().unwrap();
        let b = RefKey::from_setting(Some(K2)).unwrap().unwrap();
        assert_eq!(a.mac_hex(b"jane@example.com").len(), 64);
        assert_eq!(
            a.mac_hex(b"jane@example.com"),
            a.mac_hex(b"jane@example.com")
        );
        assert_ne!(
            a.mac_hex(b"jane@example.com"),
            b.mac_hex(b"jane@example.com")
        );
    }
}
