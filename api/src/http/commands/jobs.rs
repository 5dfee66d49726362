//! `POST /v1/commands/jobs...`: an agent job's life.

use chronicle_commands::Command;
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{EmptyBody, ReasonBody};
use crate::http::request::derived_id;
use crate::http::routes::command;
use crate::http::schema::{AggregateId, ShortText, Text};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_job))
        .routes(routes!(start_job))
        .routes(routes!(complete_job))
        .routes(routes!(fail_job))
        .routes(routes!(cancel_job))
        .routes(routes!(retry_job))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitJobBody {
    job_id: Option<AggregateId>,
    agent_id: AggregateId,
    kind: ShortText,
    #[serde(default)]
    #[schema(value_type = Object)]
    input: Value,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteBody {
    #[serde(default)]
    #[schema(value_type = Object)]
    result: Value,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailBody {
    error: Text,
}

command! {
    submit_job: POST "/v1/commands/jobs", "commands: jobs", "Submit a job (PENDING)" => 201,
    body: SubmitJobBody,
    |req| req.run(|b, id| Command::SubmitJob {
        job_id: b.job_id.map_or_else(|| derived_id(id, "job"), String::from),
        agent_id: b.agent_id.into(),
        kind: b.kind.into(),
        input: b.input,
    })
    .await
}

command! {
    start_job: POST "/v1/commands/jobs/{id}/start", "commands: jobs", "Start a job" => 200,
    body: EmptyBody, path: ["id" => job_id: AggregateId],
    |req| req.run(|_, _| Command::StartJob { job_id: job_id.into() }).await
}

command! {
    complete_job: POST "/v1/commands/jobs/{id}/complete", "commands: jobs", "Complete a job" => 200,
    body: CompleteBody, path: ["id" => job_id: AggregateId],
    |req| req.run(|b, _| Command::CompleteJob { job_id: job_id.into(), result: b.result }).await
}

command! {
    fail_job: POST "/v1/commands/jobs/{id}/fail", "commands: jobs", "Fail a job" => 200,
    body: FailBody, path: ["id" => job_id: AggregateId],
    |req| req.run(|b, _| Command::FailJob { job_id: job_id.into(), error: b.error.into() }).await
}

command! {
    cancel_job: POST "/v1/commands/jobs/{id}/cancel", "commands: jobs", "Cancel a job" => 200,
    body: ReasonBody, path: ["id" => job_id: AggregateId],
    |req| req.run(|b, _| Command::CancelJob { job_id: job_id.into(), reason: b.reason.into() }).await
}

command! {
    retry_job: POST "/v1/commands/jobs/{id}/retry", "commands: jobs", "Retry a failed job" => 200,
    body: EmptyBody, path: ["id" => job_id: AggregateId],
    |req| req.run(|_, _| Command::RetryJob { job_id: job_id.into() }).await
}
