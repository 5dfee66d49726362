//! Deciders tested as given/when/then (fmodel-rust's shape): given these events, when this
//! command (with this context), then exactly these events — or this rejection.
//!
//! ```ignore
//! JobDecider::given([submitted()]).when(JobCommand::Start).then([JobStarted {}.into()]);
//! JobDecider::given([]).when(JobCommand::Start).then_error(RejectionCode::NotFound);
//! ```

use std::fmt::Debug;

use crate::{Decider, Rejection, RejectionCode};

pub struct Given<D: Decider> {
    state: D::State,
    context: D::Context,
}

pub struct When<D: Decider> {
    outcome: Result<Vec<D::Event>, Rejection>,
    command: String,
}

/// `Decider::given(events)`, for every decider whose context has a default.
pub trait Spec: Decider + Sized {
    fn given(events: impl IntoIterator<Item = Self::Event>) -> Given<Self>
    where
        Self::Context: Default,
    {
        Given {
            state: events
                .into_iter()
                .fold(Self::initial_state(), |s, e| Self::evolve(s, &e)),
            context: Self::Context::default(),
        }
    }
}

impl<D: Decider> Spec for D {}

impl<D: Decider> Given<D>
where
    D::Command: Debug,
{
    /// What the decision consults besides its aggregate.
    pub fn with(mut self, context: D::Context) -> Self {
        self.context = context;
        self
    }

    pub fn when(self, command: D::Command) -> When<D> {
        When {
            outcome: D::decide(&command, &self.state, &self.context),
            command: format!("{command:?}"),
        }
    }
}

impl<D: Decider> When<D>
where
    D::Event: Debug + PartialEq,
{
    /// Exactly these events, in this order.
    pub fn then(self, expected: impl IntoIterator<Item = D::Event>) {
        let expected: Vec<D::Event> = expected.into_iter().collect();
        match self.outcome {
            Ok(events) => assert_eq!(events, expected, "when {}", self.command),
            Err(r) => panic!(
                "when {}: refused {r:?}, expected {expected:?}",
                self.command
            ),
        }
    }

    /// Refused with `code`.
    pub fn then_error(self, code: RejectionCode) -> Rejection {
        match self.outcome {
            Ok(events) => panic!(
                "when {}: accepted with {events:?}, expected {code:?}",
                self.command
            ),
            Err(r) => {
                assert_eq!(r.code, code, "when {}: {r:?}", self.command);
                r
            }
        }
    }

    /// Refused as invalid, on `field`.
    pub fn then_invalid(self, field: &str) {
        let r = self.then_error(RejectionCode::ValidationFailed);
        assert_eq!(r.field, Some(field), "{r:?}");
    }
}

/// The state a snapshot of `state` reads back as (through JSON, as snapshots are stored).
pub fn through_snapshot<D: crate::Decider>(state: &D::State) -> D::State {
    let json = serde_json::to_vec(state).expect("a state serializes");
    serde_json::from_slice(&json).expect("a snapshot reads back")
}
