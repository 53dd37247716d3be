//! JWT bearer tokens against a JWKS the verifier reads itself: served over HTTP on loopback (a
//! small axum server of the test, which counts its fetches) and from a file. Key rotation: a
//! token signed with a new key verifies once the set is fetched again for its unknown `kid`;
//! unknown kids do not make the verifier fetch more than once per few seconds; the periodic
//! refresh reads the set again, and an IdP that is down leaves the old keys in use.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use herald::api::jwt::{JwksSource, JwtError, JwtRejection, JwtSettings, JwtVerifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde_json::{json, Value};

pub(crate) const ISSUER: &str = "https://idp.loopback.test";
pub(crate) const AUDIENCE: &str = "herald";

pub(crate) struct TestKey {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) encoding: EncodingKey,
    pub(crate) jwk: Value,
}

fn seed() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

pub(crate) fn ec_key(kid: &str) -> TestKey {
    let signing = loop {
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&seed()) {
            break key;
        }
    };
    let point = signing.verifying_key().to_sec1_point(false);
    TestKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(signing.to_pkcs8_der().expect("pkcs8").as_bytes()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
            "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
        }),
    }
}

pub(crate) fn ed_key(kid: &str) -> TestKey {
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed());
    TestKey {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(signing.to_pkcs8_der().expect("pkcs8").as_bytes()),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes()),
        }),
    }
}

pub(crate) fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

fn token(key: &TestKey, tenant: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    let claims = json!({
        "iss": ISSUER, "aud": [AUDIENCE, "account"], "sub": "svc-billing",
        "tenant": tenant, "scope": ["send", "read"],
        "iat": now, "exp": now + 300,
    });
    jsonwebtoken::encode(&header, &claims, &key.encoding).expect("sign")
}

fn settings(jwks: &str, extra: &str) -> JwtSettings {
    toml::from_str(&format!(
        "jwks = {jwks:?}\nissuer = {ISSUER:?}\naudience = {AUDIENCE:?}\n{extra}"
    ))
    .expect("jwt settings")
}

/// What the loopback IdP answers, and how often it was asked.
#[derive(Clone)]
struct Idp {
    answer: Arc<Mutex<(StatusCode, Value)>>,
    fetches: Arc<AtomicUsize>,
    url: String,
}

impl Idp {
    async fn start(set: Value) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let idp = Idp {
            answer: Arc::new(Mutex::new((StatusCode::OK, set))),
            fetches: Arc::new(AtomicUsize::new(0)),
            url: format!(
                "http://{}/.well-known/jwks.json",
                listener.local_addr().expect("address")
            ),
        };
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .with_state(idp.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        idp
    }

    fn answer(&self, status: StatusCode, set: Value) {
        *self.answer.lock().expect("lock") = (status, set);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn serve_jwks(State(idp): State<Idp>) -> impl IntoResponse {
    idp.fetches.fetch_add(1, Ordering::SeqCst);
    let (status, set) = idp.answer.lock().expect("lock").clone();
    (status, Json(set))
}

#[tokio::test]
async fn a_jwks_served_on_loopback_verifies_tokens_and_follows_a_key_rotation() {
    let (old, new) = (ec_key("2026-old"), ed_key("2026-new"));
    let idp = Idp::start(jwks(&[&old])).await;
    let verifier = JwtVerifier::new(settings(&idp.url, ""), reqwest::Client::new())
        .await
        .expect("the verifier loads the JWKS");
    assert_eq!(idp.fetches(), 1);

    let caller = verifier.verify(&token(&old, "acme")).await.expect("valid");
    assert_eq!(caller.subject, "svc-billing");
    assert_eq!(caller.tenant.as_deref(), Some("acme"));
    assert_eq!(caller.scopes, ["send", "read"]);
    assert_eq!(idp.fetches(), 1, "a known kid needs no fetch");

    // the IdP rotates: it publishes the new key beside the old one
    idp.answer(StatusCode::OK, jwks(&[&old, &new]));
    let caller = verifier
        .verify(&token(&new, "globex"))
        .await
        .expect("the new key verifies after the refetch");
    assert_eq!(caller.tenant.as_deref(), Some("globex"));
    assert_eq!(idp.fetches(), 2);
    assert!(verifier.verify(&token(&old, "acme")).await.is_ok());
    assert_eq!(idp.fetches(), 2);

    // made-up kids: refused; right after the rotation's fetch they cause none, and once the
    // interval has passed, all five together cause one
    let strangers: Vec<TestKey> = (0..5).map(|n| ec_key(&format!("made-up-{n}"))).collect();
    for stranger in &strangers {
        assert_eq!(
            verifier.verify(&token(stranger, "acme")).await,
            Err(JwtRejection::UnknownKey)
        );
    }
    assert_eq!(idp.fetches(), 2, "no fetch within the interval");
    tokio::time::sleep(Duration::from_millis(5200)).await;
    for stranger in &strangers {
        assert_eq!(
            verifier.verify(&token(stranger, "acme")).await,
            Err(JwtRejection::UnknownKey)
        );
    }
    assert_eq!(
        idp.fetches(),
        3,
        "unknown kids fetch at most once per interval"
    );
}

#[tokio::test]
async fn the_periodic_refresh_reads_the_set_again_and_survives_an_idp_outage() {
    let (first, second) = (ed_key("first"), ed_key("second"));
    let idp = Idp::start(jwks(&[&first])).await;
    let verifier = JwtVerifier::new(
        settings(&idp.url, "jwks_refresh = \"5s\"\n"),
        reqwest::Client::new(),
    )
    .await
    .expect("verifier");
    assert!(verifier.verify(&token(&first, "acme")).await.is_ok());

    // the IdP goes down: the refresh fails, the keys there were stay in use
    idp.answer(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "down"}));
    tokio::time::sleep(Duration::from_millis(5200)).await;
    assert!(verifier.verify(&token(&first, "acme")).await.is_ok());
    assert_eq!(idp.fetches(), 2, "the refresh was tried");

    // back up, with the first key withdrawn: the next refresh drops it
    idp.answer(StatusCode::OK, jwks(&[&second]));
    tokio::time::sleep(Duration::from_millis(5200)).await;
    assert!(verifier.verify(&token(&second, "acme")).await.is_ok());
    assert_eq!(
        idp.fetches(),
        3,
        "one refresh, which brought the second key"
    );
    assert_eq!(
        verifier.verify(&token(&first, "acme")).await,
        Err(JwtRejection::UnknownKey)
    );
}

#[tokio::test]
async fn the_start_fails_clearly_when_the_jwks_url_fails() {
    let idp = Idp::start(json!({"error": "nope"})).await;
    idp.answer(StatusCode::NOT_FOUND, json!({"error": "nope"}));
    let made = JwtVerifier::new(settings(&idp.url, ""), reqwest::Client::new()).await;
    let Err(error @ JwtError::Status { .. }) = made else {
        panic!("a 404 JWKS must fail the start");
    };
    assert!(error.to_string().contains("404"), "{error}");

    idp.answer(StatusCode::OK, json!({"keys": []}));
    let made = JwtVerifier::new(settings(&idp.url, ""), reqwest::Client::new()).await;
    assert!(matches!(made, Err(JwtError::NoUsableKey { .. })));

    // a port nobody listens on
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let url = format!("http://{}/jwks.json", closed.local_addr().expect("address"));
    drop(closed);
    let made = JwtVerifier::new(settings(&url, ""), reqwest::Client::new()).await;
    assert!(matches!(made, Err(JwtError::Fetch { .. })));
}

#[tokio::test]
async fn the_file_form_is_read_at_start_and_again_for_an_unknown_kid() {
    let (old, new) = (ec_key("file-old"), ec_key("file-new"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&old]).to_string()).expect("write");
    let settings = settings(path.to_str().expect("utf-8 path"), "");
    assert_eq!(settings.jwks, JwksSource::File(path.clone()));
    let verifier = JwtVerifier::new(settings, reqwest::Client::new())
        .await
        .expect("verifier");
    assert!(verifier.verify(&token(&old, "acme")).await.is_ok());

    std::fs::write(&path, jwks(&[&new]).to_string()).expect("rotate the file");
    assert!(verifier.verify(&token(&new, "acme")).await.is_ok());
    assert_eq!(
        verifier.verify(&token(&old, "acme")).await,
        Err(JwtRejection::UnknownKey),
        "the rotated file no longer holds the old key"
    );
}
