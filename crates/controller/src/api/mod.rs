//! The REST API (`/v1`): HTTP is parsed into model commands here, at the
//! edge; the intent service never sees HTTP types.
//!
//! Every error is JSON `{code, message, field?}` with the matching status;
//! bodies are bounded; objects of other projects answer 404.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::{Value, json};
use tracing::warn;
use weft_model::{Command, ErrorCode, Id, Kind, ModelError, Object, Spec};

use crate::auth::{AuthError, Tokens};
use crate::intent::{IntentService, SubmitError};
use crate::policy::{Caller, Policy};

pub mod bgp; // Hook (BGP integration): /v1/bgp and /v1/hosts/{name}/tunnel.
pub mod openapi;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// Default and largest page size of list calls.
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;

/// Hooks for endpoints that live in other parts of the controller (trace,
/// hosts, BGP), merged into the router by the caller.
pub type ExtraRoutes = Router<AppState>;

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct AppState {
    /// The intent.
    pub intent: IntentService,
    /// Token verification.
    pub tokens: Tokens,
    /// Authorization.
    pub policy: Arc<Policy>,
    /// The OpenAPI document.
    pub openapi: Arc<Value>,
    /// The compiled pipelines (traces).
    pub compile: crate::compile::CompileService,
}

/// An API error: status plus the JSON body.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: StatusCode,
    /// Machine-readable class.
    pub code: &'static str,
    /// What was wrong and what to do.
    pub message: String,
    /// The offending field, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// Names a field.
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(&self)).into_response()
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        let (status, code) = match e.code {
            ErrorCode::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
            ErrorCode::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorCode::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorCode::PreconditionFailed => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
        };
        ApiError {
            status,
            code,
            message: e.message,
            field: e.field,
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Model(m) => m.into(),
            other => {
                warn!(error = %other, "intent write failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    other.to_string(),
                )
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(s) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                s.to_string(),
            ),
            other => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                other.to_string(),
            ),
        }
    }
}

impl From<weft_store::StoreError> for ApiError {
    fn from(e: weft_store::StoreError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// Path parameters, with a JSON error when they cannot be read.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::bad_request(format!("bad path: {e}")))
    }
}

/// Query parameters, with a JSON error when they cannot be read.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
    }
}

/// Authenticates the caller from the `Authorization: Bearer` header.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(AuthError::Missing)?
        .trim();
    Ok(state.tokens.verify(token).await?)
}

/// Reads a JSON body: bounded, must be JSON, else a JSON error.
pub fn json_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body exceeds {MAX_BODY} bytes"),
            )
        } else {
            ApiError::bad_request(format!("could not read the request body: {r}"))
        }
    })?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !(essence.eq_ignore_ascii_case("application/json")
            || essence.eq_ignore_ascii_case("application/merge-patch+json"))
        {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("content type {ct:?} is not supported: send application/json"),
            ));
        }
    }
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "request body is empty: send a JSON object",
        ));
    }
    Ok(body)
}

fn parse_kind(plural: &str) -> ApiResult<Kind> {
    Kind::ALL
        .into_iter()
        .find(|k| k.plural() == plural)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "unknown resource type {plural:?}; known: {}",
                Kind::ALL.map(|k| k.plural()).join(", ")
            ))
        })
}

/// The policy's name for a kind (`l2_network`).
pub fn kind_snake(kind: Kind) -> String {
    kind.singular().replace('-', "_")
}

fn if_match(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse::<u64>().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match {s:?} is not a revision: send the object's revision number, e.g. If-Match: \"42\""
        ))
        .at("If-Match")
    })
}

/// Answers an object with its revision as ETag.
fn object_response(status: StatusCode, obj: &Object) -> Response {
    let mut resp = (status, axum::Json(obj.to_json())).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", obj.revision())) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

impl AppState {
    /// True if the caller may see objects of `project`.
    fn visible(&self, caller: &Caller, kind: Kind, project: &Id) -> bool {
        let rule = if kind == Kind::Project {
            "get_project".to_string()
        } else {
            self.policy.rule_for("get", &kind_snake(kind))
        };
        self.policy.allows(&rule, caller, Some(project))
    }

    fn require(
        &self,
        caller: &Caller,
        action: &str,
        kind: Kind,
        project: Option<&Id>,
    ) -> ApiResult<()> {
        let rule = if kind == Kind::Project {
            format!("{action}_project")
        } else {
            self.policy.rule_for(action, &kind_snake(kind))
        };
        self.require_rule(caller, &rule, project)
    }

    /// Checks one policy rule; 403 naming it on refusal.
    pub fn require_rule(&self, caller: &Caller, rule: &str, project: Option<&Id>) -> ApiResult<()> {
        if self.policy.allows(rule, caller, project) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "policy rule {rule:?} does not allow this for token {} (roles: {})",
                caller.token,
                if caller.roles.is_empty() {
                    "none".into()
                } else {
                    caller.roles.join(",")
                }
            )))
        }
    }

    /// Resolves a project given by id or name.
    pub fn resolve_project(&self, given: &str) -> Option<Id> {
        self.intent.read(|i| {
            if i.projects().contains_key(given) {
                Some(Id::new(given))
            } else {
                i.project_by_name(given).map(|p| p.id.clone())
            }
        })
    }

    /// Finds an object the caller can see, else 404.
    fn visible_object(&self, caller: &Caller, kind: Kind, id: &str) -> ApiResult<Object> {
        let obj = self.intent.read(|i| i.get(kind, id));
        match obj {
            Some(o) if self.visible(caller, kind, o.project()) => Ok(o),
            _ => Err(ApiError::not_found(format!("{kind} {id} does not exist"))),
        }
    }
}

/// The `/v1` router.
pub fn router(state: AppState, extra: ExtraRoutes) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi_doc))
        .route("/v1/whoami", get(whoami))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", axum::routing::delete(delete_token))
        .route("/v1/trace", axum::routing::post(trace))
        .route("/v1/{kind}", get(list_objects).post(create_object))
        .route(
            "/v1/{kind}/{id}",
            get(get_object).patch(update_object).delete(delete_object),
        )
        .merge(extra)
        .fallback(|| async { ApiError::not_found("no such endpoint; see /v1/openapi.json") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn health(State(s): State<AppState>) -> impl IntoResponse {
    axum::Json(json!({"status": "ok", "revision": s.intent.revision()}))
}

async fn openapi_doc(State(s): State<AppState>) -> impl IntoResponse {
    axum::Json((*s.openapi).clone())
}

async fn whoami(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<impl IntoResponse> {
    let c = authenticate(&s, &headers).await?;
    let project_name = c.project.as_ref().and_then(|p| {
        s.intent
            .read(|i| i.projects().get(p).map(|p| p.name.clone()))
    });
    Ok(axum::Json(json!({
        "token": c.token,
        "project": c.project,
        "project_name": project_name,
        "roles": c.roles,
    })))
}

async fn create_object(
    State(s): State<AppState>,
    Path(plural): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let caller = authenticate(&s, &headers).await?;
    let kind = parse_kind(&plural)?;
    let body = json_body(&headers, body)?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(members) = &value else {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    };
    let project = if kind == Kind::Project {
        None
    } else {
        let given = match members.get("project") {
            Some(Value::String(p)) => Some(p.clone()),
            Some(Value::Null) | None => query.get("project").cloned(),
            Some(_) => {
                return Err(
                    ApiError::bad_request("project must be a string (id or name)").at("project"),
                );
            }
        };
        Some(match given {
            Some(p) => s.resolve_project(&p).ok_or_else(|| {
                ApiError::not_found(format!("project {p} does not exist")).at("project")
            })?,
            None => caller.project.clone().ok_or_else(|| {
                ApiError::bad_request(format!(
                    "this token is not bound to a project: name the project of the new {kind} (\"project\" in the body, or --project)"
                ))
                .at("project")
            })?,
        })
    };
    let spec = Spec::parse(kind, &body)?;
    s.require(&caller, "create", kind, project.as_ref())?;
    if spec.has_provider() {
        s.require_rule(&caller, "create_provider_network", project.as_ref())?;
    }
    if matches!(&spec, Spec::InstancePort(p) if p.host.is_some()) {
        s.require_rule(&caller, "set_port_host", project.as_ref())?;
    }
    let obj = s
        .intent
        .submit(Command::Create { project, spec })
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "create returned nothing",
            )
        })?;
    Ok(object_response(StatusCode::CREATED, &obj))
}

async fn get_object(
    State(s): State<AppState>,
    Path((plural, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = authenticate(&s, &headers).await?;
    let kind = parse_kind(&plural)?;
    let obj = s.visible_object(&caller, kind, &id)?;
    Ok(object_response(StatusCode::OK, &obj))
}

async fn update_object(
    State(s): State<AppState>,
    Path((plural, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let caller = authenticate(&s, &headers).await?;
    let kind = parse_kind(&plural)?;
    let existing = s.visible_object(&caller, kind, &id)?;
    let body = json_body(&headers, body)?;
    let patch: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    let project = existing.project().clone();
    s.require(&caller, "update", kind, Some(&project))?;
    if kind == Kind::L2Network && patch.get("provider").is_some() {
        s.require_rule(&caller, "update_provider_network", Some(&project))?;
    }
    if kind == Kind::InstancePort && patch.get("host").is_some() {
        s.require_rule(&caller, "set_port_host", Some(&project))?;
    }
    let obj = s
        .intent
        .submit(Command::Update {
            kind,
            id: Id::new(id.clone()),
            patch,
            if_match: if_match(&headers)?,
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{kind} {id} does not exist")))?;
    Ok(object_response(StatusCode::OK, &obj))
}

async fn delete_object(
    State(s): State<AppState>,
    Path((plural, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let caller = authenticate(&s, &headers).await?;
    let kind = parse_kind(&plural)?;
    let existing = s.visible_object(&caller, kind, &id)?;
    s.require(&caller, "delete", kind, Some(existing.project()))?;
    s.intent
        .submit(Command::Delete {
            kind,
            id: Id::new(id),
            if_match: if_match(&headers)?,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A page of a list call.
#[derive(Serialize)]
struct Page {
    items: Vec<Value>,
    next_page_token: Option<String>,
}

fn filter_matches(v: Option<&Value>, want: &str) -> bool {
    match v {
        Some(Value::String(s)) => s == want,
        Some(Value::Number(n)) => n.to_string() == want,
        Some(Value::Bool(b)) => b.to_string() == want,
        Some(Value::Array(a)) => a.iter().any(|x| filter_matches(Some(x), want)),
        Some(Value::Null) => want == "null" || want.is_empty(),
        _ => false,
    }
}

async fn list_objects(
    State(s): State<AppState>,
    Path(plural): Path<String>,
    Query(mut query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let caller = authenticate(&s, &headers).await?;
    let kind = parse_kind(&plural)?;
    let list_rule = if kind == Kind::Project {
        "list_projects".to_string()
    } else {
        s.policy.rule_for("list", &kind_snake(kind))
    };
    let limit = match query.remove("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit {l:?} is not a number from 1 to {MAX_PAGE}"))
                    .at("limit")
            })?,
        None => DEFAULT_PAGE,
    };
    let after = query.remove("page_token");
    if let Some(p) = query.get("project").cloned() {
        let id = s.resolve_project(&p).ok_or_else(|| {
            ApiError::not_found(format!("project {p} does not exist")).at("project")
        })?;
        query.insert(
            if kind == Kind::Project {
                "id"
            } else {
                "project"
            }
            .to_string(),
            id.to_string(),
        );
        if kind == Kind::Project {
            query.remove("project");
        }
    }
    let fields = openapi::object_fields(kind);
    for key in query.keys() {
        if !fields.iter().any(|f| f == key) {
            return Err(ApiError::bad_request(format!(
                "cannot filter {} by {key:?}; fields: {}",
                kind.plural(),
                fields.join(", ")
            ))
            .at(key.clone()));
        }
    }
    let page = s.intent.read(|intent| {
        let mut items = Vec::new();
        let mut next = None;
        let ids = intent.ids(kind);
        let ids: Box<dyn Iterator<Item = &Id>> = match &after {
            Some(a) => Box::new(ids.skip_while(move |id| id.as_str() <= a.as_str())),
            None => ids,
        };
        for id in ids {
            let Some(obj) = intent.get(kind, id.as_str()) else {
                continue;
            };
            if !s.policy.allows(&list_rule, &caller, Some(obj.project())) {
                continue;
            }
            let v = obj.to_json();
            if !query.iter().all(|(k, want)| filter_matches(v.get(k), want)) {
                continue;
            }
            if items.len() == limit {
                next = items
                    .last()
                    .and_then(|v: &Value| v.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                break;
            }
            items.push(v);
        }
        Page {
            items,
            next_page_token: next,
        }
    });
    Ok(axum::Json(page))
}

// ------------------------------------------------------------------ tokens

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    description: String,
}

async fn create_token(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let caller = authenticate(&s, &headers).await?;
    let body = json_body(&headers, body)?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    let req: TokenRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        ApiError::bad_request(format!("invalid token request: {}", e.inner()))
            .at(e.path().to_string())
    })?;
    let project = match &req.project {
        Some(p) => Some(s.resolve_project(p).ok_or_else(|| {
            ApiError::not_found(format!("project {p} does not exist")).at("project")
        })?),
        None => None,
    };
    s.require_rule(&caller, "create_token", project.as_ref())?;
    let roles = if req.roles.is_empty() {
        vec!["member".to_string()]
    } else {
        req.roles
    };
    for (i, r) in roles.iter().enumerate() {
        if r.is_empty()
            || r.len() > 64
            || !r
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ApiError::bad_request(format!(
                "role {r:?} is invalid: use letters, digits, '-' or '_'"
            ))
            .at(format!("roles[{i}]")));
        }
    }
    if project.is_none() && !roles.iter().any(|r| r == "admin") {
        return Err(ApiError::bad_request(
            "a token without a project can only act as admin: give --project or the admin role",
        )
        .at("project"));
    }
    let (record, token) = s.tokens.create(project, roles, req.description).await?;
    let mut v = serde_json::to_value(record.public()).expect("records serialize");
    v["token"] = Value::String(token);
    Ok((StatusCode::CREATED, axum::Json(v)))
}

async fn list_tokens(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let caller = authenticate(&s, &headers).await?;
    s.require_rule(&caller, "list_tokens", None)?;
    Ok(axum::Json(json!({"items": s.tokens.list().await?})))
}

async fn delete_token(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let caller = authenticate(&s, &headers).await?;
    s.require_rule(&caller, "delete_token", None)?;
    if s.tokens.delete(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("token {id} does not exist")))
    }
}

// ------------------------------------------------------------------- trace

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceRequest {
    /// Source port: a service port id or name, or an instance port with one binding.
    from: String,
    /// Microflow expression, e.g. `ip4.dst == 10.1.1.6 && tcp.dst == 80`.
    expression: String,
}

async fn trace(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let caller = authenticate(&s, &headers).await?;
    let body = json_body(&headers, body)?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    let req: TraceRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        ApiError::bad_request(format!("invalid trace request: {}", e.inner()))
            .at(e.path().to_string())
    })?;
    // The source port must be visible to the caller; else it does not exist.
    let project = s.intent.read(|i| {
        weft_compiler::trace::resolve_source(i, &req.from)
            .ok()
            .map(|sp| sp.project.clone())
    });
    let not_found =
        || ApiError::not_found(format!("no port {:?} to trace from", req.from)).at("from");
    let project = project.ok_or_else(not_found)?;
    if !s.visible(&caller, Kind::ServicePort, &project) {
        return Err(not_found());
    }
    s.require_rule(&caller, "trace", Some(&project))?;
    // Trace what the intent says now: wait for the compiler to catch up.
    s.compile.wait_for(s.intent.revision()).await;
    match s.compile.trace(&req.from, &req.expression) {
        Ok(report) => {
            let mut v = serde_json::to_value(&report).unwrap_or(Value::Null);
            v["text"] = Value::String(report.to_string());
            Ok(axum::Json(v))
        }
        Err(weft_compiler::trace::TraceError::Source(m)) => Err(ApiError::not_found(m).at("from")),
        Err(e @ weft_compiler::trace::TraceError::Expression { .. }) => {
            Err(ApiError::bad_request(e.to_string()).at("expression"))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )),
    }
}
