//! The command routes (`POST /v1/commands/...`), one file per resource. Each route is
//! declared once with `command!` (see `http::routes`): it parses its body strictly and
//! runs one [`chronicle_commands::Command`] through `CommandRequest::run`, which checks the
//! caller's permission, honours `If-Match` and `Idempotency-Key`, and answers `200`/`201`
//! with the appended events and `ETag: "<version>"`, or `202` when governance escalated an
//! agent's command.

use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;

use crate::http::schema::Text;
use crate::state::AppState;

mod agents;
mod approvals;
pub(crate) mod batch;
mod invoices;
mod jobs;
mod ledger;
mod tokens;

/// Every command route.
pub fn routes() -> OpenApiRouter<AppState> {
    single_routes().merge(batch::routes())
}

/// The routes of one command each (what a batch's commands name).
pub fn single_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(tokens::routes())
        .merge(jobs::routes())
        .merge(approvals::routes())
        .merge(ledger::routes())
        .merge(invoices::routes())
        .merge(agents::routes())
}

// Bodies several resources share.

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    pub reason: Text,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmptyBody {}
