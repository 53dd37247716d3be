//! Who calls: every route under `/v1/` but the provider feedback needs
//! `Authorization: Bearer <API key>`. The credential decides the tenant; a platform credential
//! names the tenant it acts for in `Herald-Tenant`. The layer authenticates once per request and
//! leaves an [`Authenticated`] in the request's extensions; handlers take a [`Caller`] of the
//! scope they need, so that a route cannot forget the check.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use secrecy::SecretString;
use uuid::Uuid;

use super::keys::{check_tenant, KeyLookup, Scope};
use super::problem::{ApiError, ProblemKind};
use super::ApiState;

/// The header a platform credential names its tenant with.
pub const TENANT_HEADER: &str = "herald-tenant";

/// The credential a request was made with, as the audit records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    ApiKey(Uuid),
    Jwt {
        subject: String,
    },
    /// A provider's callback under its own credentials (Postmark's basic authentication).
    Provider(&'static str),
}

impl Credential {
    /// The key the rate limit counts under.
    pub fn limit_key(&self) -> String {
        match self {
            Credential::ApiKey(id) => format!("key:{id}"),
            Credential::Jwt { subject } => format!("jwt:{subject}"),
            Credential::Provider(name) => format!("provider:{name}"),
        }
    }
}

/// An authenticated request: its credential, the scopes it holds, and the tenant it acts for
/// (`None` for a platform credential that named none).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub credential: Credential,
    pub platform: bool,
    pub scopes: Vec<Scope>,
    pub tenant: Option<String>,
}

/// A scope a route needs, as a type: `Caller<Read>`.
pub trait NeedsScope {
    const SCOPE: Scope;
}

macro_rules! scope_marker {
    ($name:ident, $scope:expr) => {
        #[derive(Debug)]
        pub struct $name;
        impl NeedsScope for $name {
            const SCOPE: Scope = $scope;
        }
    };
}

scope_marker!(Send, Scope::Send);
scope_marker!(Read, Scope::Read);
scope_marker!(Operate, Scope::Operate);
scope_marker!(Admin, Scope::Admin);

/// A caller holding scope `S`, acting for `tenant`.
#[derive(Debug)]
pub struct Caller<S: NeedsScope> {
    pub tenant: String,
    pub credential: Credential,
    scope: PhantomData<S>,
}

impl<S: NeedsScope, St: Sync> FromRequestParts<St> for Caller<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        let caller = scoped(parts, S::SCOPE)?;
        let tenant = caller.tenant.clone().ok_or_else(|| {
            ApiError::invalid(vec![super::problem::FieldProblem::at(
                "header:Herald-Tenant",
                "a platform credential names the tenant it acts for in the Herald-Tenant header",
            )])
        })?;
        Ok(Caller {
            tenant,
            credential: caller.credential.clone(),
            scope: PhantomData,
        })
    }
}

/// A platform caller holding scope `S` (for what spans tenants, such as provider feedback).
#[derive(Debug)]
pub struct PlatformCaller<S: NeedsScope> {
    pub credential: Credential,
    scope: PhantomData<S>,
}

impl<S: NeedsScope, St: Sync> FromRequestParts<St> for PlatformCaller<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        let caller = scoped(parts, S::SCOPE)?;
        if !caller.platform {
            return Err(ApiError::new(
                ProblemKind::Forbidden,
                "this route needs a platform credential",
            ));
        }
        Ok(PlatformCaller {
            credential: caller.credential.clone(),
            scope: PhantomData,
        })
    }
}

fn scoped(parts: &Parts, scope: Scope) -> Result<&Authenticated, ApiError> {
    let caller = parts
        .extensions
        .get::<Authenticated>()
        .ok_or_else(|| ApiError::internal("a route needing a caller is outside the auth layer"))?;
    if caller.scopes.contains(&scope) {
        Ok(caller)
    } else {
        Err(ApiError::new(
            ProblemKind::Forbidden,
            format!("this route needs the '{scope}' scope"),
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&format!(
                "Bearer realm=\"herald\", error=\"insufficient_scope\", scope=\"{scope}\""
            ))
            .expect("a scope name is a header value"),
        ))
    }
}

/// 401 with the `WWW-Authenticate` challenge of RFC 6750.
pub fn unauthorized(detail: &str, token_given: bool) -> ApiError {
    let challenge = if token_given {
        format!("Bearer realm=\"herald\", error=\"invalid_token\", error_description=\"{detail}\"")
    } else {
        "Bearer realm=\"herald\"".to_string()
    };
    ApiError::new(ProblemKind::Unauthorized, detail).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).expect("the challenge is a header value"),
    )
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<SecretString> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .map(|t| SecretString::from(t.to_string()))
}

/// Authenticates a request's headers: the credential, then the tenant it acts for.
pub async fn authenticate(
    state: &ApiState,
    headers: &HeaderMap,
) -> Result<Authenticated, ApiError> {
    let token = bearer(headers)
        .ok_or_else(|| unauthorized("this route needs Authorization: Bearer <API key>", false))?;
    let (credential, home, platform, scopes) = match (&state.jwt, looks_like_jwt(&token)) {
        (Some(verifier), true) => from_jwt(verifier, &token).await?,
        _ => from_key(state, &token).await?,
    };
    let named = headers
        .get(TENANT_HEADER)
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|t| check_tenant(t).is_ok())
                .map(str::to_string)
                .ok_or_else(|| {
                    ApiError::invalid(vec![super::problem::FieldProblem::at(
                        "header:Herald-Tenant",
                        "a tenant id has 1 to 64 letters, digits, '.', '_' or '-'",
                    )])
                })
        })
        .transpose()?;
    let tenant = match (home, named) {
        (Some(home), Some(named)) if home != named => {
            return Err(ApiError::new(
                ProblemKind::Forbidden,
                "this credential acts for its own tenant only; leave out Herald-Tenant",
            ))
        }
        (Some(home), _) => Some(home),
        (None, named) => named,
    };
    Ok(Authenticated {
        credential,
        platform,
        scopes,
        tenant,
    })
}

type Identity = (Credential, Option<String>, bool, Vec<Scope>);

/// A JWT has three dot-separated parts; herald's keys have none.
fn looks_like_jwt(token: &SecretString) -> bool {
    use secrecy::ExposeSecret;
    token.expose_secret().split('.').count() == 3
}

async fn from_key(state: &ApiState, token: &SecretString) -> Result<Identity, ApiError> {
    match state.keys.authenticate(token).await {
        Ok(KeyLookup::Valid(key)) => Ok((
            Credential::ApiKey(key.key_id),
            key.tenant_id,
            key.platform,
            key.scopes,
        )),
        Ok(KeyLookup::Revoked) => Err(unauthorized("the API key is revoked", true)),
        Ok(KeyLookup::Expired) => Err(unauthorized("the API key has expired", true)),
        Ok(KeyLookup::Unknown) => Err(unauthorized(
            "the bearer token is not a valid credential",
            true,
        )),
        Err(err) => Err(ApiError::unavailable(err)),
    }
}

/// A verified JWT: its subject, tenant and herald's scopes among its scopes (an identity
/// provider's tokens carry others too, such as `openid`: those are not herald's to judge).
async fn from_jwt(
    verifier: &super::jwt::JwtVerifier,
    token: &SecretString,
) -> Result<Identity, ApiError> {
    use secrecy::ExposeSecret;
    let verified = verifier
        .verify(token.expose_secret())
        .await
        .map_err(|rejection| {
            ApiError::new(ProblemKind::Unauthorized, rejection.to_string()).with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&rejection.www_authenticate())
                    .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"herald\"")),
            )
        })?;
    if let Some(tenant) = verified.tenant.as_deref() {
        if check_tenant(tenant).is_err() {
            return Err(unauthorized(
                "the token's tenant claim is not a tenant id",
                true,
            ));
        }
    }
    let mut scopes: Vec<Scope> = verified
        .scopes
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    scopes.sort();
    scopes.dedup();
    let home = if verified.platform {
        None
    } else {
        verified.tenant
    };
    Ok((
        Credential::Jwt {
            subject: verified.subject,
        },
        home,
        verified.platform,
        scopes,
    ))
}
