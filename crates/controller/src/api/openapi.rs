//! The OpenAPI 3 document of `/v1`, generated from the model's types: the
//! schemas come from their `ToSchema` derives, the paths from the list of
//! kinds, so the document cannot drift from the code.

use serde_json::{Map, Value, json};
use utoipa::{PartialSchema, ToSchema};
use weft_model::*;

fn schema_of<T: PartialSchema>() -> Value {
    serde_json::to_value(T::schema()).expect("schemas serialize")
}

/// The schemas a type's schema refers to (`$ref`s), by name.
fn nested_of<T: ToSchema>(out: &mut Map<String, Value>) {
    let mut v = Vec::new();
    T::schemas(&mut v);
    for (name, schema) in v {
        out.insert(
            name,
            serde_json::to_value(schema).expect("schemas serialize"),
        );
    }
}

fn nested(kind: Kind, out: &mut Map<String, Value>) {
    match kind {
        Kind::Project => {
            nested_of::<Project>(out);
            nested_of::<ProjectSpec>(out);
        }
        Kind::InstancePort => {
            nested_of::<InstancePort>(out);
            nested_of::<InstancePortSpec>(out);
        }
        Kind::Interface => {
            nested_of::<Interface>(out);
            nested_of::<InterfaceSpec>(out);
        }
        Kind::L2Network => {
            nested_of::<L2Network>(out);
            nested_of::<L2NetworkSpec>(out);
        }
        Kind::L3vpn => {
            nested_of::<L3vpn>(out);
            nested_of::<L3vpnSpec>(out);
        }
        Kind::SecurityGroup => {
            nested_of::<SecurityGroup>(out);
            nested_of::<SecurityGroupSpec>(out);
        }
        Kind::SiteLink => {
            nested_of::<SiteLink>(out);
            nested_of::<SiteLinkSpec>(out);
        }
        Kind::ServicePort => {
            nested_of::<ServicePort>(out);
            nested_of::<ServicePortSpec>(out);
        }
    }
}

/// (object schema, create/patch schema) of a kind.
fn kind_schemas(kind: Kind) -> (Value, Value) {
    match kind {
        Kind::Project => (schema_of::<Project>(), schema_of::<ProjectSpec>()),
        Kind::InstancePort => (schema_of::<InstancePort>(), schema_of::<InstancePortSpec>()),
        Kind::Interface => (schema_of::<Interface>(), schema_of::<InterfaceSpec>()),
        Kind::L2Network => (schema_of::<L2Network>(), schema_of::<L2NetworkSpec>()),
        Kind::L3vpn => (schema_of::<L3vpn>(), schema_of::<L3vpnSpec>()),
        Kind::SecurityGroup => (
            schema_of::<SecurityGroup>(),
            schema_of::<SecurityGroupSpec>(),
        ),
        Kind::SiteLink => (schema_of::<SiteLink>(), schema_of::<SiteLinkSpec>()),
        Kind::ServicePort => (schema_of::<ServicePort>(), schema_of::<ServicePortSpec>()),
    }
}

/// The top-level field names of a kind's objects (valid list filters).
pub fn object_fields(kind: Kind) -> Vec<String> {
    let (obj, _) = kind_schemas(kind);
    obj.get("properties")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn type_name(kind: Kind) -> String {
    kind.singular()
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn error_responses() -> Map<String, Value> {
    let err = json!({"$ref": "#/components/schemas/Error"});
    let mut m = Map::new();
    for (code, what) in [
        ("400", "Malformed request or invalid values"),
        ("401", "Missing or invalid token"),
        ("403", "Refused by the policy"),
        ("404", "No such object (or not visible to the caller)"),
        (
            "409",
            "Conflicts with the current state (e.g. still in use)",
        ),
        ("412", "If-Match revision does not match"),
        ("413", "Request body too large"),
        ("503", "Store unavailable"),
    ] {
        m.insert(
            code.into(),
            json!({"description": what, "content": json_content(err.clone())}),
        );
    }
    m
}

fn with_errors(mut responses: Map<String, Value>) -> Value {
    responses.extend(error_responses());
    Value::Object(responses)
}

/// Builds the whole document. `extra_paths` lets other parts of the
/// controller (trace, hosts, BGP) describe their endpoints.
pub fn document(extra_paths: Map<String, Value>) -> Value {
    let mut schemas = Map::new();
    let mut paths = Map::new();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "invalid_argument, not_found, conflict, precondition_failed, unauthenticated, forbidden, payload_too_large, unavailable"},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "Path of the offending field, e.g. fixed_ips[0].ip"}
            }
        }),
    );
    let id_param =
        json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let if_match = json!({"name": "If-Match", "in": "header", "required": false,
        "description": "Refuse with 412 unless the object is at this revision", "schema": {"type": "string"}});
    for kind in Kind::ALL {
        let name = type_name(kind);
        let (obj, spec) = kind_schemas(kind);
        nested(kind, &mut schemas);
        schemas.insert(name.clone(), obj);
        schemas.insert(format!("{name}Spec"), spec);
        let obj_ref = json!({"$ref": format!("#/components/schemas/{name}")});
        let spec_ref = json!({"$ref": format!("#/components/schemas/{name}Spec")});
        let tag = kind.plural();
        let mut filters: Vec<Value> = object_fields(kind)
            .into_iter()
            .map(|f| json!({"name": f, "in": "query", "required": false, "schema": {"type": "string"},
                "description": "Only objects whose field equals (or, for lists, contains) this value"}))
            .collect();
        filters.push(json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}));
        filters.push(
            json!({"name": "page_token", "in": "query", "schema": {"type": "string"},
            "description": "next_page_token of the previous page"}),
        );
        let mut ok_list = Map::new();
        ok_list.insert("200".into(), json!({"description": "A page of objects", "content": json_content(json!({
            "type": "object",
            "properties": {"items": {"type": "array", "items": obj_ref}, "next_page_token": {"type": ["string", "null"]}}
        }))}));
        let mut created = Map::new();
        created.insert(
            "201".into(),
            json!({"description": "Created", "content": json_content(obj_ref.clone())}),
        );
        paths.insert(
            format!("/v1/{}", kind.plural()),
            json!({
                "get": {"tags": [tag], "summary": format!("List {}", kind.plural()), "operationId": format!("list_{}", kind.plural().replace('-', "_")),
                        "parameters": filters, "responses": with_errors(ok_list)},
                "post": {"tags": [tag], "summary": format!("Create a {kind}"), "operationId": format!("create_{}", kind.singular().replace('-', "_")),
                         "requestBody": {"required": true, "content": json_content(spec_ref.clone())},
                         "responses": with_errors(created)}
            }),
        );
        let mut ok_obj = Map::new();
        ok_obj.insert("200".into(), json!({"description": "The object; ETag carries its revision", "content": json_content(obj_ref.clone())}));
        let mut no_content = Map::new();
        no_content.insert("204".into(), json!({"description": "Deleted"}));
        paths.insert(
            format!("/v1/{}/{{id}}", kind.plural()),
            json!({
                "parameters": [id_param],
                "get": {"tags": [tag], "summary": format!("Get a {kind}"), "operationId": format!("get_{}", kind.singular().replace('-', "_")),
                        "responses": with_errors(ok_obj.clone())},
                "patch": {"tags": [tag], "summary": format!("Update a {kind} with a JSON merge patch (RFC 7396) of its settable fields"),
                          "operationId": format!("update_{}", kind.singular().replace('-', "_")),
                          "parameters": [if_match],
                          "requestBody": {"required": true, "content": {"application/merge-patch+json": {"schema": spec_ref}}},
                          "responses": with_errors(ok_obj)},
                "delete": {"tags": [tag], "summary": format!("Delete a {kind}"), "operationId": format!("delete_{}", kind.singular().replace('-', "_")),
                           "parameters": [if_match],
                           "responses": with_errors(no_content)}
            }),
        );
    }
    schemas.insert(
        "Token".into(),
        serde_json::to_value(<crate::auth::TokenRecord as PartialSchema>::schema())
            .expect("schemas serialize"),
    );
    let mut tok_created = Map::new();
    tok_created.insert(
        "201".into(),
        json!({"description": "The token record plus `token`, the secret, shown only once"}),
    );
    paths.insert(
        "/v1/tokens".into(),
        json!({
            "get": {"tags": ["tokens"], "summary": "List tokens (without secrets)", "operationId": "list_tokens",
                    "responses": {"200": {"description": "Tokens"}}},
            "post": {"tags": ["tokens"], "summary": "Create a token", "operationId": "create_token",
                     "requestBody": {"required": true, "content": json_content(json!({"type": "object", "properties": {
                        "project": {"type": "string"}, "roles": {"type": "array", "items": {"type": "string"}}, "description": {"type": "string"}}}))},
                     "responses": with_errors(tok_created)}
        }),
    );
    paths.insert(
        "/v1/tokens/{id}".into(),
        json!({"delete": {"tags": ["tokens"], "summary": "Revoke a token", "operationId": "delete_token",
               "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
               "responses": {"204": {"description": "Revoked"}}}}),
    );
    paths.insert(
        "/v1/health".into(),
        json!({"get": {"tags": ["meta"], "summary": "Liveness and the intent revision", "operationId": "health", "security": [],
               "responses": {"200": {"description": "OK"}}}}),
    );
    paths.insert(
        "/v1/whoami".into(),
        json!({"get": {"tags": ["meta"], "summary": "The caller's token, project and roles", "operationId": "whoami",
               "responses": {"200": {"description": "OK"}}}}),
    );
    paths.extend(extra_paths);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Weft API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Intent API of Weft: instance ports, interfaces, services (l2-networks, l3vpns, security groups, site links) and the service ports binding them."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas
        },
        "paths": paths
    })
}

/// Paths of endpoints outside the per-kind CRUD.
pub fn extra_paths() -> Map<String, Value> {
    let mut m = Map::new();
    for (path, ops) in [
        (
            "/v1/hosts",
            json!({"get": {"tags": ["hosts"], "summary": "Hosts with connection state and last-seen", "operationId": "list_hosts", "responses": {"200": {"description": "Hosts"}}}}),
        ),
        (
            "/v1/hosts/{name}",
            json!({"delete": {"tags": ["hosts"], "summary": "Remove a host (its certificate stops working, its connection closes)", "operationId": "delete_host", "responses": {"204": {"description": "Removed"}}}}),
        ),
        (
            "/v1/hosts/{name}/revoke",
            json!({"post": {"tags": ["hosts"], "summary": "Revoke a host's certificate and close its connection", "operationId": "revoke_host", "responses": {"200": {"description": "Revoked"}}}}),
        ),
        (
            "/v1/join-tokens",
            json!({
            "get": {"tags": ["hosts"], "summary": "Join tokens (without secrets)", "operationId": "list_join_tokens", "responses": {"200": {"description": "Tokens"}}},
            "post": {"tags": ["hosts"], "summary": "Create a one-time join token for `weft host enroll`", "operationId": "create_join_token", "responses": {"201": {"description": "The token, shown once"}}}}),
        ),
        (
            "/v1/join-tokens/{id}",
            json!({"delete": {"tags": ["hosts"], "summary": "Delete a join token", "operationId": "delete_join_token", "responses": {"204": {"description": "Deleted"}}}}),
        ),
    ] {
        m.insert(path.into(), ops);
    }
    m.insert(
        "/v1/trace".into(),
        json!({"post": {
            "tags": ["trace"],
            "summary": "Trace a packet from a port through the compiled pipelines of every host it crosses",
            "operationId": "trace",
            "requestBody": {"required": true, "content": json_content(json!({
                "type": "object", "required": ["from", "expression"],
                "properties": {
                    "from": {"type": "string", "description": "Service port id or name, or an instance port with one binding"},
                    "expression": {"type": "string", "description": "Microflow, e.g. ip4.dst == 10.1.1.6 && tcp.dst == 80; ct.est etc. pretend a connection state"}
                }}))},
            "responses": with_errors({
                let mut r = Map::new();
                r.insert("200".into(), json!({"description": "Per host: the steps (flow matched, its origin, actions) and the verdict; `text` renders it"}));
                r
            })
        }}),
    );
    m.extend(super::bgp::paths()); // Hook (BGP integration).
    m
}
