//! The job decider: an agent job's life.
//!
//! Statuses move only along `PENDING→RUNNING→COMPLETED|FAILED`, `PENDING|RUNNING→CANCELLED`
//! and `FAILED→PENDING` (retry); anything else is `INVALID_TRANSITION`.

use chronicle_events::domain::JobEvent;
use chronicle_events::domain::job::{
    JobCancelled, JobCompleted, JobFailed, JobRetried, JobStarted, JobStatus, JobSubmitted,
};
use chronicle_events::stream_id::valid_id;

use crate::{Decider, Rejection, RejectionCode, require_text};

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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

    fn initial_state() -> Option<Job> {
        None
    }

    fn decide(command: &JobCommand, state: &Option<Job>) -> Result<Vec<JobEvent>, Rejection> {
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
                if !valid_id(job_id) {
                    return Err(Rejection::invalid(
                        "job_id",
                        "job_id must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', ':' or '@'",
                    ));
                }
                if !valid_id(agent_id) {
                    return Err(Rejection::invalid(
                        "agent_id",
                        "agent_id must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', ':' or '@'",
                    ));
                }
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

    /// Given these commands (each must be accepted), when `command`, then the outcome.
    fn given_when(given: &[JobCommand], command: JobCommand) -> Result<Vec<JobEvent>, Rejection> {
        let mut state = JobDecider::initial_state();
        for c in given {
            for e in JobDecider::decide(c, &state).expect("given commands are accepted") {
                state = JobDecider::evolve(state, &e);
            }
        }
        JobDecider::decide(&command, &state)
    }

    fn code(r: Result<Vec<JobEvent>, Rejection>) -> RejectionCode {
        r.expect_err("expected a rejection").code
    }

    #[test]
    fn a_submitted_job_is_pending() {
        let events = given_when(&[], submit()).unwrap();
        let state = JobDecider::fold(&events);
        assert_eq!(state.unwrap().status, JobStatus::Pending);
    }

    #[test]
    fn submitting_twice_is_already_exists() {
        assert_eq!(
            code(given_when(&[submit()], submit())),
            RejectionCode::AlreadyExists
        );
    }

    #[test]
    fn commands_on_a_missing_job_are_not_found() {
        assert_eq!(
            code(given_when(&[], JobCommand::Start)),
            RejectionCode::NotFound
        );
    }

    #[test]
    fn the_happy_path_and_retry() {
        let fail = JobCommand::Fail {
            error: "timeout".into(),
        };
        assert!(given_when(&[submit()], JobCommand::Start).is_ok());
        assert!(given_when(&[submit(), JobCommand::Start], fail.clone()).is_ok());
        assert!(
            given_when(
                &[submit(), JobCommand::Start, fail.clone()],
                JobCommand::Retry
            )
            .is_ok()
        );
        assert!(
            given_when(
                &[submit(), JobCommand::Start, fail, JobCommand::Retry],
                JobCommand::Start
            )
            .is_ok()
        );
    }

    #[test]
    fn illegal_moves_are_invalid_transitions() {
        let complete = JobCommand::Complete { result: json!(1) };
        let cancel = JobCommand::Cancel {
            reason: "no longer needed".into(),
        };
        for (given, when) in [
            (vec![submit()], complete.clone()),
            (vec![submit()], JobCommand::Retry),
            (vec![submit(), JobCommand::Start], JobCommand::Start),
            (
                vec![submit(), JobCommand::Start, complete.clone()],
                cancel.clone(),
            ),
            (vec![submit(), cancel.clone()], JobCommand::Start),
            (
                vec![submit(), JobCommand::Start, complete],
                JobCommand::Retry,
            ),
        ] {
            assert_eq!(
                code(given_when(&given, when.clone())),
                RejectionCode::InvalidTransition,
                "{when:?} after {given:?}"
            );
        }
    }

    #[test]
    fn blank_reasons_and_bad_ids_are_validation_failures() {
        let r = given_when(&[submit()], JobCommand::Cancel { reason: " ".into() }).unwrap_err();
        assert_eq!(
            (r.code, r.field),
            (RejectionCode::ValidationFailed, Some("reason"))
        );
        let r = given_when(
            &[],
            JobCommand::Submit {
                job_id: "a.b".into(),
                agent_id: "x".into(),
                kind: "k".into(),
                input: json!(null),
            },
        )
        .unwrap_err();
        assert_eq!(r.field, Some("job_id"));
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
        /// Whatever commands arrive, in whatever order, the accepted ones walk a legal path.
        #[test]
        fn any_accepted_sequence_is_a_legal_path(commands in proptest::collection::vec(any_command(), 0..40)) {
            let mut state = JobDecider::initial_state();
            for c in &commands {
                if let Ok(events) = JobDecider::decide(c, &state) {
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
