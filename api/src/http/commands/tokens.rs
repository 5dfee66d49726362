//! `POST /v1/commands/users/{user_id}/tokens...`: issuing and revoking tokens.

use chronicle_commands::Command;
use chronicle_events::domain::user::Role;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ReasonBody;
use crate::error::ApiError;
use crate::http::routes::command;
use crate::http::schema::{AggregateId, Scope, TokenId};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_token))
        .routes(routes!(revoke_token))
        .routes(routes!(revoke_all_tokens))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssueTokenBody {
    role: Role,
    /// None: the role's full powers; else only what the role allows and a scope covers.
    #[serde(default)]
    #[schema(max_items = 32)]
    scopes: Vec<Scope>,
    /// Lifetime in seconds (default 3 600).
    #[schema(minimum = 60, maximum = 31_622_400)]
    ttl_seconds: Option<i64>,
}

command! {
    issue_token: POST "/v1/commands/users/{user_id}/tokens",
    "commands: tokens", "Issue a token (admin)" => 201,
    body: IssueTokenBody, path: ["user_id" => user_id: AggregateId],
    |req| req.run(|b, _| Command::IssueToken {
        user_id: user_id.into(),
        role: b.role,
        scopes: b.scopes.into_iter().map(|s| s.0).collect(),
        ttl_seconds: b.ttl_seconds,
    })
    .await
}

command! {
    revoke_token: POST "/v1/commands/users/{user_id}/tokens/{jti}/revoke",
    "commands: tokens", "Revoke one token" => 200,
    body: ReasonBody, path: ["user_id" => user_id: AggregateId, "jti" => jti: TokenId],
    |req| {
        // Not a token id: no such token for this user (the body is checked first).
        let jti = jti
            .0
            .parse()
            .map_err(|_| ApiError::not_found("no such token for this user"))?;
        req.run(|b, _| Command::RevokeToken {
            user_id: user_id.into(),
            jti,
            reason: b.reason.into(),
        })
        .await
    }
}

command! {
    revoke_all_tokens: POST "/v1/commands/users/{user_id}/tokens/revoke-all",
    "commands: tokens", "Revoke every active token of a user" => 200,
    body: ReasonBody, path: ["user_id" => user_id: AggregateId],
    |req| req.run(|b, _| Command::RevokeAllTokens {
        user_id: user_id.into(),
        reason: b.reason.into(),
    })
    .await
}
