//! Retained message bodies: only for templates whose retention policy asks for it, and then
//! sealed (AES-256-GCM) under the current key of the keyring (`crate::keyring`), the key id
//! kept with the ciphertext. Everything else keeps only the content hash. The in-app inbox
//! keeps the same sealed body for such templates.

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::keyring::{KeyError, Keyring, Sealed};

/// The retention policies a template may name.
pub const HASH_ONLY: &str = "HASH_ONLY";
pub const ENCRYPTED_BODY: &str = "ENCRYPTED_BODY";

/// What is kept of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetainedBody {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl RetainedBody {
    /// The body sealed under the ring's current key.
    pub fn seal(&self, keyring: &Keyring) -> Sealed {
        keyring.seal(&serde_json::to_vec(self).expect("a body serialises"))
    }

    /// A sealed body, opened.
    pub fn open(keyring: &Keyring, sealed: &Sealed) -> Result<RetainedBody, KeyError> {
        let plain = keyring.open(sealed)?;
        serde_json::from_slice(plain.expose_secret())
            .map_err(|_| KeyError::Decrypt(sealed.key_id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bodies_open_only_with_their_key() {
        let ring = |spec: &str| Keyring::from_settings(Some(spec), None).unwrap().unwrap();
        let key = ring(&format!("k1:{}", "ab".repeat(32)));
        let body = RetainedBody {
            subject: "Your order".into(),
            text: "Dear A".into(),
            html: "<p>Dear A</p>".into(),
        };
        let sealed = body.seal(&key);
        assert_eq!(sealed.key_id, "k1");
        assert!(!String::from_utf8_lossy(&sealed.ciphertext).contains("Dear A"));
        assert_eq!(RetainedBody::open(&key, &sealed).unwrap(), body);
        let other = ring(&format!("k1:{}", "cd".repeat(32)));
        assert_eq!(
            RetainedBody::open(&other, &sealed),
            Err(KeyError::Decrypt("k1".into()))
        );
    }
}
