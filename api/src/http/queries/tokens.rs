//! Token queries: a user's tokens, one token, and RFC 7662 introspection.

use std::collections::HashMap;

use axum::extract::State;
use chronicle_commands::permissions::Read;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_postgres::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{answer, one, page_of, prepare, query};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::request::Res;
use crate::http::routes::query;
use crate::http::schema::{AggregateId, Limit, TokenId};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(user_tokens))
        .routes(routes!(token))
        .routes(routes!(introspect))
}

const TOKEN_COLUMNS: &str =
    "jti, user_id, role, scopes, issued_at, expires_at, revoked_at, revoke_reason, seq";

fn token_json(r: &Row) -> Value {
    let revoked_at: Option<DateTime<Utc>> = r.get("revoked_at");
    let expires_at: DateTime<Utc> = r.get("expires_at");
    json!({
        "jti": r.get::<_, Uuid>("jti"),
        "user_id": r.get::<_, String>("user_id"),
        "role": r.get::<_, String>("role"),
        "scopes": r.get::<_, Vec<String>>("scopes"),
        "issued_at": r.get::<_, DateTime<Utc>>("issued_at"),
        "expires_at": expires_at,
        "revoked_at": revoked_at,
        "revoke_reason": r.get::<_, Option<String>>("revoke_reason"),
        "active": revoked_at.is_none() && expires_at > Utc::now(),
    })
}

query! {
    user_tokens: GET "/v1/queries/users/{user_id}/tokens", "A user's tokens" => Page,
    path: ["user_id" => user_id: AggregateId],
    query: ["active": bool, "limit": Limit, "after": String],
    |s, caller, headers, f| {
        let active = f.boolean("active")?;
        let page = f.page()?;
        let position = prepare(&s, &caller, &headers, Read::Tokens, &["tokens"]).await?;
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM read.tokens WHERE user_id = $1 AND seq > $2
               AND ($3::bool IS NULL OR $3 = (revoked_at IS NULL AND expires_at > now()))
             ORDER BY seq LIMIT $4"
        );
        let rows = query(&s, &sql, &[&user_id, &page.after, &active, &(page.limit + 1)]).await?;
        Ok(answer(position, page_of(rows, &page, token_json)))
    }
}

query! {
    token: GET "/v1/queries/tokens/{jti}", "One token" => Document,
    path: ["jti" => jti: TokenId],
    query: [],
    |s, caller, headers, f| {
        let position = prepare(&s, &caller, &headers, Read::Tokens, &["tokens"]).await?;
        let jti: Uuid = jti
            .parse()
            .map_err(|_| ApiError::not_found("no such token"))?;
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM read.tokens WHERE jti = $1");
        let rows = query(&s, &sql, &[&jti]).await?;
        Ok(answer(position, one(rows, "token", token_json)?))
    }
}

/// RFC 7662: `token=...` as a form; an invalid, expired or revoked token is
/// `{"active": false}`. Answered from the token itself and the revoked set.
#[utoipa::path(
    post,
    path = "/v1/introspect",
    tag = "queries",
    summary = "RFC 7662 token introspection",
    request_body(content = crate::http::openapi::IntrospectForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "OK", body = crate::http::openapi::Document),
        (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn introspect(
    State(s): State<AppState>,
    caller: Caller,
    axum::Form(fields): axum::Form<HashMap<String, String>>,
) -> Res {
    caller.may_read(Read::Tokens)?;
    let token = fields
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_param("token", "token is required"))?;
    let position = s.positions.position_of(&["tokens"]);
    let body = match s.signer.verify(token) {
        Ok(c) if !s.revocations.is_revoked(&c.jti) => json!({
            "active": true,
            "sub": c.sub,
            "scope": c.scope,
            "exp": c.exp,
            "iat": c.iat,
            "jti": c.jti,
            "role": c.role,
            "token_type": "Bearer",
        }),
        _ => json!({ "active": false }),
    };
    Ok(answer(position, body))
}
