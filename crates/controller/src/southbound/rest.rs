//! REST endpoints for hosts and join tokens, as routes to merge into the `/v1` router
//! (`api::router(state, southbound::rest::routes(admin))`).
//!
//! - `GET /v1/hosts`: hosts with connection state and last seen (`list_hosts`);
//! - `POST /v1/hosts/{name}/revoke`: revoke its certificate, close its connection
//!   (`revoke_host`);
//! - `DELETE /v1/hosts/{name}`: remove it (`delete_host`);
//! - `GET|POST /v1/join-tokens`, `DELETE /v1/join-tokens/{id}` (`list_join_tokens`,
//!   `create_join_token`, `delete_join_token`).
//!
//! Each names a policy rule; while the policy file has no such rule, the admin role is
//! required.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::json;

use super::{HostAdmin, SouthboundError};
use crate::api::{ApiError, ApiResult, AppState, ExtraRoutes, Path, authenticate, json_body};

/// Default lifetime of a join token.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

impl From<SouthboundError> for ApiError {
    fn from(e: SouthboundError) -> Self {
        match e {
            SouthboundError::Invalid(m) => ApiError::bad_request(m),
            other => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                other.to_string(),
            ),
        }
    }
}

/// Authenticates and checks `rule` (or the admin role while the policy lacks the rule).
async fn authorize(s: &AppState, headers: &HeaderMap, rule: &str) -> ApiResult<()> {
    let caller = authenticate(s, headers).await?;
    let (action, object) = rule.split_once('_').unwrap_or((rule, ""));
    if s.policy.rule_for(action, object) == rule {
        s.require_rule(&caller, rule, None)
    } else if caller.has_role("admin") {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{rule} needs the admin role (or a {rule:?} rule in the policy file)"
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateJoinToken {
    host: Option<String>,
    ttl_seconds: Option<u64>,
    #[serde(default)]
    description: String,
}

/// The routes, bound to a running southbound's admin handle.
pub fn routes(admin: HostAdmin) -> ExtraRoutes {
    let a1 = admin.clone();
    let a2 = admin.clone();
    let a3 = admin.clone();
    let a4 = admin.clone();
    let a5 = admin.clone();
    let a6 = admin;
    ExtraRoutes::new()
        .route(
            "/v1/hosts",
            get(move |State(s): State<AppState>, headers: HeaderMap| async move {
                authorize(&s, &headers, "list_hosts").await?;
                ApiResult::Ok(axum::Json(json!({ "hosts": a1.hosts() })))
            }),
        )
        .route(
            "/v1/hosts/{name}/revoke",
            post(
                move |State(s): State<AppState>, Path(name): Path<String>, headers: HeaderMap| async move {
                    authorize(&s, &headers, "revoke_host").await?;
                    if a2.revoke(&name).await? {
                        ApiResult::Ok(axum::Json(json!({ "revoked": name })))
                    } else {
                        Err(ApiError::not_found(format!("host {name} is not enrolled")))
                    }
                },
            ),
        )
        .route(
            "/v1/hosts/{name}",
            delete(
                move |State(s): State<AppState>, Path(name): Path<String>, headers: HeaderMap| async move {
                    authorize(&s, &headers, "delete_host").await?;
                    if a3.remove(&name).await? {
                        ApiResult::Ok(StatusCode::NO_CONTENT)
                    } else {
                        Err(ApiError::not_found(format!("host {name} is not enrolled")))
                    }
                },
            ),
        )
        .route(
            "/v1/join-tokens",
            get(move |State(s): State<AppState>, headers: HeaderMap| async move {
                authorize(&s, &headers, "list_join_tokens").await?;
                ApiResult::Ok(axum::Json(json!({ "join_tokens": a4.join_tokens().await? })))
            })
            .post(
                move |State(s): State<AppState>,
                      headers: HeaderMap,
                      body: Result<Bytes, BytesRejection>| async move {
                    authorize(&s, &headers, "create_join_token").await?;
                    let body = json_body(&headers, body)?;
                    let req: CreateJoinToken = serde_json::from_slice(&body).map_err(|e| {
                        ApiError::bad_request(format!(
                            "body must be {{\"host\"?: name, \"ttl_seconds\"?: n, \"description\"?: text}}: {e}"
                        ))
                    })?;
                    let ttl = req
                        .ttl_seconds
                        .map_or(DEFAULT_TOKEN_TTL, Duration::from_secs);
                    let (record, token) =
                        a5.create_join_token(req.host, ttl, req.description).await?;
                    ApiResult::Ok(
                        (
                            StatusCode::CREATED,
                            axum::Json(json!({ "token": token, "join_token": record })),
                        )
                            .into_response(),
                    )
                },
            ),
        )
        .route(
            "/v1/join-tokens/{id}",
            delete(
                move |State(s): State<AppState>, Path(id): Path<String>, headers: HeaderMap| async move {
                    authorize(&s, &headers, "delete_join_token").await?;
                    if a6.delete_join_token(&id).await? {
                        ApiResult::<Response>::Ok(StatusCode::NO_CONTENT.into_response())
                    } else {
                        Err(ApiError::not_found(format!("join token {id} does not exist")))
                    }
                },
            ),
        )
}
