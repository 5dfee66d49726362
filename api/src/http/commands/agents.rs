//! `POST /v1/commands/agents...` and `.../governance/bypass`: AI agents' registration and
//! maturity, and the emergency bypass of governance.

use chronicle_commands::Command;
use chronicle_events::domain::agent::Maturity;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::routes::command;
use crate::http::schema::{AggregateId, ShortText, Text};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_agent))
        .routes(routes!(change_maturity))
        .routes(routes!(set_bypass))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterAgentBody {
    agent_id: AggregateId,
    name: ShortText,
    maturity: Maturity,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MaturityBody {
    maturity: Maturity,
    reason: Text,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BypassBody {
    enabled: bool,
    reason: Text,
    /// Only when enabling, and in the future.
    until: Option<DateTime<Utc>>,
}

command! {
    register_agent: POST "/v1/commands/agents", "commands: agents", "Register an agent" => 201,
    body: RegisterAgentBody,
    |req| req.run(|b, _| Command::RegisterAgent {
        agent_id: b.agent_id.into(),
        name: b.name.into(),
        maturity: b.maturity,
    })
    .await
}

command! {
    change_maturity: POST "/v1/commands/agents/{id}/maturity",
    "commands: agents", "Change an agent's maturity" => 200,
    body: MaturityBody, path: ["id" => agent_id: AggregateId],
    |req| req.run(|b, _| Command::ChangeMaturity {
        agent_id: agent_id.into(),
        maturity: b.maturity,
        reason: b.reason.into(),
    })
    .await
}

command! {
    set_bypass: POST "/v1/commands/governance/bypass",
    "commands: agents", "Switch the governance bypass" => 200,
    body: BypassBody,
    |req| req.run(|b, _| Command::SetBypass {
        enabled: b.enabled,
        reason: b.reason.into(),
        until: b.until,
    })
    .await
}
