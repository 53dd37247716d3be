//! Retained message bodies: only for templates whose retention policy asks for it, and then
//! encrypted (AES-256-GCM) with a key that only the environment holds (`HERALD_CONTENT__KEY`,
//! 64 hex characters). Everything else keeps only the content hash.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The retention policies a template may name.
pub const HASH_ONLY: &str = "HASH_ONLY";
pub const ENCRYPTED_BODY: &str = "ENCRYPTED_BODY";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ContentError {
    #[error("the content key must be 64 hex characters (32 bytes)")]
    BadKey,
    #[error("the retained content cannot be decrypted with this key")]
    Decrypt,
}

/// What is kept of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetainedBody {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// An encrypted body as stored: a fresh nonce per message.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

#[derive(Clone)]
pub struct ContentKey(Aes256Gcm);

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(…)")
    }
}

impl ContentKey {
    pub fn from_hex(hex_key: &str) -> Result<ContentKey, ContentError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| ContentError::BadKey)?;
        if bytes.len() != 32 {
            return Err(ContentError::BadKey);
        }
        Aes256Gcm::new_from_slice(&bytes)
            .map(ContentKey)
            .map_err(|_| ContentError::BadKey)
    }

    pub fn seal(&self, body: &RetainedBody) -> Sealed {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let plain = serde_json::to_vec(body).expect("a body serialises");
        let ciphertext = self
            .0
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .expect("AES-GCM encryption does not fail for in-memory data");
        Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn open(&self, sealed: &Sealed) -> Result<RetainedBody, ContentError> {
        if sealed.nonce.len() != 12 {
            return Err(ContentError::Decrypt);
        }
        let plain = self
            .0
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                sealed.ciphertext.as_slice(),
            )
            .map_err(|_| ContentError::Decrypt)?;
        serde_json::from_slice(&plain).map_err(|_| ContentError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bodies_open_only_with_their_key() {
        let key = ContentKey::from_hex(&"ab".repeat(32)).unwrap();
        let body = RetainedBody {
            subject: "Your order".into(),
            text: "Dear A".into(),
            html: "<p>Dear A</p>".into(),
        };
        let sealed = key.seal(&body);
        assert!(!String::from_utf8_lossy(&sealed.ciphertext).contains("Dear A"));
        assert_eq!(key.open(&sealed).unwrap(), body);
        let other = ContentKey::from_hex(&"cd".repeat(32)).unwrap();
        assert_eq!(other.open(&sealed), Err(ContentError::Decrypt));
        assert_ne!(
            key.seal(&body).nonce,
            sealed.nonce,
            "a fresh nonce every time"
        );
        assert_eq!(
            ContentKey::from_hex("abcd").unwrap_err(),
            ContentError::BadKey
        );
    }
}
