//! The gate of the authenticated routes: authenticate the request (`auth`), count it against
//! its credential's rate (`limit`), scope its Idempotency-Keys to its tenant, run the route, and
//! audit what changed state (`audit`).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::authenticate;
use super::ApiState;

/// The layer of the authenticated routes: authenticate, count against the credential's rate,
/// run the route, audit what changed state.
pub async fn layer(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let caller = match authenticate(&state, request.headers()).await {
        Ok(caller) => caller,
        Err(err) => return err.into_response(),
    };
    if let Err(err) = state.limits.check(&caller.credential) {
        return err.into_response();
    }
    // Idempotency-Keys are kept per tenant (a platform caller that named none has keys of its
    // own, and its commands are refused for the missing Herald-Tenant anyway).
    request.extensions_mut().insert(super::idempotency::Scope {
        credential: caller.credential.limit_key(),
        tenant: caller
            .tenant
            .clone()
            .unwrap_or_else(|| "(platform)".to_string()),
    });
    request.extensions_mut().insert(caller.clone());
    super::audit::around(&state, caller, request, next).await
}
