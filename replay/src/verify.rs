//! Verifying the log: every stored message must be authenticated by an event key (see
//! `chronicle_events::auth`), be a well-formed envelope of the stream its subject names,
//! its `hash` must be the hash of its content, its `prev_hash` the hash of its stream's
//! previous event, its version header the count of its stream so far, and positions must
//! follow each other without gaps. Anything appended straight onto a subject, bypassing
//! Chronicle, breaks at least one of these — the first, whoever computed the hashes. A
//! message that is not authenticated is not an event: the chain of its stream goes on from
//! the last event before it.
//!
//! [`Verifier`] is a pure fold over stored messages in log order, so it checks a live log
//! ([`verify_log`]) and an exported file alike.

use std::collections::{BTreeSet, HashMap};

use chronicle_events::chain::{ChainError, compute_hash};
use chronicle_events::domain::seal::SealRecorded;
use chronicle_events::domain::{Event, SealEvent};
use chronicle_events::jetstream::RawEvent;
use chronicle_events::merkle::{Hash, leaf_of_parsed, merkle_root};
use chronicle_events::tlog::{MISSING, TreeBuilder};
use chronicle_events::{JetStreamLog, Keyring, LogError, StreamId};
use serde::Serialize;

use crate::seal::PublicSealKey;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// No event key authenticates the message: Chronicle did not write it.
    Unauthenticated,
    /// The payload is not an envelope, or not one of the stream its subject names.
    Undecodable,
    /// `hash` is not the hash of the event's content: the event was changed.
    HashMismatch,
    /// `prev_hash` is not the previous event's hash: an event was inserted or removed.
    BrokenLink,
    /// The version header disagrees with the count of events in the stream.
    WrongVersion,
    /// A seal's root, signature, range or link to the previous seal does not hold.
    BadSeal,
}

/// One thing wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub position: u64,
    pub subject: String,
    pub kind: BreakKind,
    pub detail: String,
}

/// A run of missing positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub from_position: u64,
    pub to_position: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SealReport {
    pub checked: u64,
    pub ok: bool,
    /// The last position covered by a verified seal (0 when none).
    pub sealed_to: u64,
    /// Whether signatures were checked (a public key was given).
    pub signatures_checked: bool,
}

/// Whether messages were checked against the event keys.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct AuthReport {
    /// `true` when the verifier held the event keys (the live log, or an operator's offline
    /// check); offline without them, only what the seals recorded is known.
    pub checked: bool,
    /// Messages found (or, unchecked, recorded by seals) not to be authenticated.
    pub unauthenticated: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct VerifyReport {
    pub checked: u64,
    pub first_position: Option<u64>,
    pub last_position: Option<u64>,
    pub ok: bool,
    pub broken_chains: Vec<Break>,
    pub gaps: Vec<Gap>,
    pub seals: SealReport,
    pub authentication: AuthReport,
}

#[derive(Debug, Clone)]
struct StreamTip {
    version: u64,
    hash: Option<String>,
}

/// What one message shows on its own, without the messages before it: computed for
/// many messages at once (in parallel), then folded in log order by [`Verifier::fold`].
pub struct Examined {
    leaf: Hash,
    /// Whether an event key authenticates it (`None`: no keys to check with).
    authentic: Option<bool>,
    body: Result<Body, Unreadable>,
}

struct Body {
    envelope: chronicle_events::Envelope,
    /// The hash of the envelope's content, to compare with the stored one.
    computed_hash: String,
    /// The payload as today's event: a seal's content, other events' `None`; or why it
    /// does not decode.
    decoded: Result<Option<SealRecorded>, String>,
}

enum Unreadable {
    NotAnEnvelope(String),
    WrongStream(String),
}

/// Parses, hashes, authenticates and decodes one stored message: everything
/// [`Verifier::fold`] needs that does not depend on other messages. The payload is parsed
/// once.
pub fn examine(subject_prefix: &str, keyring: Option<&Keyring>, raw: &RawEvent) -> Examined {
    let authentic = keyring.map(|k| {
        k.verify(
            &raw.subject,
            raw.version_header,
            raw.prev.as_deref(),
            &raw.payload,
            raw.auth.as_deref(),
        )
    });
    let value = match serde_json::from_slice::<serde_json::Value>(&raw.payload) {
        Ok(v @ serde_json::Value::Object(_)) => Some(v),
        _ => None,
    };
    let leaf = leaf_of_parsed(value.as_ref(), &raw.payload);
    let Some(value) = value else {
        return Examined {
            leaf,
            authentic,
            body: Err(Unreadable::NotAnEnvelope(
                "the payload is not a JSON object".into(),
            )),
        };
    };
    let computed_hash = compute_hash(&value);
    let envelope: chronicle_events::Envelope = match serde_json::from_value(value) {
        Ok(e) => e,
        Err(e) => {
            return Examined {
                leaf,
                authentic,
                body: Err(Unreadable::NotAnEnvelope(format!("not an envelope: {e}"))),
            };
        }
    };
    match StreamId::from_subject(subject_prefix, &raw.subject) {
        Ok(stream) if stream == envelope.stream => {}
        _ => {
            return Examined {
                leaf,
                authentic,
                body: Err(Unreadable::WrongStream(format!(
                    "the envelope names stream {}",
                    envelope.stream
                ))),
            };
        }
    }
    let decoded = match envelope.decode() {
        Err(e) => Err(e.to_string()),
        Ok(Event::Seal(SealEvent::SealRecorded(seal))) => Ok(Some(seal)),
        Ok(_) => Ok(None),
    };
    Examined {
        leaf,
        authentic,
        body: Ok(Body {
            envelope,
            computed_hash,
            decoded,
        }),
    }
}

/// Checks messages fed in log order.
pub struct Verifier {
    subject_prefix: String,
    /// Whether the fold started at the beginning of the log, so that every stream's first
    /// event is seen and links and versions can be checked from it.
    from_start: bool,
    tips: HashMap<String, StreamTip>,
    report: VerifyReport,
    next_position: Option<u64>,
    key: Option<PublicSealKey>,
    keyring: Option<Keyring>,
    /// Offline without event keys: the positions seals recorded as unauthenticated.
    recorded_unauthenticated: BTreeSet<u64>,
    /// Unauthenticated positions found since the last seal (with event keys), to compare
    /// with what the next seal recorded.
    found_unauthenticated: BTreeSet<u64>,
    seal_subject: String,
    /// Leaves of the positions after the last seal seen.
    /// (Positions only grow, so a sorted Vec.)
    leaves: Vec<(u64, Hash)>,
    /// The last seal seen: the position it sealed to and its hash.
    last_seal: Option<(u64, String)>,
    /// The whole log's tree up to the last seal's position (from the start only: a fold
    /// from the middle cannot know the leaves before it).
    tree: Option<TreeBuilder>,
}

impl Verifier {
    /// A verifier for messages from `from_position` on; with `key`, seal signatures are
    /// checked too, and with `keyring` every message's authentication.
    pub fn new(
        subject_prefix: &str,
        from_position: u64,
        key: Option<PublicSealKey>,
        keyring: Option<Keyring>,
    ) -> Self {
        Verifier {
            subject_prefix: subject_prefix.to_owned(),
            from_start: from_position <= 1,
            tips: HashMap::new(),
            report: VerifyReport {
                seals: SealReport {
                    ok: true,
                    signatures_checked: key.is_some(),
                    ..SealReport::default()
                },
                authentication: AuthReport {
                    checked: keyring.is_some(),
                    unauthenticated: 0,
                },
                ..VerifyReport::default()
            },
            next_position: Some(from_position.max(1)),
            key,
            keyring,
            recorded_unauthenticated: BTreeSet::new(),
            found_unauthenticated: BTreeSet::new(),
            seal_subject: crate::sealer::seal_stream().subject(subject_prefix),
            leaves: Vec::new(),
            last_seal: None,
            tree: (from_position <= 1).then(TreeBuilder::roots_only),
        }
    }

    /// Offline without event keys: the positions the seals of the file recorded as
    /// unauthenticated (read from the file before it is folded).
    pub fn with_recorded_unauthenticated(
        mut self,
        positions: impl IntoIterator<Item = u64>,
    ) -> Self {
        self.recorded_unauthenticated.extend(positions);
        self
    }

    fn check_seal(
        &mut self,
        raw: &RawEvent,
        envelope: &chronicle_events::Envelope,
        seal: &SealRecorded,
    ) {
        self.report.seals.checked += 1;
        let mut problems = Vec::new();
        if let Some((sealed_to, hash)) = &self.last_seal {
            if seal.from_position != sealed_to + 1 {
                problems.push(format!(
                    "covers {}..={} but the previous seal ended at {sealed_to}",
                    seal.from_position, seal.to_position
                ));
            }
            if seal.prev_seal.as_deref() != Some(hash.as_str()) {
                problems.push("prev_seal is not the previous seal's hash".to_owned());
            }
        } else if self.from_start && (seal.from_position != 1 || seal.prev_seal.is_some()) {
            problems.push("the first seal must start at position 1 with no prev_seal".into());
        }
        if seal.to_position >= raw.position || seal.from_position > seal.to_position {
            problems.push(format!(
                "range {}..={} is not before the seal at {}",
                seal.from_position, seal.to_position, raw.position
            ));
        } else if seal.tree_size.is_some() {
            if seal.tree_size != Some(seal.to_position) {
                problems.push("its tree size is not the position it seals to".into());
            }
            if let Some(tree) = self.tree_at(seal.to_position)
                && hex::encode(tree.root()) != seal.root
            {
                problems.push(format!(
                    "the root is not the tree's over positions 1..={}",
                    seal.to_position
                ));
            }
        } else {
            let lo = self
                .leaves
                .partition_point(|(p, _)| *p < seal.from_position);
            let hi = self.leaves.partition_point(|(p, _)| *p <= seal.to_position);
            let range: Vec<Hash> = self.leaves[lo..hi].iter().map(|(_, h)| *h).collect();
            let complete = range.len() as u64 == seal.to_position - seal.from_position + 1;
            if complete {
                if hex::encode(merkle_root(&range)) != seal.root {
                    problems.push("the Merkle root does not match the events it covers".into());
                }
            } else if self.from_start || self.last_seal.is_some() {
                problems.push("positions it covers are missing".into());
            }
        }
        if let Some(key) = &self.key
            && !key.verifies(seal)
        {
            problems.push("the signature is not the seal key's".into());
        }
        if self.keyring.is_some() {
            // The seal must record exactly the unauthenticated positions it covers: a
            // sealer never vouches for a message Chronicle did not write.
            let seen_from = self.report.first_position.unwrap_or(1);
            let found: Vec<u64> = self
                .found_unauthenticated
                .range(seal.from_position..=seal.to_position)
                .copied()
                .collect();
            let recorded: Vec<u64> = seal
                .unauthenticated
                .iter()
                .copied()
                .filter(|p| *p >= seen_from)
                .collect();
            if found != recorded {
                problems.push(format!(
                    "it records {recorded:?} as unauthenticated, but {found:?} are"
                ));
            }
            self.found_unauthenticated = self
                .found_unauthenticated
                .split_off(&(seal.to_position + 1));
        }
        if !problems.is_empty() {
            self.report.seals.ok = false;
            self.flag(raw, BreakKind::BadSeal, problems.join("; "));
        } else {
            self.report.seals.sealed_to = seal.to_position;
        }
        if seal.to_position < raw.position {
            self.tree = self.tree_at(seal.to_position);
        }
        let sealed = self.leaves.partition_point(|(p, _)| *p <= seal.to_position);
        self.leaves.drain(..sealed);
        self.last_seal = Some((seal.to_position, envelope.hash.clone()));
    }

    /// The tree grown from the last seal's size to `size` with the leaves since (a
    /// position the log does not hold is `tlog::MISSING`); `None` when it cannot be known.
    fn tree_at(&self, size: u64) -> Option<TreeBuilder> {
        let mut tree = self.tree.clone()?;
        if size < tree.size() {
            return None;
        }
        let mut leaves = self.leaves.iter().peekable();
        while tree.size() < size {
            let position = tree.size() + 1;
            while leaves.next_if(|(p, _)| *p < position).is_some() {}
            match leaves.next_if(|(p, _)| *p == position) {
                Some((_, leaf)) => tree.push(leaf),
                None => tree.push(&MISSING),
            }
        }
        Some(tree)
    }

    fn flag(&mut self, raw: &RawEvent, kind: BreakKind, detail: impl Into<String>) {
        self.report.broken_chains.push(Break {
            position: raw.position,
            subject: raw.subject.clone(),
            kind,
            detail: detail.into(),
        });
    }

    /// Checks the next message (in log order).
    pub fn check(&mut self, raw: &RawEvent) {
        let examined = examine(&self.subject_prefix, self.keyring.as_ref(), raw);
        self.fold(raw, examined);
    }

    /// Folds in the next message (in log order) with what [`examine`] found in it alone.
    pub fn fold(&mut self, raw: &RawEvent, examined: Examined) {
        self.report.checked += 1;
        self.report.first_position.get_or_insert(raw.position);
        self.report.last_position = Some(raw.position);
        if let Some(expected) = self.next_position
            && raw.position > expected
        {
            self.report.gaps.push(Gap {
                from_position: expected,
                to_position: raw.position - 1,
            });
        }
        self.next_position = Some(raw.position + 1);
        let Examined {
            leaf,
            authentic,
            body,
        } = examined;
        // Every stored message is a leaf, whatever else is wrong with it: the sealer seals
        // what the log holds.
        self.leaves.push((raw.position, leaf));
        let unauthenticated = match authentic {
            Some(ok) => !ok,
            None => self.recorded_unauthenticated.contains(&raw.position),
        };
        if unauthenticated {
            // Not an event: reported, covered by seals like any message, and its stream's
            // chain goes on from the event before it.
            self.found_unauthenticated.insert(raw.position);
            self.report.authentication.unauthenticated += 1;
            let detail = if authentic.is_some() {
                "no event key authenticates it: Chronicle did not write it"
            } else {
                "a seal recorded it as not authenticated by an event key"
            };
            return self.flag(raw, BreakKind::Unauthenticated, detail);
        }
        let body = match body {
            Ok(body) => body,
            Err(Unreadable::NotAnEnvelope(detail)) => {
                return self.flag(raw, BreakKind::Undecodable, detail);
            }
            Err(Unreadable::WrongStream(detail)) => {
                return self.flag(raw, BreakKind::Undecodable, detail);
            }
        };
        let envelope = body.envelope;
        match body.decoded {
            Err(e) => self.flag(raw, BreakKind::Undecodable, e),
            Ok(Some(seal)) if raw.subject == self.seal_subject => {
                self.check_seal(raw, &envelope, &seal)
            }
            Ok(_) => {}
        }

        let tip = self.tips.get(&raw.subject);
        let expected_prev: Option<Option<&str>> = match (tip, self.from_start) {
            (Some(t), _) => Some(t.hash.as_deref()),
            (None, true) => Some(None),
            // Started mid-log: this stream's earlier events were not seen.
            (None, false) => None,
        };
        let found_prev = envelope.prev_hash.as_deref();
        let link = match expected_prev {
            Some(expected) if expected != found_prev => Err(ChainError::BrokenLink {
                expected: expected.map(str::to_owned),
                found: found_prev.map(str::to_owned),
            }),
            _ if body.computed_hash != envelope.hash => Err(ChainError::HashMismatch {
                stored: envelope.hash.clone(),
                computed: body.computed_hash,
            }),
            _ => Ok(()),
        };
        let version = match (tip, self.from_start) {
            (Some(t), _) => Some(t.version + 1),
            (None, true) => Some(1),
            (None, false) => raw.version_header,
        };
        let mut out_of_place = false;
        match link {
            Ok(()) => {}
            Err(e @ ChainError::HashMismatch { .. }) => {
                self.flag(raw, BreakKind::HashMismatch, e.to_string())
            }
            Err(e) => {
                out_of_place = true;
                self.flag(raw, BreakKind::BrokenLink, e.to_string())
            }
        }

        if version.is_some() && raw.version_header != version {
            out_of_place = true;
            self.flag(
                raw,
                BreakKind::WrongVersion,
                format!(
                    "version header {:?}, but it is event {} of its stream",
                    raw.version_header,
                    version.unwrap_or(0)
                ),
            );
        }
        if out_of_place {
            // Not the next event of its stream (a copy published again, or an event
            // inserted): its stream's chain goes on from the event before it, as every
            // reader of the stream does.
            return;
        }
        let tip = StreamTip {
            version: version.unwrap_or(0),
            hash: Some(envelope.hash),
        };
        match self.tips.get_mut(&raw.subject) {
            Some(t) => *t = tip,
            None => {
                self.tips.insert(raw.subject.clone(), tip);
            }
        }
    }

    pub fn finish(mut self) -> VerifyReport {
        self.report.ok = self.report.broken_chains.is_empty()
            && self.report.gaps.is_empty()
            && self.report.seals.ok;
        self.report
    }
}

/// Verifies the live log from `from_position` to `to_position` (inclusive; `None` for
/// its end as of the call).
///
/// Three stages overlap: a task reads the next batch while this one is examined (parse,
/// hash, decode: in parallel on every core) and the one before is folded in order.
pub async fn verify_log(
    log: &JetStreamLog,
    from_position: u64,
    to_position: Option<u64>,
    key: Option<PublicSealKey>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<VerifyReport, LogError> {
    use chronicle_events::EventLog;
    use futures::StreamExt;
    use rayon::prelude::*;
    const BATCH: usize = 1000;
    let end = match to_position {
        Some(p) => p,
        None => log.last_position().await?,
    };
    let prefix = log.config().subject_prefix.clone();
    let keyring = log.config().keyring.clone();
    let mut verifier = Verifier::new(&prefix, from_position, key, Some(keyring.clone()));
    let end = end.min(log.last_position().await?);
    let (batches, mut incoming) = tokio::sync::mpsc::channel::<Result<Vec<RawEvent>, LogError>>(4);
    let reader = {
        let log = log.clone();
        let from = from_position.max(1);
        tokio::spawn(async move {
            if from > end {
                return;
            }
            let mut feed = match log.follow_raw(from, &[]).await {
                Ok(feed) => feed.ready_chunks(BATCH),
                Err(e) => {
                    let _ = batches.send(Err(e)).await;
                    return;
                }
            };
            // Messages arrive a few at a time; examining pays off in batches of BATCH.
            // The stream's subjects are all under the filter and `end` is stored, so
            // the feed reaches it.
            let mut raws = Vec::with_capacity(BATCH);
            while let Some(chunk) = feed.next().await {
                let mut done = false;
                for r in chunk {
                    match r {
                        Ok(r) if r.position <= end => {
                            done = r.position >= end;
                            raws.push(r);
                        }
                        Ok(_) => done = true,
                        Err(e) => {
                            let _ = batches.send(Err(e)).await;
                            return;
                        }
                    }
                }
                if (done || raws.len() >= BATCH)
                    && !raws.is_empty()
                    && batches
                        .send(Ok(std::mem::replace(&mut raws, Vec::with_capacity(BATCH))))
                        .await
                        .is_err()
                {
                    return;
                }
                if done {
                    return;
                }
            }
        })
    };
    let examine_all = |raws: Vec<RawEvent>, prefix: String| {
        let keyring = keyring.clone();
        tokio::task::spawn_blocking(move || {
            let examined: Vec<Examined> = raws
                .par_iter()
                .map(|r| examine(&prefix, Some(&keyring), r))
                .collect();
            (raws, examined)
        })
    };
    let mut examining = None;
    loop {
        // Start examining the next batch before folding the one examined.
        let next = match incoming.recv().await {
            Some(Ok(raws)) => Some(examine_all(raws, prefix.clone())),
            Some(Err(e)) => {
                reader.abort();
                return Err(e);
            }
            None => None,
        };
        if let Some(task) = std::mem::replace(&mut examining, next) {
            let (raws, examined) = task.await.expect("examining a batch does not panic");
            for (raw, e) in raws.iter().zip(examined) {
                verifier.fold(raw, e);
            }
            if let Some(last) = raws.last() {
                progress(last.position.min(end), end);
            }
        }
        if examining.is_none() {
            break;
        }
    }
    Ok(verifier.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(position: u64, payload: &'static [u8]) -> RawEvent {
        RawEvent {
            position,
            subject: "chronicle.ev.job.1".into(),
            version_header: None,
            msg_id: None,
            auth: None,
            prev: None,
            payload: payload.into(),
        }
    }

    #[test]
    fn missing_positions_are_gaps() {
        let mut v = Verifier::new("chronicle.ev", 1, None, None);
        for p in [1, 2, 5, 6, 9] {
            v.check(&raw(p, b"{}"));
        }
        let report = v.finish();
        assert!(!report.ok);
        assert_eq!(
            report.gaps,
            vec![
                Gap {
                    from_position: 3,
                    to_position: 4
                },
                Gap {
                    from_position: 7,
                    to_position: 8
                }
            ]
        );
        assert_eq!(report.checked, 5);
        assert!(
            report
                .broken_chains
                .iter()
                .all(|b| b.kind == BreakKind::Undecodable)
        );
    }

    #[test]
    fn a_range_that_starts_later_has_no_gap_before_it() {
        let mut v = Verifier::new("chronicle.ev", 7, None, None);
        v.check(&raw(7, b"{}"));
        assert!(v.finish().gaps.is_empty());
    }
}
