//! Domain `governance`: global switches (stream `governance.bypass`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::domain_events;

/// The emergency bypass: while enabled (and before `until`, when given) every agent
/// command goes through as `BYPASSED`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernanceBypassChanged {
    pub enabled: bool,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

domain_events!(
    /// Events of the governance switches' stream.
    GovernanceEvent,
    Governance,
    [GovernanceBypassChanged]
);
