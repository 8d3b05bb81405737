//! A small client for Weft's REST API (`/v1`), shared by the `weft` CLI,
//! the integration tests, the end-to-end harness and the benchmarks, so all
//! of them exercise the real API the same way.
//!
//! Objects travel as JSON values: the API is the contract, and a client
//! that only forwards JSON cannot drift from it.

use std::time::Duration;

pub use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use weft_model::Kind;

/// Default API endpoint of a local controller.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9797";

/// An error answered by the API, or a failure to reach it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error.
    #[error("{message} ({status}{})", field.as_ref().map(|f| format!(", field {f}")).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// Machine-readable code.
        code: String,
        /// The API's explanation.
        message: String,
        /// The offending field, if any.
        field: Option<String>,
    },
    /// The controller could not be reached.
    #[error(
        "cannot reach the Weft API at {endpoint}: {reason} (is `weft up` running? set --endpoint or WEFT_ENDPOINT)"
    )]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// What failed.
        reason: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from the API: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Result of client calls.
pub type Result<T> = std::result::Result<T, ClientError>;

/// A connection to one controller with one token.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    token: Option<String>,
}

impl Client {
    /// A client for `endpoint` (e.g. `http://127.0.0.1:9797`) with a bearer token.
    pub fn new(endpoint: impl Into<String>, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()
            .expect("a plain HTTP client builds");
        Client {
            http,
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
            token,
        }
    }

    /// The same endpoint with another token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        Client {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends a request and returns status, headers' ETag and the JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        if_match: Option<u64>,
    ) -> Result<(StatusCode, Option<String>, Value)> {
        let url = format!("{}{}", self.endpoint, path);
        let mut req = self.http.request(method, &url).query(query);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(rev) = if_match {
            req = req.header("If-Match", format!("\"{rev}\""));
        }
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim_matches('"').to_string());
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason: e.to_string(),
        })?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::Protocol(format!(
                    "{status}: body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ))
            })?
        };
        if status.is_success() {
            Ok((status, etag, value))
        } else {
            Err(ClientError::Api {
                status: status.as_u16(),
                code: value["code"].as_str().unwrap_or("unknown").to_string(),
                message: value["message"]
                    .as_str()
                    .unwrap_or("no message")
                    .to_string(),
                field: value["field"].as_str().map(str::to_string),
            })
        }
    }

    /// Creates an object.
    pub async fn create(&self, kind: Kind, body: &Value) -> Result<Value> {
        let (_, _, v) = self
            .request(
                Method::POST,
                &format!("/v1/{}", kind.plural()),
                &[],
                Some(body),
                None,
            )
            .await?;
        Ok(v)
    }

    /// Reads an object.
    pub async fn get(&self, kind: Kind, id: &str) -> Result<Value> {
        let (_, _, v) = self
            .request(
                Method::GET,
                &format!("/v1/{}/{id}", kind.plural()),
                &[],
                None,
                None,
            )
            .await?;
        Ok(v)
    }

    /// Applies a merge patch, optionally only at a given revision.
    pub async fn update(
        &self,
        kind: Kind,
        id: &str,
        patch: &Value,
        if_match: Option<u64>,
    ) -> Result<Value> {
        let (_, _, v) = self
            .request(
                Method::PATCH,
                &format!("/v1/{}/{id}", kind.plural()),
                &[],
                Some(patch),
                if_match,
            )
            .await?;
        Ok(v)
    }

    /// Deletes an object.
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<()> {
        self.request(
            Method::DELETE,
            &format!("/v1/{}/{id}", kind.plural()),
            &[],
            None,
            None,
        )
        .await?;
        Ok(())
    }

    /// Lists every object of a kind matching the filters, following pages.
    pub async fn list(&self, kind: Kind, filters: &[(&str, &str)]) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q: Vec<(&str, &str)> = filters.to_vec();
            if let Some(t) = &token {
                q.push(("page_token", t));
            }
            let (_, _, v) = self
                .request(
                    Method::GET,
                    &format!("/v1/{}", kind.plural()),
                    &q,
                    None,
                    None,
                )
                .await?;
            let items = v["items"]
                .as_array()
                .ok_or_else(|| ClientError::Protocol("list answer without items".into()))?;
            out.extend(items.iter().cloned());
            match v["next_page_token"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(out),
            }
        }
    }

    /// Finds the id of an object given by id or by name (within what the
    /// caller sees). Errors if a name is ambiguous.
    pub async fn resolve(&self, kind: Kind, id_or_name: &str) -> Result<String> {
        match self.get(kind, id_or_name).await {
            Ok(v) => return Ok(v["id"].as_str().unwrap_or(id_or_name).to_string()),
            Err(ClientError::Api { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let found = self.list(kind, &[("name", id_or_name)]).await?;
        match found.as_slice() {
            [one] => Ok(one["id"].as_str().unwrap_or_default().to_string()),
            [] => Err(ClientError::Api {
                status: 404,
                code: "not_found".into(),
                message: format!("no {kind} with id or name {id_or_name:?}"),
                field: None,
            }),
            many => Err(ClientError::Api {
                status: 409,
                code: "ambiguous".into(),
                message: format!(
                    "{} {}s are named {id_or_name:?}; use an id: {}",
                    many.len(),
                    kind,
                    many.iter()
                        .filter_map(|v| v["id"].as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                field: None,
            }),
        }
    }

    /// Creates an API token; the answer carries the secret in `token`.
    pub async fn create_token(
        &self,
        project: Option<&str>,
        roles: &[&str],
        description: &str,
    ) -> Result<Value> {
        let body = json!({"project": project, "roles": roles, "description": description});
        let (_, _, v) = self
            .request(Method::POST, "/v1/tokens", &[], Some(&body), None)
            .await?;
        Ok(v)
    }

    /// Who the token is.
    pub async fn whoami(&self) -> Result<Value> {
        Ok(self
            .request(Method::GET, "/v1/whoami", &[], None, None)
            .await?
            .2)
    }

    /// Liveness and revision (no token needed).
    pub async fn health(&self) -> Result<Value> {
        Ok(self
            .request(Method::GET, "/v1/health", &[], None, None)
            .await?
            .2)
    }
}
