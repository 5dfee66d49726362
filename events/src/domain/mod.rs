//! The payload types of every domain, in the business's words.
//!
//! Each domain has one enum of its events, tagged the way the envelope stores them
//! (`type` beside `data`). [`Event`] is any of them. Event types are unique across
//! domains; the stream's domain says which enum to decode with.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::stream_id::Domain;

pub mod agent;
pub mod approval;
pub mod chart;
pub mod entry;
pub mod governance;
pub mod invoice;
pub mod job;
pub mod money;
pub mod seal;
pub mod user;

pub use agent::AgentEvent;
pub use approval::ApprovalEvent;
pub use chart::ChartEvent;
pub use entry::EntryEvent;
pub use governance::GovernanceEvent;
pub use invoice::InvoiceEvent;
pub use job::JobEvent;
pub use money::MinorUnits;
pub use seal::SealEvent;
pub use user::UserEvent;

/// Defines a domain's event enum: adjacently tagged (`type`, `data`), each variant wrapping
/// a payload struct of the same name, plus `event_type()` and the list of its types.
macro_rules! domain_events {
    ($(#[$meta:meta])* $name:ident, $dv:ident, [$($variant:ident),+ $(,)?]) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "type", content = "data")]
        pub enum $name {
            $($variant($variant)),+
        }

        impl $crate::domain::DomainEvent for $name {
            const DOMAIN: $crate::stream_id::Domain = $crate::stream_id::Domain::$dv;
            fn from_event(event: &$crate::domain::Event) -> Option<&Self> {
                match event {
                    $crate::domain::Event::$dv(e) => Some(e),
                    _ => None,
                }
            }
            const TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];
            fn event_type(&self) -> &'static str {
                match self {
                    $($name::$variant(_) => stringify!($variant)),+
                }
            }
            fn decode_data(
                event_type: &str,
                data: &serde_json::Value,
            ) -> Option<Result<Self, serde_json::Error>> {
                use serde::Deserialize as _;
                match event_type {
                    $(stringify!($variant) => Some($variant::deserialize(data).map($name::$variant)),)+
                    _ => None,
                }
            }
            fn write_data(&self, out: &mut Vec<u8>) {
                // Serializing our own derived types into memory cannot fail (see `parts`).
                match self {
                    $($name::$variant(data) => $crate::chain::write_canonical_from(data, out)),+
                }
                .expect("event payloads serialize")
            }
        }

        $(
            impl From<$variant> for $name {
                fn from(e: $variant) -> Self {
                    $name::$variant(e)
                }
            }
            impl From<$variant> for $crate::domain::Event {
                fn from(e: $variant) -> Self {
                    $crate::domain::Event::from($name::$variant(e))
                }
            }
        )+
    };
}
pub(crate) use domain_events;

/// What every domain's event enum offers.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + Into<Event> {
    const DOMAIN: Domain;
    const TYPES: &'static [&'static str];
    fn event_type(&self) -> &'static str;
    /// The event of type `event_type` with payload `data` (`None`: not a type of this
    /// domain). Deserializes the payload struct straight from `data`, without the
    /// buffering an adjacently tagged enum needs.
    fn decode_data(
        event_type: &str,
        data: &serde_json::Value,
    ) -> Option<Result<Self, serde_json::Error>>;
    /// Appends its payload (the envelope's `data`) in canonical form.
    fn write_data(&self, out: &mut Vec<u8>);
    /// This domain's event inside `event`, if it is one.
    fn from_event(event: &Event) -> Option<&Self>;
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("`{event_type}` is not an event of domain `{domain}`")]
    UnknownType { domain: Domain, event_type: String },
    #[error("`{event_type}` schema {schema} is newer than this build understands")]
    UnsupportedSchema { event_type: String, schema: u32 },
    #[error("`{event_type}` payload does not decode: {message}")]
    Invalid { event_type: String, message: String },
}

/// Any event of any domain.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    User(UserEvent),
    Job(JobEvent),
    Approval(ApprovalEvent),
    Chart(ChartEvent),
    Entry(EntryEvent),
    Agent(AgentEvent),
    Invoice(InvoiceEvent),
    Governance(GovernanceEvent),
    Seal(SealEvent),
}

macro_rules! event_from {
    ($($variant:ident($ty:ty)),+) => {
        $(impl From<$ty> for Event {
            fn from(e: $ty) -> Self { Event::$variant(e) }
        })+
    };
}
event_from!(
    User(UserEvent),
    Job(JobEvent),
    Approval(ApprovalEvent),
    Chart(ChartEvent),
    Entry(EntryEvent),
    Agent(AgentEvent),
    Invoice(InvoiceEvent),
    Governance(GovernanceEvent),
    Seal(SealEvent)
);

fn parts<E: Serialize>(e: &E) -> serde_json::Value {
    // Serializing our own derived types into a Value cannot fail: no maps with non-string
    // keys, no custom serializers that error.
    let mut v = serde_json::to_value(e).expect("event payloads serialize");
    v.get_mut("data")
        .map(serde_json::Value::take)
        .unwrap_or_default()
}

fn decode_as<E: DomainEvent>(event_type: &str, data: &serde_json::Value) -> Result<E, DecodeError> {
    match E::decode_data(event_type, data) {
        None => Err(DecodeError::UnknownType {
            domain: E::DOMAIN,
            event_type: event_type.to_owned(),
        }),
        Some(decoded) => decoded.map_err(|e| DecodeError::Invalid {
            event_type: event_type.to_owned(),
            message: e.to_string(),
        }),
    }
}

impl Event {
    pub fn domain(&self) -> Domain {
        match self {
            Event::User(_) => Domain::User,
            Event::Job(_) => Domain::Job,
            Event::Approval(_) => Domain::Approval,
            Event::Chart(_) => Domain::Chart,
            Event::Entry(_) => Domain::Entry,
            Event::Agent(_) => Domain::Agent,
            Event::Invoice(_) => Domain::Invoice,
            Event::Governance(_) => Domain::Governance,
            Event::Seal(_) => Domain::Seal,
        }
    }

    pub fn event_type(&self) -> &'static str {
        match self {
            Event::User(e) => e.event_type(),
            Event::Job(e) => e.event_type(),
            Event::Approval(e) => e.event_type(),
            Event::Chart(e) => e.event_type(),
            Event::Entry(e) => e.event_type(),
            Event::Agent(e) => e.event_type(),
            Event::Invoice(e) => e.event_type(),
            Event::Governance(e) => e.event_type(),
            Event::Seal(e) => e.event_type(),
        }
    }

    /// The payload as the envelope's `data`.
    pub fn data(&self) -> serde_json::Value {
        match self {
            Event::User(e) => parts(e),
            Event::Job(e) => parts(e),
            Event::Approval(e) => parts(e),
            Event::Chart(e) => parts(e),
            Event::Entry(e) => parts(e),
            Event::Agent(e) => parts(e),
            Event::Invoice(e) => parts(e),
            Event::Governance(e) => parts(e),
            Event::Seal(e) => parts(e),
        }
    }

    /// The payload as the envelope's `data`, in canonical form: the bytes of
    /// `chain::canonical_json(&self.data())`, written without building the `Value`.
    pub fn canonical_data(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        match self {
            Event::User(e) => e.write_data(&mut out),
            Event::Job(e) => e.write_data(&mut out),
            Event::Approval(e) => e.write_data(&mut out),
            Event::Chart(e) => e.write_data(&mut out),
            Event::Entry(e) => e.write_data(&mut out),
            Event::Agent(e) => e.write_data(&mut out),
            Event::Invoice(e) => e.write_data(&mut out),
            Event::Governance(e) => e.write_data(&mut out),
            Event::Seal(e) => e.write_data(&mut out),
        }
        out
    }

    /// Decodes today's schema of `event_type` in `domain` (upcast first: see
    /// [`crate::Envelope::decode`]).
    pub fn decode(
        domain: Domain,
        event_type: &str,
        data: serde_json::Value,
    ) -> Result<Event, DecodeError> {
        Self::decode_ref(domain, event_type, &data)
    }

    /// [`Event::decode`] of a payload already at today's schema, by reference.
    pub fn decode_ref(
        domain: Domain,
        event_type: &str,
        data: &serde_json::Value,
    ) -> Result<Event, DecodeError> {
        Ok(match domain {
            Domain::User => Event::User(decode_as(event_type, data)?),
            Domain::Job => Event::Job(decode_as(event_type, data)?),
            Domain::Approval => Event::Approval(decode_as(event_type, data)?),
            Domain::Chart => Event::Chart(decode_as(event_type, data)?),
            Domain::Entry => Event::Entry(decode_as(event_type, data)?),
            Domain::Agent => Event::Agent(decode_as(event_type, data)?),
            Domain::Invoice => Event::Invoice(decode_as(event_type, data)?),
            Domain::Governance => Event::Governance(decode_as(event_type, data)?),
            Domain::Seal => Event::Seal(decode_as(event_type, data)?),
        })
    }

    /// Every event type of every domain.
    pub fn all_types() -> impl Iterator<Item = (Domain, &'static str)> {
        fn of<E: DomainEvent>() -> impl Iterator<Item = (Domain, &'static str)> {
            E::TYPES.iter().map(|t| (E::DOMAIN, *t))
        }
        of::<UserEvent>()
            .chain(of::<JobEvent>())
            .chain(of::<ApprovalEvent>())
            .chain(of::<ChartEvent>())
            .chain(of::<EntryEvent>())
            .chain(of::<AgentEvent>())
            .chain(of::<InvoiceEvent>())
            .chain(of::<GovernanceEvent>())
            .chain(of::<SealEvent>())
    }
}
