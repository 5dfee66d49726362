//! Domain `agent`: an AI agent's registration, maturity and every governance decision
//! about it (stream `agent.<agent_id>`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::domain_events;

/// How far an agent is trusted, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum Maturity {
    Student,
    Intern,
    Supervised,
    Autonomous,
}

impl Maturity {
    pub fn as_str(self) -> &'static str {
        match self {
            Maturity::Student => "STUDENT",
            Maturity::Intern => "INTERN",
            Maturity::Supervised => "SUPERVISED",
            Maturity::Autonomous => "AUTONOMOUS",
        }
    }
}

/// How much a command can do; the least maturity allowed to run it alone rises with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Complexity {
    Low,
    Moderate,
    High,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Allowed,
    Denied,
    Escalated,
    Bypassed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "ALLOWED",
            Outcome::Denied => "DENIED",
            Outcome::Escalated => "ESCALATED",
            Outcome::Bypassed => "BYPASSED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRegistered {
    pub agent_id: String,
    pub name: String,
    pub maturity: Maturity,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMaturityChanged {
    pub from: Maturity,
    pub to: Maturity,
    pub reason: String,
}

/// A governance decision about one command of the agent, whatever its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernanceDecisionRecorded {
    pub agent_id: String,
    pub action: String,
    pub complexity: Complexity,
    pub maturity: Maturity,
    pub outcome: Outcome,
    pub reason: String,
    pub command_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
}

domain_events!(
    /// Events of an agent's stream.
    AgentEvent,
    Agent,
    [
        AgentRegistered,
        AgentMaturityChanged,
        GovernanceDecisionRecorded
    ]
);
