//! Domain `entry`: one journal entry (stream `entry.<entry_id>`).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::domain_events;
use super::money::MinorUnits;

/// One line of an entry: exactly one of `debit` and `credit`, a positive amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalLine {
    pub account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debit: Option<MinorUnits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit: Option<MinorUnits>,
    pub currency: String,
}

/// A balanced entry. `reverses` names the entry this one mirrors, when it is a reversal;
/// `source` the aggregate whose command posted it (`invoice.<id>`), absent for an entry
/// posted by hand (schema 2; entries of schema 1 have none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntryPosted {
    pub entry_id: String,
    pub effective_date: NaiveDate,
    pub memo: String,
    pub lines: Vec<JournalLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The entry is reversed by `reversal_entry_id`, posted in the same append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntryReversed {
    pub reason: String,
    pub reversal_entry_id: String,
}

domain_events!(
    /// Events of a journal entry's stream.
    EntryEvent,
    Entry,
    [JournalEntryPosted, JournalEntryReversed]
);
