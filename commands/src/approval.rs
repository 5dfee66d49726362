//! The approval decider: a request for a human decision, granted or rejected once.

use chronicle_events::domain::ApprovalEvent;
use chronicle_events::domain::approval::{
    ApprovalGranted, ApprovalRejected, ApprovalRequested, ApprovalStatus,
};
use chronicle_events::stream_id::valid_id;
use uuid::Uuid;

use crate::{Decider, Rejection, RejectionCode, require_text};

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

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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

    fn initial_state() -> Option<Approval> {
        None
    }

    fn decide(
        command: &ApprovalCommand,
        state: &Option<Approval>,
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
                if !valid_id(approval_id) {
                    return Err(Rejection::invalid(
                        "approval_id",
                        "approval_id must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', ':' or '@'",
                    ));
                }
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
    use serde_json::json;

    fn request() -> ApprovalCommand {
        ApprovalCommand::Request {
            approval_id: "ap1".into(),
            action: "wire.send".into(),
            payload: json!({"amount": 100}),
            reason: "vendor payment".into(),
            escalated_command_id: None,
            agent_id: None,
        }
    }

    fn after(commands: &[ApprovalCommand]) -> Option<Approval> {
        let mut s = None;
        for c in commands {
            for e in ApprovalDecider::decide(c, &s).unwrap() {
                s = ApprovalDecider::evolve(s, &e);
            }
        }
        s
    }

    #[test]
    fn a_request_is_pending_then_decided_once() {
        let s = after(&[request()]);
        assert_eq!(s.as_ref().unwrap().status, ApprovalStatus::Pending);
        let s = after(&[request(), ApprovalCommand::Approve { reason: None }]);
        assert_eq!(s.as_ref().unwrap().status, ApprovalStatus::Approved);
        for again in [
            ApprovalCommand::Approve { reason: None },
            ApprovalCommand::Reject {
                reason: "no".into(),
            },
        ] {
            assert_eq!(
                ApprovalDecider::decide(&again, &s).unwrap_err().code,
                RejectionCode::InvalidTransition
            );
        }
    }

    #[test]
    fn rules() {
        assert_eq!(
            ApprovalDecider::decide(&request(), &after(&[request()]))
                .unwrap_err()
                .code,
            RejectionCode::AlreadyExists
        );
        assert_eq!(
            ApprovalDecider::decide(&ApprovalCommand::Approve { reason: None }, &None)
                .unwrap_err()
                .code,
            RejectionCode::NotFound
        );
        let r = ApprovalDecider::decide(
            &ApprovalCommand::Reject { reason: "".into() },
            &after(&[request()]),
        )
        .unwrap_err();
        assert_eq!(r.field, Some("reason"));
    }
}
