//! Domain `seal`: signed checkpoints of the log (stream `seal.log`).

use serde::{Deserialize, Serialize};

use super::domain_events;

/// `root` is the Merkle root of the hashes of the events at positions
/// `from_position..=to_position` (seals excluded), `prev_seal` the previous seal's hash,
/// `signature` an Ed25519 signature by the seal key over the seal's canonical content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealRecorded {
    pub from_position: u64,
    pub to_position: u64,
    pub root: String,
    pub prev_seal: Option<String>,
    pub signature: String,
}

domain_events!(
    /// Events of the seal chain.
    SealEvent,
    Seal,
    [SealRecorded]
);
