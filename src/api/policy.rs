//! The caller's tenant policy (scope admin): whether it communicates at all, its quiet hours
//! and time zone, and the domains it does not send to. The policy check reads them for every
//! communication that follows (`policy::preferences`). PUT and DELETE are idempotent: no
//! Idempotency-Key.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::policy::tenant::{self, BlockedDomain, TenantPolicy};

use super::auth::{Admin, Caller};
use super::directory::{quiet_together, zone_names, QUIET_TIME};
use super::input::{check_texts, Body, PathOf, Text};
use super::problem::ApiError;
use super::ApiState;

/// A domain the tenant does not send to.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockedDomainView {
    /// The domain, lower-cased.
    domain: String,
    reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<BlockedDomain> for BlockedDomainView {
    fn from(b: BlockedDomain) -> BlockedDomainView {
        BlockedDomainView {
            domain: b.domain,
            reason: b.reason,
            created_at: b.created_at,
        }
    }
}

/// The tenant's policy; a tenant that has set none has the defaults (communicating, no quiet
/// hours, UTC) and `updatedAt` null.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    /// false: every communication of the tenant is SUPPRESSED (`TENANT_DISABLED`).
    communications_enabled: bool,
    /// Quiet hours, `HH:MM` in `timezone`, both or neither: communications that are not
    /// critical are held until they end (a contact's own quiet hours win).
    quiet_start: Option<String>,
    quiet_end: Option<String>,
    /// The IANA time zone of the quiet hours.
    timezone: String,
    /// The domains the tenant does not send to (`DOMAIN_BLOCKED`), by name.
    blocked_domains: Vec<BlockedDomainView>,
    updated_at: Option<DateTime<Utc>>,
}

fn hh_mm(time: NaiveTime) -> String {
    time.format("%H:%M").to_string()
}

fn view(policy: TenantPolicy, blocked: Vec<BlockedDomain>) -> PolicyView {
    PolicyView {
        communications_enabled: policy.communications_enabled,
        quiet_start: policy.quiet.map(|q| hh_mm(q.0)),
        quiet_end: policy.quiet.map(|q| hh_mm(q.1)),
        timezone: policy.timezone.name().to_string(),
        blocked_domains: blocked.into_iter().map(Into::into).collect(),
        updated_at: policy.updated_at,
    }
}

async fn current(
    state: &ApiState,
    tenant: &str,
    policy: TenantPolicy,
) -> Result<Response, ApiError> {
    let blocked = state
        .intake
        .directory
        .blocked_domains(tenant)
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(view(policy, blocked)).into_response())
}

/// `GET /v1/policy`: the tenant's policy with its blocked domains.
#[utoipa::path(
    get,
    path = "/v1/policy",
    tag = "policy",
    operation_id = "getPolicy",
    security(("apiKey" = ["admin"]), ("jwt" = ["admin"])),
    responses(
        (status = 200, description = "The tenant's policy (the defaults when it has set none)", body = PolicyView),
    )
)]
pub async fn get_policy(
    State(state): State<ApiState>,
    caller: Caller<Admin>,
) -> Result<Response, ApiError> {
    let policy = state
        .intake
        .directory
        .tenant_policy(&caller.tenant)
        .await
        .map_err(ApiError::unavailable)?;
    current(&state, &caller.tenant, policy).await
}

/// The policy a tenant sets (all of it: what is left out is cleared).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyInput {
    /// false: the tenant's communications are SUPPRESSED from now on.
    communications_enabled: bool,
    /// Quiet hours, `HH:MM`, both or neither (none when left out).
    #[serde(default)]
    quiet_start: Option<String>,
    #[serde(default)]
    quiet_end: Option<String>,
    /// The IANA time zone of the quiet hours (`Europe/Zurich`).
    timezone: String,
}

/// The schema of [`PolicyInput`] with what its check adds: quiet hours `HH:MM`, both or
/// neither; an IANA time zone.
pub struct PolicyBody;

impl utoipa::PartialSchema for PolicyBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        let mut schema = serde_json::to_value(<PolicyInput as utoipa::PartialSchema>::schema())
            .expect("a schema serialises");
        let fields = &mut schema["properties"];
        fields["timezone"]["enum"] = zone_names(false).into();
        for quiet in ["quietStart", "quietEnd"] {
            fields[quiet]["pattern"] = QUIET_TIME.into();
        }
        schema["description"] =
            "The tenant's policy, all of it (what is left out is cleared).".into();
        let object: utoipa::openapi::Schema =
            serde_json::from_value(schema).expect("the policy's schema is a schema");
        quiet_together(object)
    }
}

impl ToSchema for PolicyBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "PolicyInput".into()
    }
}

type Quiet = Option<(NaiveTime, NaiveTime)>;

fn check_policy(input: &PolicyInput) -> Result<(Quiet, chrono_tz::Tz), Vec<String>> {
    let mut problems = Vec::new();
    let zone = input.timezone.parse::<chrono_tz::Tz>();
    if zone.is_err() {
        problems.push("timezone: not an IANA time zone".into());
    }
    let mut time = |field: &str, value: &Option<String>| {
        value.as_deref().and_then(|v| {
            let parsed = NaiveTime::parse_from_str(v, "%H:%M").ok();
            if parsed.is_none() {
                problems.push(format!("{field}: not HH:MM"));
            }
            parsed
        })
    };
    let start = time("quietStart", &input.quiet_start);
    let end = time("quietEnd", &input.quiet_end);
    if input.quiet_start.is_some() != input.quiet_end.is_some() {
        problems.push("quietEnd: quietStart and quietEnd go together".into());
    }
    match (zone, problems.is_empty()) {
        (Ok(zone), true) => Ok((start.zip(end), zone)),
        _ => Err(problems),
    }
}

/// `PUT /v1/policy`: sets the tenant's policy; the communications requested from now on are
/// checked against it. The answer is the policy with its blocked domains.
#[utoipa::path(
    put,
    path = "/v1/policy",
    tag = "policy",
    operation_id = "putPolicy",
    security(("apiKey" = ["admin"]), ("jwt" = ["admin"])),
    request_body = PolicyBody,
    responses(
        (status = 200, description = "The policy is set", body = PolicyView),
    )
)]
pub async fn put_policy(
    State(state): State<ApiState>,
    caller: Caller<Admin>,
    Body(input): Body<PolicyInput>,
) -> Result<Response, ApiError> {
    let (quiet, zone) = check_policy(&input).map_err(ApiError::bad)?;
    let policy = state
        .intake
        .directory
        .set_tenant_policy(&caller.tenant, input.communications_enabled, quiet, zone)
        .await
        .map_err(ApiError::unavailable)?;
    tracing::info!(tenant = %caller.tenant, enabled = policy.communications_enabled, "tenant policy set");
    current(&state, &caller.tenant, policy).await
}

/// Why a domain is blocked.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlockInput {
    /// Why, as the policy shows it.
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    reason: Option<String>,
}

/// The domain of a path, checked and lower-cased.
fn path_domain(text: &str) -> Result<String, ApiError> {
    tenant::domain(text).map_err(|e| ApiError::bad(vec![format!("domain: {e}")]))
}

/// `PUT /v1/policy/blocked-domains/{domain}`: the tenant sends nothing to addresses of the
/// domain from now on (their communications are SUPPRESSED, `DOMAIN_BLOCKED`). The domain is
/// lower-cased; a block that exists gets the new reason (200).
#[utoipa::path(
    put,
    path = "/v1/policy/blocked-domains/{domain}",
    tag = "policy",
    operation_id = "putBlockedDomain",
    security(("apiKey" = ["admin"]), ("jwt" = ["admin"])),
    params(("domain" = String, Path, max_length = 253, pattern = r"^[^\s.@/\x00-\x1f\x7f-\x9f]+(\.[^\s.@/\x00-\x1f\x7f-\x9f]+)+$", description = "The domain (with a dot; lower-cased)")),
    request_body = BlockInput,
    responses(
        (status = 201, description = "The domain is blocked now", body = BlockedDomainView),
        (status = 200, description = "The domain was blocked already; the reason is the new one", body = BlockedDomainView),
    )
)]
pub async fn put_blocked_domain(
    State(state): State<ApiState>,
    caller: Caller<Admin>,
    PathOf(domain): PathOf<String>,
    Body(input): Body<BlockInput>,
) -> Result<Response, ApiError> {
    let mut problems = check_texts([("reason", input.reason.as_deref(), Text::Name)]);
    let domain = match path_domain(&domain) {
        Ok(domain) => Some(domain),
        Err(err) => {
            problems.extend(err.errors.into_iter().map(|e| e.detail));
            None
        }
    };
    let Some(domain) = domain.filter(|_| problems.is_empty()) else {
        return Err(ApiError::bad(problems));
    };
    let reason = input
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let (blocked, created) = state
        .intake
        .directory
        .block_domain(&caller.tenant, &domain, reason)
        .await
        .map_err(ApiError::unavailable)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(BlockedDomainView::from(blocked))).into_response())
}

/// `DELETE /v1/policy/blocked-domains/{domain}`: the tenant's block of the domain is lifted (a
/// global block stays, and is not the tenant's: 404).
#[utoipa::path(
    delete,
    path = "/v1/policy/blocked-domains/{domain}",
    tag = "policy",
    operation_id = "deleteBlockedDomain",
    security(("apiKey" = ["admin"]), ("jwt" = ["admin"])),
    params(("domain" = String, Path, max_length = 253, pattern = r"^[^\s.@/\x00-\x1f\x7f-\x9f]+(\.[^\s.@/\x00-\x1f\x7f-\x9f]+)+$", description = "The domain")),
    responses(
        (status = 204, description = "The block is lifted"),
        (status = 404, description = "The tenant does not block this domain"),
    )
)]
pub async fn delete_blocked_domain(
    State(state): State<ApiState>,
    caller: Caller<Admin>,
    PathOf(domain): PathOf<String>,
) -> Result<Response, ApiError> {
    let domain = path_domain(&domain)?;
    let lifted = state
        .intake
        .directory
        .unblock_domain(&caller.tenant, &domain)
        .await
        .map_err(ApiError::unavailable)?;
    if lifted {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("the tenant does not block this domain"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(start: Option<&str>, end: Option<&str>, zone: &str) -> PolicyInput {
        PolicyInput {
            communications_enabled: true,
            quiet_start: start.map(str::to_string),
            quiet_end: end.map(str::to_string),
            timezone: zone.into(),
        }
    }

    #[test]
    fn quiet_hours_go_together_and_the_zone_is_an_iana_one() {
        let (quiet, zone) =
            check_policy(&input(Some("22:00"), Some("07:30"), "Europe/Zurich")).unwrap();
        assert_eq!(zone, chrono_tz::Europe::Zurich);
        let (start, end) = quiet.unwrap();
        assert_eq!((hh_mm(start), hh_mm(end)), ("22:00".into(), "07:30".into()));
        assert_eq!(check_policy(&input(None, None, "UTC")).unwrap().0, None);
        assert_eq!(
            check_policy(&input(Some("22:00"), None, "Mars/Olympus")).unwrap_err(),
            vec![
                "timezone: not an IANA time zone".to_string(),
                "quietEnd: quietStart and quietEnd go together".to_string()
            ]
        );
        assert_eq!(
            check_policy(&input(Some("25:00"), Some("07:00"), "UTC")).unwrap_err(),
            vec!["quietStart: not HH:MM".to_string()]
        );
    }
}
