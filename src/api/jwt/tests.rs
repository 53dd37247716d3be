//! The verifier against keys the tests make themselves (EC P-256 and Ed25519), with the JWKS
//! in a file.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{EncodingKey, Header};
use rand::RngCore;
use serde_json::json;

const ISSUER: &str = "https://idp.test/realms/herald";
const AUDIENCE: &str = "herald-api";

struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

fn ec_key(kid: &str) -> TestKey {
    let signing = loop {
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&random_bytes()) {
            break key;
        }
    };
    let point = signing.verifying_key().to_sec1_point(false);
    let der = signing.to_pkcs8_der().expect("pkcs8");
    TestKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
            "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
        }),
    }
}

fn ed_key(kid: &str) -> TestKey {
    let signing = ed25519_dalek::SigningKey::from_bytes(&random_bytes());
    let der = signing.to_pkcs8_der().expect("pkcs8");
    TestKey {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes()),
        }),
    }
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// Claims that pass: the right issuer and audience, a tenant, scopes, valid for five minutes.
fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-17",
        "tenant": "acme",
        "scope": "openid send read",
        "iat": now(),
        "nbf": now() - 5,
        "exp": now() + 300,
    })
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign")
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().expect("object").remove(name);
    claims
}

fn settings(path: &std::path::Path) -> JwtSettings {
    toml::from_str(&format!(
        "jwks = {:?}\nissuer = {ISSUER:?}\naudience = {AUDIENCE:?}\n",
        path.display().to_string()
    ))
    .expect("settings")
}

/// A verifier over a JWKS file holding these keys' public parts.
struct Fixture {
    verifier: JwtVerifier,
    _dir: tempfile::TempDir,
}

async fn fixture(keys: &[&TestKey]) -> Fixture {
    fixture_with(keys, |s| s).await
}

async fn fixture_with(
    keys: &[&TestKey],
    adjust: impl FnOnce(JwtSettings) -> JwtSettings,
) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    let set = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    std::fs::write(&path, set.to_string()).expect("write jwks");
    let verifier = JwtVerifier::new(adjust(settings(&path)), reqwest::Client::new())
        .await
        .expect("verifier");
    Fixture {
        verifier,
        _dir: dir,
    }
}

#[tokio::test]
async fn a_valid_token_gives_its_caller() {
    let (ec, ed) = (ec_key("ec-1"), ed_key("ed-1"));
    let fx = fixture(&[&ec, &ed]).await;
    for key in [&ec, &ed] {
        let verified = fx
            .verifier
            .verify(&sign(key, &claims()))
            .await
            .expect("valid");
        assert_eq!(verified.subject, "user-17");
        assert_eq!(verified.tenant.as_deref(), Some("acme"));
        assert_eq!(verified.scopes, ["openid", "send", "read"]);
        assert!(!verified.platform);
        let exp = claims()["exp"].as_i64().expect("exp");
        assert!((verified.expires_at.timestamp() - exp).abs() <= 2);
    }
}

#[tokio::test]
async fn a_signature_by_another_key_with_the_same_kid_is_refused() {
    let (published, impostor) = (ec_key("k1"), ec_key("k1"));
    let fx = fixture(&[&published]).await;
    let refused = fx.verifier.verify(&sign(&impostor, &claims())).await;
    assert_eq!(refused, Err(JwtRejection::BadSignature));
}

#[tokio::test]
async fn issuer_and_audience_must_be_the_configured_ones() {
    let key = ed_key("k1");
    let fx = fixture(&[&key]).await;
    let wrong_iss = with(claims(), "iss", json!("https://elsewhere.test"));
    assert_eq!(
        fx.verifier.verify(&sign(&key, &wrong_iss)).await,
        Err(JwtRejection::WrongIssuer)
    );
    let wrong_aud = with(claims(), "aud", json!("another-api"));
    assert_eq!(
        fx.verifier.verify(&sign(&key, &wrong_aud)).await,
        Err(JwtRejection::WrongAudience)
    );
    let aud_list = with(claims(), "aud", json!(["account", AUDIENCE]));
    assert!(fx.verifier.verify(&sign(&key, &aud_list)).await.is_ok());
    assert_eq!(
        fx.verifier
            .verify(&sign(&key, &without(claims(), "aud")))
            .await,
        Err(JwtRejection::MissingClaim("aud".into()))
    );
    assert_eq!(
        fx.verifier
            .verify(&sign(&key, &without(claims(), "iss")))
            .await,
        Err(JwtRejection::MissingClaim("iss".into()))
    );
}

#[tokio::test]
async fn expiry_and_not_before_are_checked_with_leeway() {
    let key = ec_key("k1");
    let fx = fixture(&[&key]).await; // leeway 30s by default
    let expired = with(claims(), "exp", json!(now() - 120));
    assert_eq!(
        fx.verifier.verify(&sign(&key, &expired)).await,
        Err(JwtRejection::Expired)
    );
    let early = with(claims(), "nbf", json!(now() + 120));
    assert_eq!(
        fx.verifier.verify(&sign(&key, &early)).await,
        Err(JwtRejection::NotYetValid)
    );
    let just_expired = with(claims(), "exp", json!(now() - 10));
    assert!(fx.verifier.verify(&sign(&key, &just_expired)).await.is_ok());
    let almost_valid = with(claims(), "nbf", json!(now() + 10));
    assert!(fx.verifier.verify(&sign(&key, &almost_valid)).await.is_ok());
    assert_eq!(
        fx.verifier
            .verify(&sign(&key, &without(claims(), "exp")))
            .await,
        Err(JwtRejection::MissingClaim("exp".into()))
    );
}

#[tokio::test]
async fn no_leeway_means_none() {
    let key = ec_key("k1");
    let fx = fixture_with(&[&key], |s| JwtSettings {
        leeway: Duration::ZERO,
        ..s
    })
    .await;
    let just_expired = with(claims(), "exp", json!(now() - 10));
    assert_eq!(
        fx.verifier.verify(&sign(&key, &just_expired)).await,
        Err(JwtRejection::Expired)
    );
}

#[tokio::test]
async fn a_tenant_is_required_unless_the_token_is_a_platform_credential() {
    let key = ed_key("k1");
    let fx = fixture(&[&key]).await;
    let no_tenant = without(claims(), "tenant");
    assert_eq!(
        fx.verifier.verify(&sign(&key, &no_tenant)).await,
        Err(JwtRejection::MissingTenant)
    );
    let empty_tenant = with(claims(), "tenant", json!(""));
    assert_eq!(
        fx.verifier.verify(&sign(&key, &empty_tenant)).await,
        Err(JwtRejection::MissingTenant)
    );
    let number_tenant = with(claims(), "tenant", json!(42));
    assert_eq!(
        fx.verifier.verify(&sign(&key, &number_tenant)).await,
        Err(JwtRejection::InvalidClaim("tenant".into()))
    );
    let platform = with(no_tenant, "scope", json!("herald:platform operate"));
    let verified = fx
        .verifier
        .verify(&sign(&key, &platform))
        .await
        .expect("platform");
    assert!(verified.platform);
    assert_eq!(verified.tenant, None);
    assert_eq!(verified.scopes, ["herald:platform", "operate"]);
}

#[tokio::test]
async fn scopes_come_as_a_string_or_an_array_under_the_configured_names() {
    let key = ec_key("k1");
    let fx = fixture_with(&[&key], |s| JwtSettings {
        tenant_claim: "https://herald.test/tenant".into(),
        scopes_claim: "scp".into(),
        ..s
    })
    .await;
    let base = with(
        without(without(claims(), "tenant"), "scope"),
        "https://herald.test/tenant",
        json!("globex"),
    );
    let as_string = with(base.clone(), "scp", json!("send  admin"));
    let verified = fx
        .verifier
        .verify(&sign(&key, &as_string))
        .await
        .expect("string");
    assert_eq!(verified.scopes, ["send", "admin"]);
    assert_eq!(verified.tenant.as_deref(), Some("globex"));
    let as_array = with(base.clone(), "scp", json!(["read", "operate"]));
    let verified = fx
        .verifier
        .verify(&sign(&key, &as_array))
        .await
        .expect("array");
    assert_eq!(verified.scopes, ["read", "operate"]);
    let none = fx
        .verifier
        .verify(&sign(&key, &base))
        .await
        .expect("no scopes");
    assert!(none.scopes.is_empty());
    let odd = with(base.clone(), "scp", json!({"send": true}));
    assert_eq!(
        fx.verifier.verify(&sign(&key, &odd)).await,
        Err(JwtRejection::InvalidClaim("scp".into()))
    );
    let odd_item = with(base, "scp", json!(["send", 7]));
    assert_eq!(
        fx.verifier.verify(&sign(&key, &odd_item)).await,
        Err(JwtRejection::InvalidClaim("scp".into()))
    );
}

#[tokio::test]
async fn a_subject_is_required() {
    let key = ec_key("k1");
    let fx = fixture(&[&key]).await;
    for claims in [without(claims(), "sub"), with(claims(), "sub", json!(" "))] {
        assert_eq!(
            fx.verifier.verify(&sign(&key, &claims)).await,
            Err(JwtRejection::MissingSubject)
        );
    }
}

fn unsigned(header: Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[tokio::test]
async fn alg_none_is_refused() {
    let key = ec_key("k1");
    let fx = fixture(&[&key]).await;
    for alg in ["none", "None", "NONE"] {
        let token = unsigned(json!({"alg": alg, "typ": "JWT", "kid": "k1"}), &claims());
        assert_eq!(
            fx.verifier.verify(&token).await,
            Err(JwtRejection::UnsupportedAlgorithm)
        );
    }
}

#[tokio::test]
async fn hs256_is_refused_even_keyed_with_the_public_key() {
    let key = ec_key("k1");
    let fx = fixture(&[&key]).await;
    // the classic confusion: an HMAC over the token keyed with the published key's bytes
    let secret = key.jwk.to_string();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(secret.as_bytes()).expect("secret"),
    )
    .expect("sign");
    assert_eq!(
        fx.verifier.verify(&token).await,
        Err(JwtRejection::UnsupportedAlgorithm)
    );
}

#[tokio::test]
async fn a_token_must_fit_its_key_and_name_a_known_one() {
    let (ec, ed) = (ec_key("ec-1"), ed_key("ed-1"));
    let fx = fixture(&[&ec, &ed]).await;
    let stranger = ec_key("nobody");
    assert_eq!(
        fx.verifier.verify(&sign(&stranger, &claims())).await,
        Err(JwtRejection::UnknownKey)
    );
    // an Ed25519 signature claiming the EC key
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("ec-1".into());
    let token = jsonwebtoken::encode(&header, &claims(), &ed.encoding).expect("sign");
    assert_eq!(
        fx.verifier.verify(&token).await,
        Err(JwtRejection::AlgorithmMismatch)
    );
    // without kid: the one EdDSA key fits
    let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims(), &ed.encoding)
        .expect("sign");
    assert!(fx.verifier.verify(&token).await.is_ok());
}

#[tokio::test]
async fn without_kid_several_fitting_keys_are_ambiguous() {
    let (a, b) = (ed_key("a"), ed_key("b"));
    let fx = fixture(&[&a, &b]).await;
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims(), &a.encoding).expect("sign");
    assert_eq!(
        fx.verifier.verify(&token).await,
        Err(JwtRejection::MissingKeyId)
    );
}

#[tokio::test]
async fn garbage_is_malformed() {
    let key = ec_key("k1");
    let fx = fixture(&[&key]).await;
    let good = sign(&key, &claims());
    let (head, _) = good.split_once('.').expect("parts");
    for token in [
        "",
        "not-a-token",
        "a.b.c",
        &format!("{head}.!!!.sig"),
        &format!("{head}.{}.", URL_SAFE_NO_PAD.encode("[1,2]")),
    ] {
        let refused = fx.verifier.verify(token).await.expect_err(token);
        assert!(
            matches!(
                refused,
                JwtRejection::Malformed | JwtRejection::BadSignature
            ),
            "{token}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn an_algorithm_left_out_of_the_settings_is_refused() {
    let (ec, ed) = (ec_key("ec-1"), ed_key("ed-1"));
    let fx = fixture_with(&[&ec, &ed], |s| JwtSettings {
        algorithms: vec![SigningAlgorithm::ES256],
        ..s
    })
    .await;
    assert!(fx.verifier.verify(&sign(&ec, &claims())).await.is_ok());
    assert_eq!(
        fx.verifier.verify(&sign(&ed, &claims())).await,
        Err(JwtRejection::UnsupportedAlgorithm)
    );
}

#[test]
fn the_rejection_header_never_holds_the_token_or_claim_values() {
    let header = JwtRejection::InvalidClaim("te\"n\\ant".into()).www_authenticate();
    assert_eq!(
        header,
        "Bearer error=\"invalid_token\", error_description=\"the token's tenant claim has the wrong form\""
    );
    assert_eq!(
        JwtRejection::Expired.www_authenticate(),
        "Bearer error=\"invalid_token\", error_description=\"the token has expired\""
    );
}

#[test]
fn settings_have_defaults_and_refuse_symmetric_and_none_algorithms() {
    let parsed: JwtSettings =
        toml::from_str("jwks = \"https://idp.test/jwks.json\"\nissuer = \"i\"\naudience = \"a\"\n")
            .expect("settings");
    assert_eq!(
        parsed.jwks,
        JwksSource::Url(url::Url::parse("https://idp.test/jwks.json").expect("url"))
    );
    assert_eq!(parsed.tenant_claim, "tenant");
    assert_eq!(parsed.scopes_claim, "scope");
    assert_eq!(parsed.platform_scope, "herald:platform");
    assert_eq!(parsed.leeway, Duration::from_secs(30));
    assert_eq!(parsed.jwks_refresh, Duration::from_secs(600));
    assert_eq!(
        parsed.algorithms,
        [
            SigningAlgorithm::RS256,
            SigningAlgorithm::ES256,
            SigningAlgorithm::EdDSA
        ]
    );
    let written = toml::to_string(&parsed).expect("serialize");
    assert_eq!(
        toml::from_str::<JwtSettings>(&written).expect("again"),
        parsed
    );
    let base = "jwks = \"/etc/herald/jwks.json\"\nissuer = \"i\"\naudience = \"a\"\n";
    let file: JwtSettings = toml::from_str(base).expect("file form");
    assert_eq!(
        file.jwks,
        JwksSource::File(PathBuf::from("/etc/herald/jwks.json"))
    );
    for refused in [
        "algorithms = [\"HS256\"]",
        "algorithms = [\"none\"]",
        "leeway = \"soon\"",
        "tenant = \"x\"",
    ] {
        assert!(
            toml::from_str::<JwtSettings>(&format!("{base}{refused}\n")).is_err(),
            "{refused}"
        );
    }
    for jwks in ["ftp://idp.test/jwks", ""] {
        let text = format!("jwks = {jwks:?}\nissuer = \"i\"\naudience = \"a\"\n");
        assert!(toml::from_str::<JwtSettings>(&text).is_err(), "{jwks}");
    }
}

#[tokio::test]
async fn the_start_fails_on_an_unreadable_or_keyless_jwks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.json");
    let made = JwtVerifier::new(settings(&missing), reqwest::Client::new()).await;
    assert!(matches!(made, Err(JwtError::File { .. })));

    let not_json = dir.path().join("not.json");
    std::fs::write(&not_json, "<html>").expect("write");
    let made = JwtVerifier::new(settings(&not_json), reqwest::Client::new()).await;
    assert!(matches!(made, Err(JwtError::Parse { .. })));

    let keyless = dir.path().join("keyless.json");
    let oct = json!({"keys": [
        {"kty": "oct", "k": URL_SAFE_NO_PAD.encode("secret"), "kid": "h", "alg": "HS256"},
        {"kty": "EC", "crv": "P-256", "kid": "short", "x": "AAAA", "y": "AAAA"},
        {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc",
         "x": URL_SAFE_NO_PAD.encode([7u8; 32])},
        {"kty": "RSA", "kid": "tiny", "n": URL_SAFE_NO_PAD.encode([0xffu8; 64]), "e": "AQAB"},
    ]});
    std::fs::write(&keyless, oct.to_string()).expect("write");
    let made = JwtVerifier::new(settings(&keyless), reqwest::Client::new()).await;
    assert!(matches!(made, Err(JwtError::NoUsableKey { .. })));

    let bad = JwtSettings {
        algorithms: Vec::new(),
        issuer: " ".into(),
        ..settings(&missing)
    };
    let made = JwtVerifier::new(bad, reqwest::Client::new()).await;
    let Err(JwtError::Settings(problems)) = made else {
        panic!("settings not refused");
    };
    assert!(problems.contains("issuer") && problems.contains("algorithms"));
}
