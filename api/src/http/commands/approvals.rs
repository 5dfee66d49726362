//! `POST /v1/commands/approvals...`: requests for a human decision, granted or rejected
//! once (granting one that carries an agent's escalated command runs it).

use chronicle_commands::Command;
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ReasonBody;
use crate::http::request::derived_id;
use crate::http::routes::command;
use crate::http::schema::{AggregateId, ShortText, Text};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_approval))
        .routes(routes!(approve))
        .routes(routes!(reject))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestApprovalBody {
    approval_id: Option<AggregateId>,
    action: ShortText,
    #[serde(default)]
    #[schema(value_type = Object)]
    payload: Value,
    reason: Text,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OptionalReasonBody {
    reason: Option<Text>,
}

command! {
    request_approval: POST "/v1/commands/approvals",
    "commands: approvals", "Request an approval" => 201,
    body: RequestApprovalBody,
    |req| req.run(|b, id| Command::RequestApproval {
        approval_id: b
            .approval_id
            .map_or_else(|| derived_id(id, "approval"), String::from),
        action: b.action.into(),
        payload: b.payload,
        reason: b.reason.into(),
    })
    .await
}

command! {
    approve: POST "/v1/commands/approvals/{id}/approve",
    "commands: approvals", "Approve (runs an escalated command)" => 200,
    body: OptionalReasonBody, path: ["id" => approval_id: AggregateId],
    |req| req.run(|b, _| Command::ApproveApproval {
        approval_id: approval_id.into(),
        reason: b.reason.map(String::from),
    }).await
}

command! {
    reject: POST "/v1/commands/approvals/{id}/reject", "commands: approvals", "Reject" => 200,
    body: ReasonBody, path: ["id" => approval_id: AggregateId],
    |req| req.run(|b, _| Command::RejectApproval {
        approval_id: approval_id.into(),
        reason: b.reason.into(),
    }).await
}
