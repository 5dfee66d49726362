//! The approval decider: a request for a human decision, granted or rejected once.

use chronicle_events::domain::ApprovalEvent;
use chronicle_events::domain::approval::{
    ApprovalGranted, ApprovalRejected, ApprovalRequested, ApprovalStatus,
};
use uuid::Uuid;

use crate::{Decider, Rejection, RejectionCode, require_id, require_text};

#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalCommand {
    Request {
        approval_id: String,
        action: String,
        payload: serde_json::Value,
        reason: String,
        escalated_command_id: Option<Uuid>,
        agent_id: Option<String>,
    },
    Approve {
        reason: Option<String>,
    },
    Reject {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Approval {
    pub approval_id: String,
    pub action: String,
    pub payload: serde_json::Value,
    pub status: ApprovalStatus,
    pub escalated_command_id: Option<Uuid>,
    pub agent_id: Option<String>,
}

pub struct ApprovalDecider;

fn decided(a: &Approval, verb: &str) -> Rejection {
    Rejection::new(
        RejectionCode::InvalidTransition,
        format!(
            "approval {} is {}; it cannot be {verb}",
            a.approval_id,
            a.status.as_str()
        ),
    )
}

impl Decider for ApprovalDecider {
    type Command = ApprovalCommand;
    type Event = ApprovalEvent;
    type State = Option<Approval>;
    type Context = ();

    fn initial_state() -> Option<Approval> {
        None
    }

    fn decide(
        command: &ApprovalCommand,
        state: &Option<Approval>,
        _: &(),
    ) -> Result<Vec<ApprovalEvent>, Rejection> {
        match (command, state) {
            (
                ApprovalCommand::Request {
                    approval_id,
                    action,
                    payload,
                    reason,
                    escalated_command_id,
                    agent_id,
                },
                None,
            ) => {
                require_id("approval_id", approval_id)?;
                require_text("action", action, 200)?;
                require_text("reason", reason, 2000)?;
                Ok(vec![
                    ApprovalRequested {
                        approval_id: approval_id.clone(),
                        action: action.clone(),
                        payload: payload.clone(),
                        reason: reason.clone(),
                        escalated_command_id: *escalated_command_id,
                        agent_id: agent_id.clone(),
                    }
                    .into(),
                ])
            }
            (ApprovalCommand::Request { approval_id, .. }, Some(_)) => Err(Rejection::new(
                RejectionCode::AlreadyExists,
                format!("approval {approval_id} already exists"),
            )),
            (_, None) => Err(Rejection::new(RejectionCode::NotFound, "no such approval")),
            (ApprovalCommand::Approve { reason }, Some(a)) => {
                if a.status != ApprovalStatus::Pending {
                    return Err(decided(a, "approved"));
                }
                if let Some(r) = reason {
                    require_text("reason", r, 2000)?;
                }
                Ok(vec![
                    ApprovalGranted {
                        reason: reason.clone(),
                    }
                    .into(),
                ])
            }
            (ApprovalCommand::Reject { reason }, Some(a)) => {
                require_text("reason", reason, 2000)?;
                if a.status != ApprovalStatus::Pending {
                    return Err(decided(a, "rejected"));
                }
                Ok(vec![
                    ApprovalRejected {
                        reason: reason.clone(),
                    }
                    .into(),
                ])
            }
        }
    }

    fn evolve(state: Option<Approval>, event: &ApprovalEvent) -> Option<Approval> {
        match event {
            ApprovalEvent::ApprovalRequested(e) => Some(Approval {
                approval_id: e.approval_id.clone(),
                action: e.action.clone(),
                payload: e.payload.clone(),
                status: ApprovalStatus::Pending,
                escalated_command_id: e.escalated_command_id,
                agent_id: e.agent_id.clone(),
            }),
            ApprovalEvent::ApprovalGranted(_) => state.map(|a| Approval {
                status: ApprovalStatus::Approved,
                ..a
            }),
            ApprovalEvent::ApprovalRejected(_) => state.map(|a| Approval {
                status: ApprovalStatus::Rejected,
                ..a
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;
    use RejectionCode::*;
    use serde_json::json;

    fn request_with(approval_id: &str, action: &str, reason: &str) -> ApprovalCommand {
        ApprovalCommand::Request {
            approval_id: approval_id.into(),
            action: action.into(),
            payload: json!({"amount": 100}),
            reason: reason.into(),
            escalated_command_id: None,
            agent_id: None,
        }
    }

    fn request() -> ApprovalCommand {
        request_with("ap1", "wire.send", "vendor payment")
    }

    fn requested() -> ApprovalEvent {
        ApprovalRequested {
            approval_id: "ap1".into(),
            action: "wire.send".into(),
            payload: json!({"amount": 100}),
            reason: "vendor payment".into(),
            escalated_command_id: None,
            agent_id: None,
        }
        .into()
    }

    fn reject(reason: &str) -> ApprovalCommand {
        ApprovalCommand::Reject {
            reason: reason.into(),
        }
    }

    #[test]
    fn requesting() {
        ApprovalDecider::given([])
            .when(request())
            .then([requested()]);
        // An escalated command's request carries its id and the agent.
        let escalated = Uuid::from_u128(7);
        ApprovalDecider::given([])
            .when(ApprovalCommand::Request {
                approval_id: "ap1".into(),
                action: "job.cancel".into(),
                payload: json!({"command": "cancel_job"}),
                reason: "one level short".into(),
                escalated_command_id: Some(escalated),
                agent_id: Some("bot".into()),
            })
            .then([ApprovalRequested {
                approval_id: "ap1".into(),
                action: "job.cancel".into(),
                payload: json!({"command": "cancel_job"}),
                reason: "one level short".into(),
                escalated_command_id: Some(escalated),
                agent_id: Some("bot".into()),
            }
            .into()]);
        ApprovalDecider::given([requested()])
            .when(request())
            .then_error(AlreadyExists);
        ApprovalDecider::given([])
            .when(request_with("a/b", "wire.send", "r"))
            .then_invalid("approval_id");
        ApprovalDecider::given([])
            .when(request_with("ap1", " ", "r"))
            .then_invalid("action");
        ApprovalDecider::given([])
            .when(request_with("ap1", "wire.send", ""))
            .then_invalid("reason");
    }

    #[test]
    fn approving() {
        ApprovalDecider::given([requested()])
            .when(ApprovalCommand::Approve { reason: None })
            .then([ApprovalGranted { reason: None }.into()]);
        ApprovalDecider::given([requested()])
            .when(ApprovalCommand::Approve {
                reason: Some("checked".into()),
            })
            .then([ApprovalGranted {
                reason: Some("checked".into()),
            }
            .into()]);
        ApprovalDecider::given([requested()])
            .when(ApprovalCommand::Approve {
                reason: Some(" ".into()),
            })
            .then_invalid("reason");
        ApprovalDecider::given([])
            .when(ApprovalCommand::Approve { reason: None })
            .then_error(NotFound);
        for decided in [
            ApprovalGranted { reason: None }.into(),
            ApprovalRejected {
                reason: "no".into(),
            }
            .into(),
        ] {
            ApprovalDecider::given([requested(), decided])
                .when(ApprovalCommand::Approve { reason: None })
                .then_error(InvalidTransition);
        }
    }

    #[test]
    fn rejecting() {
        ApprovalDecider::given([requested()])
            .when(reject("wrong vendor"))
            .then([ApprovalRejected {
                reason: "wrong vendor".into(),
            }
            .into()]);
        ApprovalDecider::given([requested()])
            .when(reject(""))
            .then_invalid("reason");
        ApprovalDecider::given([])
            .when(reject("x"))
            .then_error(NotFound);
        ApprovalDecider::given([requested(), ApprovalGranted { reason: None }.into()])
            .when(reject("late"))
            .then_error(InvalidTransition);
    }
}
