//! REST endpoints of the BGP speaker (`/v1/bgp`) and of host tunnel
//! addresses (`/v1/hosts/{name}/tunnel`), parsed here into calls on
//! [`BgpService`] and the compiler's tunnel directory.
//!
//! Policy rules: `bgp_get` (configuration, peers, routes), `bgp_update`
//! (configuration and peers), `get_host_tunnel` and `set_host_tunnel`
//! (a host's tunnel address, set by hand until its agent reports it); all
//! admin-only by default.

use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use serde_json::{Map, Value, json};

use super::{ApiError, ApiResult, AppState, ExtraRoutes, Path, authenticate, json_body};
use crate::bgp::{BgpConfigRequest, BgpError, BgpService, PeerRequest};

/// The BGP and host-tunnel routes, to merge into the `/v1` router.
pub fn routes(bgp: BgpService) -> ExtraRoutes {
    ExtraRoutes::new()
        .route("/v1/bgp", get(get_bgp).put(put_bgp).delete(delete_bgp))
        .route("/v1/bgp/peers", axum::routing::post(add_peer))
        .route(
            "/v1/bgp/peers/{address}",
            axum::routing::delete(remove_peer),
        )
        .route("/v1/bgp/routes", get(get_routes))
        .route(
            "/v1/hosts/{name}/tunnel",
            put(put_tunnel).get(get_tunnel).delete(delete_tunnel),
        )
        .layer(Extension(bgp))
}

impl From<BgpError> for ApiError {
    fn from(e: BgpError) -> Self {
        let msg = e.to_string();
        match e {
            BgpError::Invalid { field, .. } => ApiError::bad_request(msg).at(field),
            BgpError::PeerExists(_) => ApiError::new(StatusCode::CONFLICT, "conflict", msg),
            BgpError::NoSuchPeer(_) => ApiError::not_found(msg),
            BgpError::NotConfigured => ApiError::new(StatusCode::CONFLICT, "conflict", msg),
            BgpError::Stale { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", msg)
                    .at("If-Match")
            }
            BgpError::Speaker(weft_bgp::ConfigError::Listen { .. }) => {
                ApiError::bad_request(msg).at("listen")
            }
            BgpError::Speaker(weft_bgp::ConfigError::ShutDown) | BgpError::Store(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg)
            }
            BgpError::Speaker(_) => ApiError::bad_request(msg),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes, what: &str) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        ApiError::bad_request(format!("invalid {what}: {}", e.inner())).at(e.path().to_string())
    })
}

fn if_match(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse::<u64>().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match {s:?} is not a revision: send the configuration's revision, e.g. If-Match: \"42\""
        ))
        .at("If-Match")
    })
}

async fn get_bgp(
    State(s): State<AppState>,
    Extension(bgp): Extension<BgpService>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let caller = authenticate(&s, &headers).await?;
    s.require_rule(&caller, "bgp_get", None)?;
    Ok(axum::Json(bgp.status().await))
}

async fn put_bgp(
    State(s): State<AppState>,
    Extension(bgp): Extension<BgpService>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let caller = authenticate(&s, &headers).await?;
    s.require_rule(&caller, "bgp_update", None)?;
    let body = json_body(&headers, body)?;
    let req: BgpConfigRequest = parse(&body, "BGP configuration")?;
    let cfg = req.validate()?;
    Ok(axum::Json(bgp.set_config(cfg, if_match(&headers)?).await?))
}

async fn delete_bgp(
    State(s): State<AppState>,
    Extension(bgp): Extension<BgpService>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let caller = authenticate(&s, &headers).await?;
    s.require_rule(&caller, "bgp_update", None)?;
    bgp.clear(if_match(&headers)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_peer(
    State(s): State<AppState>,
    Extension(bgp): Extension<BgpService>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let caller = authenticate(&s, &headers).await?;
    s.require_rule(&caller, "bgp_update", None)?;
    let body = json_body(&headers, body)?;
    let req: PeerRequest = parse(&body, "BGP peer")?;
    let peer = req.validate("")?;
    Ok((StatusCode::CREATED, axum::Json(bgp.add_peer(peer).await?)))
}

fn peer_address(text: &str) -> ApiResult<IpAddr> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!("{text:?} is not a peer address (an IP address)"))
            .at("address")
    })
}

async fn remove_peer(
    State(s): State<AppState>,
    Extension(bgp): Extension<BgpService>,
    Path(address): Path<String>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let caller = authenticate(&s, &headers).await?;
    s.require_rule(&caller, "bgp_update", None)?;
    let address = peer_address(&address)?;
    Ok(axum::Json(bgp.remove_peer(address).await?))
}

async fn get_routes(
    State(s): State<AppState>,
    Extension(bgp): Extension<BgpService>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let caller = authenticate(&s, &headers).await?;
    s.require_rule(&caller, "bgp_get", None)?;
    Ok(axum::Json(bgp.routes()))
}

fn host_name(name: &str) -> ApiResult<&str> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(name)
    } else {
        Err(ApiError::bad_request(format!(
            "host name {name:?} is invalid: use letters, digits, '-', '_' and '.'"
        ))
        .at("name"))
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TunnelRequest {
    /// The host's VXLAN tunnel endpoint address.
    address: String,
}

async fn put_tunnel(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let caller = authenticate(&s, &headers).await?;
    s.require_rule(&caller, "set_host_tunnel", None)?;
    let host = host_name(&name)?;
    let body = json_body(&headers, body)?;
    let req: TunnelRequest = parse(&body, "tunnel address")?;
    let ip: IpAddr = req.address.trim().parse().map_err(|_| {
        ApiError::bad_request(format!(
            "tunnel address {:?} is not an IP address",
            req.address
        ))
        .at("address")
    })?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(ApiError::bad_request(format!(
            "tunnel address {ip} cannot be a VXLAN endpoint: give the host's unicast underlay address"
        ))
        .at("address"));
    }
    // Stored, so every replica (and this one after a restart) knows it.
    s.compile.tunnels.put(host, ip).await?;
    Ok(axum::Json(json!({"host": host, "address": ip})))
}

async fn get_tunnel(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let caller = authenticate(&s, &headers).await?;
    s.require_rule(&caller, "get_host_tunnel", None)?;
    match s.compile.tunnels.snapshot().get(&name) {
        Some(ip) => Ok(axum::Json(json!({"host": name, "address": ip}))),
        None => Err(ApiError::not_found(format!(
            "host {name} has no tunnel address"
        ))),
    }
}

async fn delete_tunnel(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let caller = authenticate(&s, &headers).await?;
    s.require_rule(&caller, "set_host_tunnel", None)?;
    if s.compile.tunnels.snapshot().contains_key(&name) {
        s.compile.tunnels.withdraw(&name).await?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "host {name} has no tunnel address"
        )))
    }
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn responses(ok: &str, what: &str) -> Value {
    let err = json!({"$ref": "#/components/schemas/Error"});
    let mut m = Map::new();
    m.insert(ok.into(), json!({"description": what}));
    for (code, d) in [
        ("400", "Invalid values"),
        ("401", "Missing or invalid token"),
        ("403", "Refused by the policy"),
        ("404", "No such peer or host"),
        ("409", "Conflicts with the configuration"),
        ("412", "If-Match revision does not match"),
        ("503", "Store unavailable"),
    ] {
        m.insert(
            code.into(),
            json!({"description": d, "content": json_content(err.clone())}),
        );
    }
    Value::Object(m)
}

/// OpenAPI paths of these endpoints.
pub fn paths() -> Map<String, Value> {
    let peer = json!({
        "type": "object", "required": ["address", "remote_as"],
        "properties": {
            "address": {"type": "string", "description": "Peer IP address"},
            "remote_as": {"type": "integer", "minimum": 1, "maximum": 4294967295u64},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "TCP port to connect to (179)"},
            "hold_time": {"type": "integer", "description": "Seconds: 0, or 3-65535 (90)"},
            "connect_retry": {"type": "integer", "minimum": 1, "maximum": 3600, "description": "Seconds between connection attempts (5)"},
            "passive": {"type": "boolean", "description": "Only wait for the peer to connect"}
        }
    });
    let config = json!({
        "type": "object", "required": ["local_as", "router_id"],
        "properties": {
            "local_as": {"type": "integer", "minimum": 1, "maximum": 4294967295u64},
            "router_id": {"type": "string", "description": "IPv4 address"},
            "listen": {"type": ["string", "null"], "description": "IP or IP:PORT to accept sessions on; absent: connect out only"},
            "peers": {"type": "array", "items": peer.clone()}
        }
    });
    let if_match = json!({"name": "If-Match", "in": "header", "required": false,
        "description": "Refuse with 412 unless the configuration is at this revision", "schema": {"type": "string"}});
    let tag = json!(["bgp"]);
    let mut m = Map::new();
    m.insert("/v1/bgp".into(), json!({
        "get": {"tags": tag, "operationId": "get_bgp", "summary": "BGP configuration, peer status (state, uptime, prefixes in/out, last error) and route counts",
                "responses": responses("200", "Status")},
        "put": {"tags": tag, "operationId": "set_bgp", "summary": "Replace the BGP configuration (starts the speaker, or reconfigures it: changed peers restart)",
                "parameters": [if_match.clone()],
                "requestBody": {"required": true, "content": json_content(config)},
                "responses": responses("200", "The new status")},
        "delete": {"tags": tag, "operationId": "delete_bgp", "summary": "Stop the speaker and forget its configuration",
                   "parameters": [if_match], "responses": responses("204", "Stopped")}
    }));
    m.insert(
        "/v1/bgp/peers".into(),
        json!({
            "post": {"tags": tag, "operationId": "add_bgp_peer", "summary": "Add a peer",
                     "requestBody": {"required": true, "content": json_content(peer)},
                     "responses": responses("201", "The new status")}
        }),
    );
    m.insert("/v1/bgp/peers/{address}".into(), json!({
        "parameters": [{"name": "address", "in": "path", "required": true, "schema": {"type": "string"}}],
        "delete": {"tags": tag, "operationId": "remove_bgp_peer", "summary": "Remove a peer (Cease NOTIFICATION)",
                   "responses": responses("200", "The new status")}
    }));
    m.insert("/v1/bgp/routes".into(), json!({
        "get": {"tags": tag, "operationId": "get_bgp_routes", "summary": "Routes advertised (with the ports behind them) and routes learned (with the l3vpns importing them)",
                "responses": responses("200", "Exported and imported routes")}
    }));
    let tunnel = json!({"type": "object", "required": ["address"], "properties": {"address": {"type": "string", "description": "The host's VXLAN tunnel endpoint"}}});
    m.insert("/v1/hosts/{name}/tunnel".into(), json!({
        "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
        "get": {"tags": ["hosts"], "operationId": "get_host_tunnel", "summary": "A host's tunnel address",
                "responses": responses("200", "The address")},
        "put": {"tags": ["hosts"], "operationId": "set_host_tunnel", "summary": "Set a host's tunnel address by hand (agents report it themselves)",
                "requestBody": {"required": true, "content": json_content(tunnel)},
                "responses": responses("200", "Set")},
        "delete": {"tags": ["hosts"], "operationId": "delete_host_tunnel", "summary": "Forget a host's tunnel address",
                   "responses": responses("204", "Forgotten")}
    }));
    m
}
