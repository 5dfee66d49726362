//! The agent decider: an agent is registered once and its maturity changes with a reason.
//! Governance decisions about it are recorded in the same stream by the command handler
//! (see [`crate::governance`]); they do not change its state.

use chronicle_events::domain::AgentEvent;
use chronicle_events::domain::agent::{AgentMaturityChanged, AgentRegistered, Maturity};
use chronicle_events::stream_id::valid_id;

use crate::{Decider, Rejection, RejectionCode, require_text};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCommand {
    Register {
        agent_id: String,
        name: String,
        maturity: Maturity,
    },
    ChangeMaturity {
        maturity: Maturity,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Agent {
    pub agent_id: String,
    pub name: String,
    pub maturity: Maturity,
}

pub struct AgentDecider;

impl Decider for AgentDecider {
    type Command = AgentCommand;
    type Event = AgentEvent;
    type State = Option<Agent>;

    fn initial_state() -> Option<Agent> {
        None
    }

    fn decide(command: &AgentCommand, state: &Option<Agent>) -> Result<Vec<AgentEvent>, Rejection> {
        match (command, state) {
            (
                AgentCommand::Register {
                    agent_id,
                    name,
                    maturity,
                },
                None,
            ) => {
                if !valid_id(agent_id) {
                    return Err(Rejection::invalid(
                        "agent_id",
                        "agent_id must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', ':' or '@'",
                    ));
                }
                require_text("name", name, 200)?;
                Ok(vec![
                    AgentRegistered {
                        agent_id: agent_id.clone(),
                        name: name.clone(),
                        maturity: *maturity,
                    }
                    .into(),
                ])
            }
            (AgentCommand::Register { agent_id, .. }, Some(_)) => Err(Rejection::new(
                RejectionCode::AlreadyExists,
                format!("agent {agent_id} is already registered"),
            )),
            (AgentCommand::ChangeMaturity { .. }, None) => {
                Err(Rejection::new(RejectionCode::NotFound, "no such agent"))
            }
            (AgentCommand::ChangeMaturity { maturity, reason }, Some(agent)) => {
                require_text("reason", reason, 2000)?;
                if *maturity == agent.maturity {
                    return Err(Rejection::new(
                        RejectionCode::InvalidTransition,
                        format!("agent {} is already {}", agent.agent_id, maturity.as_str()),
                    ));
                }
                Ok(vec![
                    AgentMaturityChanged {
                        from: agent.maturity,
                        to: *maturity,
                        reason: reason.clone(),
                    }
                    .into(),
                ])
            }
        }
    }

    fn evolve(state: Option<Agent>, event: &AgentEvent) -> Option<Agent> {
        match event {
            AgentEvent::AgentRegistered(e) => Some(Agent {
                agent_id: e.agent_id.clone(),
                name: e.name.clone(),
                maturity: e.maturity,
            }),
            AgentEvent::AgentMaturityChanged(e) => state.map(|a| Agent {
                maturity: e.to,
                ..a
            }),
            AgentEvent::GovernanceDecisionRecorded(_) => state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_once_and_maturity_moves_with_a_reason() {
        let reg = AgentCommand::Register {
            agent_id: "bot-1".into(),
            name: "Invoice bot".into(),
            maturity: Maturity::Student,
        };
        let s = AgentDecider::fold(&AgentDecider::decide(&reg, &None).unwrap());
        assert_eq!(
            AgentDecider::decide(&reg, &s).unwrap_err().code,
            RejectionCode::AlreadyExists
        );
        let up = AgentCommand::ChangeMaturity {
            maturity: Maturity::Intern,
            reason: "30 days clean".into(),
        };
        let events = AgentDecider::decide(&up, &s).unwrap();
        let s = AgentDecider::evolve(s, &events[0]);
        assert_eq!(s.as_ref().unwrap().maturity, Maturity::Intern);
        assert_eq!(
            AgentDecider::decide(&up, &s).unwrap_err().code,
            RejectionCode::InvalidTransition
        );
        assert_eq!(
            AgentDecider::decide(&up, &None).unwrap_err().code,
            RejectionCode::NotFound
        );
    }
}
