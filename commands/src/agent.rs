//! The agent decider: an agent is registered once and its maturity changes with a reason.
//! Governance decisions about it are recorded in the same stream by the command handler
//! (see [`crate::governance`]); they do not change its state.

use crate::{Decider, Rejection, RejectionCode, require_id, require_text};
use chronicle_events::domain::AgentEvent;
use chronicle_events::domain::agent::{AgentMaturityChanged, AgentRegistered, Maturity};

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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    type Context = ();

    fn initial_state() -> Option<Agent> {
        None
    }

    fn decide(
        command: &AgentCommand,
        state: &Option<Agent>,
        _: &(),
    ) -> Result<Vec<AgentEvent>, Rejection> {
        match (command, state) {
            (
                AgentCommand::Register {
                    agent_id,
                    name,
                    maturity,
                },
                None,
            ) => {
                require_id("agent_id", agent_id)?;
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
    use crate::spec::Spec;
    use RejectionCode::*;
    use chronicle_events::domain::agent::{Complexity, GovernanceDecisionRecorded, Outcome};

    fn register(agent_id: &str, name: &str) -> AgentCommand {
        AgentCommand::Register {
            agent_id: agent_id.into(),
            name: name.into(),
            maturity: Maturity::Student,
        }
    }

    fn registered() -> AgentEvent {
        AgentRegistered {
            agent_id: "bot-1".into(),
            name: "Invoice bot".into(),
            maturity: Maturity::Student,
        }
        .into()
    }

    fn change(to: Maturity, reason: &str) -> AgentCommand {
        AgentCommand::ChangeMaturity {
            maturity: to,
            reason: reason.into(),
        }
    }

    #[test]
    fn registering() {
        AgentDecider::given([])
            .when(register("bot-1", "Invoice bot"))
            .then([registered()]);
        AgentDecider::given([registered()])
            .when(register("bot-1", "Invoice bot"))
            .then_error(AlreadyExists);
        AgentDecider::given([])
            .when(register("bot 1", "Invoice bot"))
            .then_invalid("agent_id");
        AgentDecider::given([])
            .when(register("bot-1", ""))
            .then_invalid("name");
    }

    #[test]
    fn changing_maturity() {
        AgentDecider::given([registered()])
            .when(change(Maturity::Intern, "30 days clean"))
            .then([AgentMaturityChanged {
                from: Maturity::Student,
                to: Maturity::Intern,
                reason: "30 days clean".into(),
            }
            .into()]);
        AgentDecider::given([registered()])
            .when(change(Maturity::Student, "again"))
            .then_error(InvalidTransition);
        AgentDecider::given([registered()])
            .when(change(Maturity::Intern, " "))
            .then_invalid("reason");
        AgentDecider::given([])
            .when(change(Maturity::Intern, "x"))
            .then_error(NotFound);
        // Governance decisions about an agent do not change it.
        let decision = GovernanceDecisionRecorded {
            agent_id: "bot-1".into(),
            action: "job.start".into(),
            complexity: Complexity::Low,
            maturity: Maturity::Student,
            outcome: Outcome::Allowed,
            reason: "allowed".into(),
            command_id: uuid::Uuid::nil(),
            approval_id: None,
        };
        AgentDecider::given([registered(), decision.into()])
            .when(change(Maturity::Student, "same"))
            .then_error(InvalidTransition);
    }
}
