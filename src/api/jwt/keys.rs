//! The usable keys of a JWKS: public signature keys of a known type whose material is sound,
//! each with the algorithms it may verify (its type's, narrowed by its own `alg` and by the
//! allowed ones). A key that does not qualify is skipped with a warning, never an error: an IdP
//! may publish encryption keys or key types herald does not use beside the ones it does.

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;

/// RSA moduli shorter than this are refused.
const MIN_RSA_BITS: usize = 2048;

pub(super) struct KeySet {
    keys: Vec<UsableKey>,
}

struct UsableKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// The answer to "which key verifies this token".
pub(super) enum Lookup<'a> {
    Found(&'a DecodingKey),
    /// The token names a `kid` the set does not hold.
    UnknownKid,
    /// The token names no `kid`; so many keys of the set fit its algorithm.
    NoKid {
        candidates: usize,
    },
    /// The key the token names does not verify its algorithm.
    WrongAlgorithm,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<Value>,
}

impl KeySet {
    /// The usable keys of a JWKS document; an error only when it is no `{"keys": [...]}`.
    pub(super) fn parse(bytes: &[u8], allowed: &[Algorithm]) -> Result<KeySet, String> {
        let raw: RawSet = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let keys = raw
            .keys
            .into_iter()
            .enumerate()
            .filter_map(|(n, value)| match usable(value, allowed) {
                Ok(key) => Some(key),
                Err(why) => {
                    tracing::warn!(key = n, why, "JWKS key skipped");
                    None
                }
            })
            .collect();
        Ok(KeySet { keys })
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(super) fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The key for a token's `kid` and `alg`. A token without `kid` is verified only when one
    /// key alone fits its algorithm.
    pub(super) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Lookup::UnknownKid;
                }
                match named.find(|k| k.algorithms.contains(&alg)) {
                    Some(key) => Lookup::Found(&key.key),
                    None => Lookup::WrongAlgorithm,
                }
            }
            None => {
                let fitting: Vec<&UsableKey> = self
                    .keys
                    .iter()
                    .filter(|k| k.algorithms.contains(&alg))
                    .collect();
                match fitting.as_slice() {
                    [one] => Lookup::Found(&one.key),
                    other => Lookup::NoKid {
                        candidates: other.len(),
                    },
                }
            }
        }
    }
}

fn usable(value: Value, allowed: &[Algorithm]) -> Result<UsableKey, &'static str> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|_| "not a readable JWK")?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("not a signature key (use)"),
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.iter().any(|op| matches!(op, KeyOperations::Verify)) {
            return Err("not a verification key (key_ops)");
        }
    }
    let by_type: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let n = decode(&rsa.n)?;
            let e = decode(&rsa.e)?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < MIN_RSA_BITS || e.is_empty() {
                return Err("RSA key too short");
            }
            &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ]
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (size, algorithm) = match ec.curve {
                EllipticCurve::P256 => (32, Algorithm::ES256),
                EllipticCurve::P384 => (48, Algorithm::ES384),
                _ => return Err("elliptic curve not used"),
            };
            if decode(&ec.x)?.len() != size || decode(&ec.y)?.len() != size {
                return Err("EC key coordinates of the wrong size");
            }
            match algorithm {
                Algorithm::ES256 => &[Algorithm::ES256],
                _ => &[Algorithm::ES384],
            }
        }
        AlgorithmParameters::OctetKeyPair(okp) => {
            if !matches!(okp.curve, EllipticCurve::Ed25519) {
                return Err("octet key pair curve not used");
            }
            if decode(&okp.x)?.len() != 32 {
                return Err("Ed25519 key of the wrong size");
            }
            &[Algorithm::EdDSA]
        }
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are never used"),
        _ => return Err("key type not used"),
    };
    let declared = match jwk.common.key_algorithm {
        Some(alg) => Some(Algorithm::try_from(alg).map_err(|_| "key algorithm not used")?),
        None => None,
    };
    let algorithms: Vec<Algorithm> = by_type
        .iter()
        .copied()
        .filter(|a| declared.is_none_or(|d| d == *a) && allowed.contains(a))
        .collect();
    if algorithms.is_empty() {
        return Err("no allowed algorithm fits the key");
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "key material unreadable")?;
    Ok(UsableKey {
        kid: jwk.common.key_id.clone(),
        algorithms,
        key,
    })
}

fn decode(part: &str) -> Result<Vec<u8>, &'static str> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| "key material is not base64url")
}
