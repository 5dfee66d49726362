//! Domain `approval`: a request for a human decision (stream `approval.<approval_id>`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::domain_events;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "PENDING",
            ApprovalStatus::Approved => "APPROVED",
            ApprovalStatus::Rejected => "REJECTED",
        }
    }
}

/// An approval enters the log `PENDING`. When governance escalates an agent's command,
/// `payload` carries the original command and `escalated_command_id` its id, so that the
/// command can run once a human approves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    pub approval_id: String,
    pub action: String,
    pub payload: serde_json::Value,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_command_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApprovalGranted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRejected {
    pub reason: String,
}

domain_events!(
    /// Events of an approval's stream.
    ApprovalEvent,
    Approval,
    [ApprovalRequested, ApprovalGranted, ApprovalRejected]
);
