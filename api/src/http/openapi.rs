//! `GET /openapi.json`: the OpenAPI 3.1 description of every route, generated from the
//! handlers' annotations (utoipa), and `GET /docs`: a plain page listing it, readable in
//! a browser with no script (the API's Content-Security-Policy allows none).

use axum::Json;
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

#[derive(OpenApi)]
#[openapi(
    info(title = "Chronicle", description = "The event-sourced core of the Atom platform: commands, queries, audit."),
    modifiers(&BearerAuth),
    paths(
        super::health::live, super::health::ready,
        super::commands::issue_token, super::commands::revoke_token, super::commands::revoke_all_tokens,
        super::commands::submit_job, super::commands::start_job, super::commands::complete_job,
        super::commands::fail_job, super::commands::cancel_job, super::commands::retry_job,
        super::commands::request_approval, super::commands::approve, super::commands::reject,
        super::commands::open_account, super::commands::close_account,
        super::commands::post_entry, super::commands::reverse_entry,
        super::commands::register_agent, super::commands::change_maturity, super::commands::set_bypass,
        super::queries::user_tokens, super::queries::token, super::queries::introspect,
        super::queries::jobs, super::queries::job, super::queries::job_history,
        super::queries::approvals, super::queries::approval,
        super::queries::accounts, super::queries::account,
        super::queries::journal_entries, super::queries::journal_entry, super::queries::trial_balance,
        super::queries::agents, super::queries::agent, super::queries::decisions, super::queries::projections,
        super::audit::events, super::audit::stream_state, super::audit::verify, super::audit::seal_key,
    ),
    components(schemas(Problem, FieldProblem, CommandAnswer, Escalated, AppendedEvent, Page, Document, IntrospectForm))
)]
pub struct ApiDoc;

/// The OpenAPI document of every route.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub async fn spec() -> Response {
    Json(document()).into_response()
}

/// The routes, as a page a person can read.
pub async fn page() -> Response {
    let doc = ApiDoc::openapi();
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
