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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;
    use weft_southbound::MemoryViewSource;
    use weft_store::{EmbeddedStore, Store};

    use super::*;
    use crate::auth::Tokens;
    use crate::southbound::{MemoryWriteSink, Southbound, SouthboundConfig};
    use crate::{IntentService, Policy, api};

    #[tokio::test]
    async fn hosts_and_join_tokens_over_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let sb = Southbound::start(
            SouthboundConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..SouthboundConfig::default()
            },
            store.clone(),
            Arc::new(MemoryViewSource::new(1, 8)),
            Arc::new(MemoryWriteSink::default()),
        )
        .await
        .unwrap();
        let intent = IntentService::start(store.clone()).await.unwrap();
        let tokens = Tokens::new(store.clone());
        let (_, admin) = tokens
            .create(None, vec!["admin".into()], String::new())
            .await
            .unwrap();
        let (_, member) = tokens
            .create(None, vec!["member".into()], String::new())
            .await
            .unwrap();
        let state = api::AppState {
            intent: intent.clone(),
            tokens,
            policy: Arc::new(Policy::default_policy()),
            openapi: Arc::new(Value::Null),
            compile: crate::compile::CompileService::start(intent),
        };
        let app = api::router(state, routes(sb.admin()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let http = reqwest::Client::new();

        let r = http.get(format!("{base}/v1/hosts")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = http
            .get(format!("{base}/v1/hosts"))
            .bearer_auth(&member)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);

        let r = http
            .post(format!("{base}/v1/join-tokens"))
            .bearer_auth(&admin)
            .json(&json!({"host": "h1", "ttl_seconds": 60}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        let token: weft_southbound::JoinToken = body["token"].as_str().unwrap().parse().unwrap();
        assert_eq!(body["join_token"]["host"], "h1");
        let r = http
            .post(format!("{base}/v1/join-tokens"))
            .bearer_auth(&admin)
            .json(&json!({"host": "Bad Name"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);

        // Enrol h1 with that token, as the Enroll RPC would.
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::new(vec!["h1".to_string()])
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        sb.admin()
            .shared
            .registry
            .enroll(
                &sb.admin().shared.ca,
                &token.credential(),
                "h1",
                csr.der(),
                Duration::from_secs(3600),
                super::super::service::now_unix(),
            )
            .await
            .unwrap();

        let hosts: Value = http
            .get(format!("{base}/v1/hosts"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(hosts["hosts"][0]["name"], "h1");
        assert_eq!(hosts["hosts"][0]["state"], "disconnected");
        let listed: Value = http
            .get(format!("{base}/v1/join-tokens"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed["join_tokens"][0]["used_by"], "h1");
        assert!(listed["join_tokens"][0].get("secret_sha256").is_none());

        let r = http
            .post(format!("{base}/v1/hosts/h1/revoke"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(sb.admin().hosts()[0].state, "revoked");
        let r = http
            .delete(format!("{base}/v1/hosts/h1"))
            .bearer_auth(&member)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = http
            .delete(format!("{base}/v1/hosts/h1"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert!(sb.admin().hosts().is_empty());
        let r = http
            .delete(format!("{base}/v1/hosts/h1"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = http
            .delete(format!("{base}/v1/join-tokens/{}", token.id))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        sb.shutdown().await;
    }
}
