//! `GET /openapi.json`: the OpenAPI 3.1 description of every route a process serves, built
//! from the routes as they are declared (utoipa, utoipa-axum), and `GET /docs`: a plain
//! page listing it, readable in a browser with no script (the API's
//! Content-Security-Policy allows none). The schemas every route shares live here.

use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// RFC 9457 problem details.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Problem {
    /// `urn:chronicle:error:<CODE>`
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    /// One of the contract's error codes.
    code: String,
    request_id: String,
    errors: Option<Vec<FieldProblem>>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FieldProblem {
    field: String,
    message: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AppendedEvent {
    id: uuid::Uuid,
    r#type: String,
    stream: String,
    position: u64,
}

/// A command's answer (`ETag: "<version>"`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CommandAnswer {
    command_id: uuid::Uuid,
    stream: String,
    version: u64,
    position: u64,
    events: Vec<AppendedEvent>,
    /// Token issuance only.
    token: Option<String>,
    jti: Option<uuid::Uuid>,
    expires_at: Option<String>,
    /// Approving an approval that carried an escalated command.
    #[schema(value_type = Option<Object>)]
    escalated: Option<serde_json::Value>,
}

/// Governance escalated the agent's command.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Escalated {
    approval_id: String,
    command_id: uuid::Uuid,
    stream: String,
    position: u64,
    events: Vec<AppendedEvent>,
}

/// A page of a list: `next` is the cursor of the following page.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Page {
    #[schema(value_type = Vec<Object>)]
    items: Vec<serde_json::Value>,
    next: Option<String>,
}

/// RFC 7662 introspection request.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct IntrospectForm {
    token: String,
}

/// A JSON document (see the contract for its fields).
#[derive(ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)]
pub struct Document(serde_json::Value);

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// What the document says besides its routes, which each router adds (see `http::routes`).
#[derive(OpenApi)]
#[openapi(
    info(title = "Chronicle", description = "The event-sourced core of the Atom platform: commands, queries, audit."),
    modifiers(&BearerAuth),
    components(schemas(Problem, FieldProblem, CommandAnswer, Escalated, AppendedEvent, Page, Document, IntrospectForm))
)]
struct ApiDoc;

/// The document before any route is added to it.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI document of every route (what a process serving every role serves).
pub fn document() -> utoipa::openapi::OpenApi {
    super::routes(super::ServeRole::All).into_openapi()
}

/// The routes, as a page a person can read.
pub fn page(doc: &utoipa::openapi::OpenApi) -> Response {
    let mut rows = String::new();
    for (path, item) in &doc.paths.paths {
        let ops = [("GET", &item.get), ("POST", &item.post)];
        for (method, op) in ops {
            if let Some(op) = op {
                let summary = op.summary.clone().unwrap_or_default();
                rows.push_str(&format!(
                    "<tr><td>{method}</td><td><code>{}</code></td><td>{}</td></tr>",
                    html_escape(path),
                    html_escape(&summary)
                ));
            }
        }
    }
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Chronicle API</title>\
         <h1>Chronicle API</h1><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1).</p>\
         <table border=1 cellpadding=4><tr><th>method</th><th>path</th><th>what</th></tr>{rows}</table>"
    ))
    .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
