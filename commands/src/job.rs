//! The job decider: an agent job's life.
//!
//! Statuses move only along `PENDING→RUNNING→COMPLETED|FAILED`, `PENDING|RUNNING→CANCELLED`
//! and `FAILED→PENDING` (retry); anything else is `INVALID_TRANSITION`.

use crate::{Decider, Rejection, RejectionCode, require_id, require_text};
use chronicle_events::domain::JobEvent;
use chronicle_events::domain::job::{
    JobCancelled, JobCompleted, JobFailed, JobRetried, JobStarted, JobStatus, JobSubmitted,
};

#[derive(Debug, Clone, PartialEq)]
pub enum JobCommand {
    Submit {
        job_id: String,
        agent_id: String,
        kind: String,
        input: serde_json::Value,
    },
    Start,
    Complete {
        result: serde_json::Value,
    },
    Fail {
        error: String,
    },
    Cancel {
        reason: String,
    },
    Retry,
}

impl JobCommand {
    /// The command's name in the contract's words, for messages and governance.
    pub fn name(&self) -> &'static str {
        match self {
            JobCommand::Submit { .. } => "submit",
            JobCommand::Start => "start",
            JobCommand::Complete { .. } => "complete",
            JobCommand::Fail { .. } => "fail",
            JobCommand::Cancel { .. } => "cancel",
            JobCommand::Retry => "retry",
        }
    }
}

/// A job as far as deciding goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    pub job_id: String,
    pub agent_id: String,
    pub kind: String,
    pub status: JobStatus,
}

pub struct JobDecider;

pub const MAX_TEXT: usize = 2000;

fn transition(job: &Job, to: &str, allowed_from: &[JobStatus]) -> Result<(), Rejection> {
    if allowed_from.contains(&job.status) {
        Ok(())
    } else {
        Err(Rejection::new(
            RejectionCode::InvalidTransition,
            format!(
                "job {} is {}; it cannot {to}",
                job.job_id,
                job.status.as_str()
            ),
        ))
    }
}

impl Decider for JobDecider {
    type Command = JobCommand;
    type Event = JobEvent;
    type State = Option<Job>;
    type Context = ();

    fn initial_state() -> Option<Job> {
        None
    }

    fn decide(
        command: &JobCommand,
        state: &Option<Job>,
        _: &(),
    ) -> Result<Vec<JobEvent>, Rejection> {
        use JobStatus::*;
        let job = match (command, state) {
            (
                JobCommand::Submit {
                    job_id,
                    agent_id,
                    kind,
                    input,
                },
                None,
            ) => {
                require_id("job_id", job_id)?;
                require_id("agent_id", agent_id)?;
                require_text("kind", kind, 200)?;
                return Ok(vec![
                    JobSubmitted {
                        job_id: job_id.clone(),
                        agent_id: agent_id.clone(),
                        kind: kind.clone(),
                        input: input.clone(),
                    }
                    .into(),
                ]);
            }
            (JobCommand::Submit { job_id, .. }, Some(_)) => {
                return Err(Rejection::new(
                    RejectionCode::AlreadyExists,
                    format!("job {job_id} already exists"),
                ));
            }
            (_, None) => {
                return Err(Rejection::new(RejectionCode::NotFound, "no such job"));
            }
            (_, Some(job)) => job,
        };
        let event: JobEvent = match command {
            JobCommand::Submit { .. } => unreachable!("handled above"),
            JobCommand::Start => {
                transition(job, "start", &[Pending])?;
                JobStarted {}.into()
            }
            JobCommand::Complete { result } => {
                transition(job, "complete", &[Running])?;
                JobCompleted {
                    result: result.clone(),
                }
                .into()
            }
            JobCommand::Fail { error } => {
                require_text("error", error, MAX_TEXT)?;
                transition(job, "fail", &[Running])?;
                JobFailed {
                    error: error.clone(),
                }
                .into()
            }
            JobCommand::Cancel { reason } => {
                require_text("reason", reason, MAX_TEXT)?;
                transition(job, "be cancelled", &[Pending, Running])?;
                JobCancelled {
                    reason: reason.clone(),
                }
                .into()
            }
            JobCommand::Retry => {
                transition(job, "be retried", &[Failed])?;
                JobRetried {}.into()
            }
        };
        Ok(vec![event])
    }

    fn evolve(state: Option<Job>, event: &JobEvent) -> Option<Job> {
        let status = match event {
            JobEvent::JobSubmitted(e) => {
                return Some(Job {
                    job_id: e.job_id.clone(),
                    agent_id: e.agent_id.clone(),
                    kind: e.kind.clone(),
                    status: JobStatus::Pending,
                });
            }
            JobEvent::JobStarted(_) => JobStatus::Running,
            JobEvent::JobCompleted(_) => JobStatus::Completed,
            JobEvent::JobFailed(_) => JobStatus::Failed,
            JobEvent::JobCancelled(_) => JobStatus::Cancelled,
            JobEvent::JobRetried(_) => JobStatus::Pending,
        };
        state.map(|job| Job { status, ..job })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;
    use RejectionCode::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn submit() -> JobCommand {
        JobCommand::Submit {
            job_id: "j1".into(),
            agent_id: "agent-1".into(),
            kind: "summarise".into(),
            input: json!({"doc": "a.pdf"}),
        }
    }

    fn submitted() -> JobEvent {
        JobSubmitted {
            job_id: "j1".into(),
            agent_id: "agent-1".into(),
            kind: "summarise".into(),
            input: json!({"doc": "a.pdf"}),
        }
        .into()
    }

    fn started() -> JobEvent {
        JobStarted {}.into()
    }

    fn failed() -> JobEvent {
        JobFailed {
            error: "timeout".into(),
        }
        .into()
    }

    fn submit_with(job_id: &str, agent_id: &str, kind: &str) -> JobCommand {
        JobCommand::Submit {
            job_id: job_id.into(),
            agent_id: agent_id.into(),
            kind: kind.into(),
            input: json!({"doc": "a.pdf"}),
        }
    }

    #[test]
    fn submitting() {
        JobDecider::given([]).when(submit()).then([submitted()]);
        JobDecider::given([submitted()])
            .when(submit())
            .then_error(AlreadyExists);
        JobDecider::given([])
            .when(submit_with("a.b", "agent-1", "k"))
            .then_invalid("job_id");
        JobDecider::given([])
            .when(submit_with("j1", "a b", "k"))
            .then_invalid("agent_id");
        JobDecider::given([])
            .when(submit_with("j1", "agent-1", " "))
            .then_invalid("kind");
    }

    #[test]
    fn starting() {
        JobDecider::given([submitted()])
            .when(JobCommand::Start)
            .then([started()]);
        JobDecider::given([submitted(), started()])
            .when(JobCommand::Start)
            .then_error(InvalidTransition);
        JobDecider::given([])
            .when(JobCommand::Start)
            .then_error(NotFound);
    }

    #[test]
    fn completing() {
        let complete = JobCommand::Complete { result: json!(1) };
        JobDecider::given([submitted(), started()])
            .when(complete.clone())
            .then([JobCompleted { result: json!(1) }.into()]);
        JobDecider::given([submitted()])
            .when(complete)
            .then_error(InvalidTransition);
    }

    #[test]
    fn failing() {
        let fail = JobCommand::Fail {
            error: "timeout".into(),
        };
        JobDecider::given([submitted(), started()])
            .when(fail.clone())
            .then([failed()]);
        JobDecider::given([submitted()])
            .when(fail)
            .then_error(InvalidTransition);
        JobDecider::given([submitted(), started()])
            .when(JobCommand::Fail { error: "".into() })
            .then_invalid("error");
    }

    #[test]
    fn cancelling() {
        let cancel = JobCommand::Cancel {
            reason: "not needed".into(),
        };
        let cancelled: JobEvent = JobCancelled {
            reason: "not needed".into(),
        }
        .into();
        JobDecider::given([submitted()])
            .when(cancel.clone())
            .then([cancelled.clone()]);
        JobDecider::given([submitted(), started()])
            .when(cancel.clone())
            .then([cancelled.clone()]);
        JobDecider::given([submitted(), started(), failed()])
            .when(cancel.clone())
            .then_error(InvalidTransition);
        JobDecider::given([submitted(), cancelled])
            .when(cancel)
            .then_error(InvalidTransition);
        JobDecider::given([submitted()])
            .when(JobCommand::Cancel { reason: " ".into() })
            .then_invalid("reason");
    }

    #[test]
    fn retrying() {
        JobDecider::given([submitted(), started(), failed()])
            .when(JobCommand::Retry)
            .then([JobRetried {}.into()]);
        JobDecider::given([submitted(), started(), failed(), JobRetried {}.into()])
            .when(JobCommand::Start)
            .then([started()]);
        JobDecider::given([
            submitted(),
            started(),
            JobCompleted { result: json!(1) }.into(),
        ])
        .when(JobCommand::Retry)
        .then_error(InvalidTransition);
    }

    fn any_command() -> impl Strategy<Value = JobCommand> {
        prop_oneof![
            Just(submit()),
            Just(JobCommand::Start),
            Just(JobCommand::Complete { result: json!(1) }),
            Just(JobCommand::Fail { error: "e".into() }),
            Just(JobCommand::Cancel { reason: "r".into() }),
            Just(JobCommand::Retry),
        ]
    }

    fn legal(from: Option<JobStatus>, to: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (from, to),
            (None, Pending)
                | (Some(Pending), Running)
                | (Some(Running), Completed)
                | (Some(Running), Failed)
                | (Some(Pending), Cancelled)
                | (Some(Running), Cancelled)
                | (Some(Failed), Pending)
        )
    }

    proptest! {
        /// A snapshot never changes an answer: at every point of any history, the state
        /// read back from a snapshot equals the replayed one and decides the next command
        /// (accepted or refused, and with which events) exactly as it does.
        #[test]
        fn a_snapshot_decides_as_the_replayed_state(commands in proptest::collection::vec(any_command(), 0..40)) {
            let mut state = JobDecider::initial_state();
            for c in &commands {
                let snapshot = crate::spec::through_snapshot::<JobDecider>(&state);
                prop_assert_eq!(&snapshot, &state);
                let decided = JobDecider::decide(c, &state, &());
                prop_assert_eq!(JobDecider::decide(c, &snapshot, &()), decided.clone());
                for e in decided.iter().flatten() {
                    state = JobDecider::evolve(state, e);
                }
            }
        }

        /// Whatever commands arrive, in whatever order, the accepted ones walk a legal path.
        #[test]
        fn any_accepted_sequence_is_a_legal_path(commands in proptest::collection::vec(any_command(), 0..40)) {
            let mut state = JobDecider::initial_state();
            for c in &commands {
                if let Ok(events) = JobDecider::decide(c, &state, &()) {
                    for e in &events {
                        let before = state.as_ref().map(|j| j.status);
                        state = JobDecider::evolve(state, e);
                        let after = state.as_ref().map(|j| j.status).expect("a job after an event");
                        prop_assert!(legal(before, after), "{before:?} -> {after:?}");
                    }
                }
            }
        }
    }
}
