//! `POST /v1/commands/users/{user_id}/tokens...`: issuing and revoking tokens.

use chronicle_commands::Command;
use chronicle_events::domain::user::Role;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ReasonBody;
use crate::http::routes::command;
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
    /// admin, writer, agent, analyst or auditor.
    #[schema(value_type = String)]
    role: Role,
    #[serde(default)]
    scopes: Vec<String>,
    ttl_seconds: Option<i64>,
}

command! {
    issue_token: POST "/v1/commands/users/{user_id}/tokens",
    "commands: tokens", "Issue a token (admin)" => 201,
    body: IssueTokenBody, path: ["user_id" => user_id: String],
    |req| req.run(|b, _| Command::IssueToken {
        user_id,
        role: b.role,
        scopes: b.scopes,
        ttl_seconds: b.ttl_seconds,
    })
    .await
}

command! {
    revoke_token: POST "/v1/commands/users/{user_id}/tokens/{jti}/revoke",
    "commands: tokens", "Revoke one token" => 200,
    body: ReasonBody, path: ["user_id" => user_id: String, "jti" => jti: String],
    |req| {
        // Not a token id: no such token for this user (the body is checked first).
        let jti = jti
            .parse()
            .map_err(|_| crate::error::ApiError::not_found("no such token for this user"))?;
        req.run(|b, _| Command::RevokeToken {
            user_id,
            jti,
            reason: b.reason,
        })
        .await
    }
}

command! {
    revoke_all_tokens: POST "/v1/commands/users/{user_id}/tokens/revoke-all",
    "commands: tokens", "Revoke every active token of a user" => 200,
    body: ReasonBody, path: ["user_id" => user_id: String],
    |req| req.run(|b, _| Command::RevokeAllTokens {
        user_id,
        reason: b.reason,
    })
    .await
}
