//! Backups of the log: an online, consistent copy of every stored message with its
//! headers and position, in a folder that incremental runs add to; and the restore that
//! brings the stream back, every message at its original position, into a NATS that has
//! no Chronicle stream (or an empty one).
//!
//! The folder:
//!
//! - `segments/<from>-<to>.seg`: one file per run, the messages `from..=to` (every stored
//!   message, events or not, so positions need no translation), each a record of
//!   position, subject, headers and payload (see [`Record::encode`]);
//! - `manifest.json`: the stream's name, subjects and settings as nats-server reported
//!   them, the range, the message count, the last seal, the SHA-256 of every segment and
//!   of the last message (an incremental run checks the live log still holds it), and
//!   one line per run;
//! - `manifest.sha256`: the SHA-256 of `manifest.json`.
//!
//! A restore checks every digest and reads every record before it writes anything.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::stream;
use bytes::Bytes;
use chronicle_events::{JetStreamLog, LogError};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FORMAT: &str = "chronicle-backup/1";
const SEGMENT_MAGIC: &[u8] = b"CHRONICLE-BACKUP-SEGMENT/1\n";
const MANIFEST: &str = "manifest.json";
const MANIFEST_DIGEST: &str = "manifest.sha256";
/// Publishes in flight while restoring (each ack must name the position it was sent
/// for).
const RESTORE_IN_FLIGHT: usize = 256;
/// The de-duplication window while restoring (the stream's own comes back at the end):
/// short, so a message id repeated far apart in the original log is only waited out.
const RESTORE_DUPLICATE_WINDOW: Duration = Duration::from_secs(1);
/// Where a gap in the original log is held open while restoring: a message published
/// there and deleted, so the messages after it keep their positions.
const GAP_SUBJECT: &str = "restore-gap";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The backup (or export) is not what its digests say: nothing was written.
    #[error("the backup is not intact: {0}")]
    Corrupt(String),
    /// The request cannot be carried out as asked: nothing was written.
    #[error("{0}")]
    Refused(String),
    #[error("nats: {0}")]
    Nats(String),
}

fn nats(e: impl std::fmt::Display) -> BackupError {
    BackupError::Nats(e.to_string())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Segment {
    pub file: String,
    pub from: u64,
    pub to: u64,
    pub messages: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub at: DateTime<Utc>,
    pub from: u64,
    pub to: u64,
    pub messages: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub stream_name: String,
    pub subject_prefix: String,
    /// The stream's settings as nats-server reported them when the backup began.
    pub stream_config: serde_json::Value,
    /// The first position the log held (1 unless its start was purged).
    pub first_position: u64,
    /// The cut: everything up to here, nothing after.
    pub last_position: u64,
    pub messages: u64,
    /// The last seal at or before the cut.
    pub last_seal_position: Option<u64>,
    /// SHA-256 of the record of the message at `last_position` (an incremental run checks
    /// that the log it adds from still holds it).
    pub last_record_sha256: Option<String>,
    pub segments: Vec<Segment>,
    pub runs: Vec<Run>,
}

/// One stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub position: u64,
    pub subject: String,
    /// In the order nats-server gave them, repeated names kept.
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

impl Record {
    fn of_parts(
        position: u64,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &Bytes,
    ) -> Record {
        let mut headers: Vec<(String, String)> = headers
            .into_iter()
            .flat_map(|h| h.iter())
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |v| (name.to_string(), v.as_str().to_owned()))
            })
            .collect();
        // A header map has no order: sorted, the same message always encodes the same.
        headers.sort();
        Record {
            position,
            subject: subject.to_owned(),
            headers,
            payload: payload.clone(),
        }
    }

    /// `u64 position, u32 subject length, subject, u32 header count, per header (u32
    /// name length, name, u32 value length, value), u32 payload length, payload`, little
    /// endian.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let text = |out: &mut Vec<u8>, s: &[u8]| {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s);
        };
        out.extend_from_slice(&self.position.to_le_bytes());
        text(out, self.subject.as_bytes());
        out.extend_from_slice(&(self.headers.len() as u32).to_le_bytes());
        for (name, value) in &self.headers {
            text(out, name.as_bytes());
            text(out, value.as_bytes());
        }
        text(out, &self.payload);
    }

    fn sha256(&self) -> String {
        let mut bytes = Vec::new();
        self.encode(&mut bytes);
        hex::encode(Sha256::digest(&bytes))
    }
}

/// What a backup run did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub dir: PathBuf,
    /// Whether this run added to an earlier backup in the folder.
    pub incremental: bool,
    pub from: u64,
    pub to: u64,
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub manifest: Manifest,
}

fn read_manifest(dir: &Path) -> Result<Option<Manifest>, BackupError> {
    let path = dir.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let digest = std::fs::read_to_string(dir.join(MANIFEST_DIGEST))
        .map_err(|_| BackupError::Corrupt(format!("{MANIFEST_DIGEST} is missing")))?;
    if digest.split_whitespace().next() != Some(hex::encode(Sha256::digest(&bytes)).as_str()) {
        return Err(BackupError::Corrupt(format!(
            "{MANIFEST} does not match {MANIFEST_DIGEST}"
        )));
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| BackupError::Corrupt(format!("{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Corrupt(format!(
            "{MANIFEST} is of format {}, not {FORMAT}",
            manifest.format
        )));
    }
    Ok(Some(manifest))
}

/// Writes `bytes` to `path` through a temporary file, synced, then renamed.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("partial");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let mut bytes = serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write_atomically(&dir.join(MANIFEST), &bytes)?;
    let digest = format!("{}  {MANIFEST}\n", hex::encode(Sha256::digest(&bytes)));
    write_atomically(&dir.join(MANIFEST_DIGEST), digest.as_bytes())?;
    Ok(())
}

/// Backs up the log into `dir`: the whole log the first time, what is new since the last
/// run after that. `progress(at, end)` as it goes.
pub async fn backup(
    log: &JetStreamLog,
    dir: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    std::fs::create_dir_all(dir.join("segments"))?;
    let cfg = log.config();
    let mut stream = log
        .jetstream()
        .get_stream(&cfg.stream_name)
        .await
        .map_err(nats)?;
    let info = stream.info().await.map_err(nats)?.clone();
    // The cut: what the log held when the backup began.
    let cut = info.state.last_sequence;
    let earlier = read_manifest(dir)?;
    let (mut manifest, from) = match earlier {
        Some(m) => {
            if m.stream_name != cfg.stream_name || m.subject_prefix != cfg.subject_prefix {
                return Err(BackupError::Refused(format!(
                    "{} holds a backup of stream {} ({}.>), not of {} ({}.>)",
                    dir.display(),
                    m.stream_name,
                    m.subject_prefix,
                    cfg.stream_name,
                    cfg.subject_prefix
                )));
            }
            // The log must still be the one backed up: its message at the earlier cut is
            // the one recorded.
            if let Some(expected) = &m.last_record_sha256 {
                let raw = stream.get_raw_message(m.last_position).await.map_err(|e| {
                    BackupError::Refused(format!(
                        "the log no longer holds position {} that {} ends at: {e}",
                        m.last_position,
                        dir.display()
                    ))
                })?;
                let held = Record::of_parts(
                    m.last_position,
                    &raw.subject,
                    Some(&raw.headers),
                    &raw.payload,
                );
                if &held.sha256() != expected {
                    return Err(BackupError::Refused(format!(
                        "position {} of the log differs from the one backed up in {}: this is another log, or it was rewritten",
                        m.last_position,
                        dir.display()
                    )));
                }
            }
            let from = m.last_position + 1;
            (m, from)
        }
        None => {
            let first = info.state.first_sequence.max(1);
            (
                Manifest {
                    format: FORMAT.into(),
                    stream_name: cfg.stream_name.clone(),
                    subject_prefix: cfg.subject_prefix.clone(),
                    stream_config: serde_json::to_value(&info.config)
                        .map_err(std::io::Error::other)?,
                    first_position: first,
                    last_position: first - 1,
                    messages: 0,
                    last_seal_position: None,
                    last_record_sha256: None,
                    segments: Vec::new(),
                    runs: Vec::new(),
                },
                first,
            )
        }
    };
    let incremental = !manifest.runs.is_empty();
    let seal_subject = crate::sealer::seal_stream().subject(&cfg.subject_prefix);
    let mut messages = 0u64;
    let mut bytes_written = 0u64;
    if from <= cut {
        let name = format!("{from:012}-{cut:012}.seg");
        let path = dir.join("segments").join(&name);
        let tmp = path.with_extension("partial");
        let file = std::fs::File::create(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut hasher = Sha256::new();
        out.write_all(SEGMENT_MAGIC)?;
        hasher.update(SEGMENT_MAGIC);
        bytes_written += SEGMENT_MAGIC.len() as u64;
        let mut buf = Vec::with_capacity(4096);
        let mut last: Option<Record> = None;
        // Every stored message, whatever its subject.
        let mut stored = log.read_messages(from, cut, vec![]).await?;
        while let Some(m) = stored.next().await {
            let (m, position) = m?;
            let r = Record::of_parts(position, &m.subject, m.headers.as_ref(), &m.payload);
            buf.clear();
            r.encode(&mut buf);
            hasher.update(&buf);
            out.write_all(&buf)?;
            bytes_written += buf.len() as u64;
            messages += 1;
            if r.subject == seal_subject {
                manifest.last_seal_position = Some(r.position);
            }
            if messages.is_multiple_of(4096) {
                progress(r.position, cut);
            }
            last = Some(r);
        }
        let Some(last) = last else {
            return Err(BackupError::Refused(format!(
                "the log reports messages up to {cut} but none could be read after {}",
                from - 1
            )));
        };
        progress(last.position, cut);
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        manifest.segments.push(Segment {
            file: format!("segments/{name}"),
            from,
            to: cut,
            messages,
            bytes: bytes_written,
            sha256: hex::encode(hasher.finalize()),
        });
        manifest.last_position = cut;
        manifest.messages += messages;
        manifest.last_record_sha256 = Some(last.sha256());
    }
    let seconds = started.elapsed().as_secs_f64();
    manifest.runs.push(Run {
        at: Utc::now(),
        from,
        to: manifest.last_position,
        messages,
        seconds,
    });
    write_manifest(dir, &manifest)?;
    Ok(BackupReport {
        dir: dir.to_owned(),
        incremental,
        from,
        to: manifest.last_position,
        messages,
        bytes: bytes_written,
        seconds,
        manifest,
    })
}

/// What a restore is made from, checked whole before anything is written.
pub struct Source {
    pub stream_name: String,
    pub subject_prefix: String,
    /// The settings to create the stream with (the backup's; an export's come from the
    /// restoring configuration).
    pub stream_config: Option<stream::Config>,
    pub first_position: u64,
    pub last_position: u64,
    pub messages: u64,
    records: Records,
}

enum Records {
    /// A backup's segments, read again (and their digests checked again) while loading:
    /// a log of any size restores in bounded memory.
    Segments {
        dir: PathBuf,
        segments: Vec<Segment>,
    },
    /// An export, held whole.
    Held(Vec<Record>),
}

/// A segment read record by record, its SHA-256 computed as it goes.
struct SegmentReader {
    name: String,
    reader: BufReader<std::fs::File>,
    hasher: Sha256,
    expected: String,
    done: bool,
}

impl SegmentReader {
    fn open(dir: &Path, seg: &Segment) -> Result<SegmentReader, BackupError> {
        let file = std::fs::File::open(dir.join(&seg.file))
            .map_err(|e| BackupError::Corrupt(format!("{}: {e}", seg.file)))?;
        let mut r = SegmentReader {
            name: seg.file.clone(),
            reader: BufReader::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            expected: seg.sha256.clone(),
            done: false,
        };
        let mut magic = vec![0; SEGMENT_MAGIC.len()];
        r.exact(&mut magic)?;
        if magic != SEGMENT_MAGIC {
            return Err(r.corrupt("not a segment"));
        }
        Ok(r)
    }

    fn corrupt(&self, why: &str) -> BackupError {
        BackupError::Corrupt(format!("{}: {why}", self.name))
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        self.reader
            .read_exact(buf)
            .map_err(|_| self.corrupt("a record runs past the end of its segment"))?;
        self.hasher.update(&*buf);
        Ok(())
    }

    fn u32(&mut self) -> Result<usize, BackupError> {
        let mut b = [0; 4];
        self.exact(&mut b)?;
        Ok(u32::from_le_bytes(b) as usize)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, BackupError> {
        let n = self.u32()?;
        // A length no message has is damage, not a reason to allocate gigabytes.
        if n > 64 << 20 {
            return Err(self.corrupt("a length no message has"));
        }
        let mut v = vec![0; n];
        self.exact(&mut v)?;
        Ok(v)
    }

    fn text(&mut self) -> Result<String, BackupError> {
        let v = self.bytes()?;
        String::from_utf8(v).map_err(|_| self.corrupt("a subject or header is not UTF-8"))
    }

    /// The next record; at the end, the segment's digest must match the manifest's.
    fn next_record(&mut self) -> Result<Option<Record>, BackupError> {
        if self.done {
            return Ok(None);
        }
        let mut position = [0; 8];
        match self.reader.read(&mut position[..1])? {
            0 => {
                self.done = true;
                let got = hex::encode(std::mem::take(&mut self.hasher).finalize());
                if got != self.expected {
                    return Err(self.corrupt("does not match its SHA-256 in the manifest"));
                }
                return Ok(None);
            }
            _ => {
                self.hasher.update(&position[..1]);
                self.exact(&mut position[1..])?;
            }
        }
        let position = u64::from_le_bytes(position);
        let subject = self.text()?;
        let count = self.u32()?;
        if count > 4096 {
            return Err(self.corrupt("more headers than a message has"));
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            headers.push((self.text()?, self.text()?));
        }
        let payload = Bytes::from(self.bytes()?);
        Ok(Some(Record {
            position,
            subject,
            headers,
            payload,
        }))
    }
}

impl Source {
    /// Every record in order, each checked to be in its segment's range, after the one
    /// before; a segment whose digest no longer matches ends it with an error.
    pub fn records(&self) -> Box<dyn Iterator<Item = Result<Record, BackupError>> + Send + '_> {
        match &self.records {
            Records::Held(records) => Box::new(records.iter().cloned().map(Ok)),
            Records::Segments { dir, segments } => Box::new(segments.iter().flat_map(move |seg| {
                let mut reader = Some(SegmentReader::open(dir, seg));
                let mut previous = seg.from - 1;
                let mut count = 0u64;
                std::iter::from_fn(move || {
                    let r = match reader.as_mut()? {
                        Ok(r) => r,
                        Err(_) => {
                            return reader.take().and_then(|r| r.err()).map(Err);
                        }
                    };
                    let fail = |e| Some(Err(e));
                    match r.next_record() {
                        Ok(Some(rec)) => {
                            if rec.position <= previous || rec.position > seg.to {
                                let e = r.corrupt(&format!(
                                    "position {} out of order or out of range",
                                    rec.position
                                ));
                                reader = None;
                                return fail(e);
                            }
                            previous = rec.position;
                            count += 1;
                            Some(Ok(rec))
                        }
                        Ok(None) => {
                            let e = (count != seg.messages).then(|| {
                                r.corrupt(&format!(
                                    "holds {count} messages, the manifest says {}",
                                    seg.messages
                                ))
                            });
                            reader = None;
                            e.map(Err)
                        }
                        Err(e) => {
                            reader = None;
                            fail(e)
                        }
                    }
                })
            })),
        }
    }
}

/// Reads and checks a backup folder: the manifest's digest, every segment's, every record
/// in range and in order, the counts. Holds no record: [`Source::records`] reads them
/// again.
pub fn read_backup(dir: &Path) -> Result<Source, BackupError> {
    let manifest = read_manifest(dir)?
        .ok_or_else(|| BackupError::Refused(format!("{} holds no {MANIFEST}", dir.display())))?;
    let mut expected_from = manifest.first_position;
    let mut messages = 0;
    for seg in &manifest.segments {
        if seg.from != expected_from || seg.to < seg.from {
            return Err(BackupError::Corrupt(format!(
                "segment {} covers {}..={} where {expected_from} was next",
                seg.file, seg.from, seg.to
            )));
        }
        expected_from = seg.to + 1;
        messages += seg.messages;
    }
    if expected_from != manifest.last_position + 1 || messages != manifest.messages {
        return Err(BackupError::Corrupt(
            "the segments do not add up to the manifest's range and count".into(),
        ));
    }
    let stream_config: stream::Config = serde_json::from_value(manifest.stream_config.clone())
        .map_err(|e| BackupError::Corrupt(format!("the stream settings: {e}")))?;
    let source = Source {
        stream_name: manifest.stream_name,
        subject_prefix: manifest.subject_prefix,
        stream_config: Some(stream_config),
        first_position: manifest.first_position,
        last_position: manifest.last_position,
        messages,
        records: Records::Segments {
            dir: dir.to_owned(),
            segments: manifest.segments,
        },
    };
    // The whole check, before anything is written.
    for r in source.records() {
        r?;
    }
    Ok(source)
}

/// Reads and checks an export (`replay export`, format 2) that starts at position 1: its
/// digest, its range, its lines; the headers Chronicle wrote are rebuilt from them.
pub fn read_export(file: &Path) -> Result<Source, BackupError> {
    let export = crate::export::read_records(file).map_err(|e| match e {
        crate::export::ExportError::Io(e) => BackupError::Io(e),
        other => BackupError::Corrupt(other.to_string()),
    })?;
    if export.manifest.from_position != 1 {
        return Err(BackupError::Refused(format!(
            "the export starts at position {}: only an export from position 1 restores a log",
            export.manifest.from_position
        )));
    }
    Ok(Source {
        stream_name: export.manifest.stream_name,
        subject_prefix: export.manifest.subject_prefix,
        stream_config: None,
        first_position: 1,
        last_position: export.manifest.to_position,
        messages: export.records.len() as u64,
        records: Records::Held(export.records),
    })
}

/// Whether a header is a directive to nats-server rather than part of the message: those
/// are not sent again (a stored batch or expectation header would be acted on anew).
pub fn is_directive(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("nats-") && lower != "nats-msg-id"
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub stream_name: String,
    pub first_position: u64,
    pub last_position: u64,
    pub messages: u64,
    /// Positions the original log did not hold, kept empty.
    pub gaps: u64,
    pub seconds: f64,
}

/// Restores `source` into the NATS `client` is connected to, under `stream_config` (the
/// backup's settings, or the restoring configuration's for an export), with `replicas`
/// replicas if given. Refuses when a stream of that name holds anything.
pub async fn restore(
    client: async_nats::Client,
    source: &Source,
    mut stream_config: stream::Config,
    replicas: Option<usize>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<RestoreReport, BackupError> {
    let started = Instant::now();
    let js = async_nats::jetstream::new(client);
    let name = stream_config.name.clone();
    if let Ok(mut existing) = js.get_stream(&name).await {
        let info = existing.info().await.map_err(nats)?;
        if info.state.messages > 0 || info.state.last_sequence > 0 {
            return Err(BackupError::Refused(format!(
                "NATS already holds stream {name} with {} messages (positions up to {}): a restore goes only into a NATS with no Chronicle stream, or an empty one",
                info.state.messages, info.state.last_sequence
            )));
        }
        // Empty: created by a process started too early. Made again with the backup's
        // settings (some cannot be changed by an update).
        js.delete_stream(&name).await.map_err(nats)?;
    }
    if let Some(r) = replicas {
        stream_config.num_replicas = r;
    }
    let wanted = stream_config.clone();
    // While restoring: deletable (to hold gaps open), a short de-duplication window, and
    // positions starting where the original's did.
    let mut loading = stream_config;
    loading.deny_delete = false;
    loading.deny_purge = false;
    loading.duplicate_window = RESTORE_DUPLICATE_WINDOW;
    loading.first_sequence = (source.first_position > 1).then_some(source.first_position);
    js.create_stream(loading).await.map_err(nats)?;
    match load(&js, source, &wanted, progress).await {
        Ok(gaps) => Ok(RestoreReport {
            stream_name: name,
            first_position: source.first_position,
            last_position: source.last_position,
            messages: source.messages,
            gaps,
            seconds: started.elapsed().as_secs_f64(),
        }),
        Err(e) => {
            // Half a log is worse than none: the stream this restore created goes.
            let _ = js.delete_stream(&name).await;
            Err(e)
        }
    }
}

/// Publishes every record at its position into the stream just created, holds the gaps
/// open, then gives the stream its own settings back. The number of gaps.
///
/// Nothing is added to a message (an expected-sequence header would be stored with it):
/// each ack must name the record's position, and a message id sent again within the
/// de-duplication window waits the window out first, so nats-server never drops one and
/// shifts the rest.
async fn load(
    js: &async_nats::jetstream::Context,
    source: &Source,
    wanted: &stream::Config,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<u64, BackupError> {
    use std::collections::{HashMap, VecDeque};
    let name = &wanted.name;
    let gap_subject = format!("{}.{GAP_SUBJECT}", source.subject_prefix);
    let msg_id = |r: &Record| {
        r.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("nats-msg-id"))
            .map(|(_, v)| v.clone())
    };
    // Message ids sent within the last de-duplication window (and a margin): one sent
    // again there would be dropped by nats-server, so it waits the window out first.
    let hold = RESTORE_DUPLICATE_WINDOW + Duration::from_millis(250);
    let mut recent: HashMap<String, Instant> = HashMap::new();
    let mut recent_order: VecDeque<(Instant, String)> = VecDeque::new();
    let end = source.last_position;
    let mut next = source.first_position;
    let mut gaps = Vec::new();
    let mut acks: VecDeque<(u64, async_nats::jetstream::context::PublishAckFuture)> =
        VecDeque::new();
    async fn settle(
        acks: &mut VecDeque<(u64, async_nats::jetstream::context::PublishAckFuture)>,
        keep: usize,
    ) -> Result<(), BackupError> {
        while acks.len() > keep {
            let (position, ack) = acks.pop_front().expect("not empty");
            let a = ack
                .await
                .map_err(|e| BackupError::Nats(format!("position {position}: {e}")))?;
            if a.sequence != position || a.duplicate {
                return Err(BackupError::Nats(format!(
                    "position {position} landed at {} (duplicate: {}): something else writes to this stream",
                    a.sequence, a.duplicate
                )));
            }
        }
        Ok(())
    }
    let send = async |subject: String,
                      headers: HeaderMap,
                      payload: Bytes,
                      position: u64,
                      acks: &mut VecDeque<_>|
           -> Result<(), BackupError> {
        let ack = js
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(nats)?;
        acks.push_back((position, ack));
        settle(acks, RESTORE_IN_FLIGHT).await
    };
    let mut records = source.records();
    loop {
        // Positions the original log held no message at, before the next record or, after
        // the last, up to its end.
        let r = records.next().transpose()?;
        let upto = r.as_ref().map_or(end + 1, |r| r.position);
        while next < upto {
            gaps.push(next);
            send(
                gap_subject.clone(),
                HeaderMap::new(),
                Bytes::new(),
                next,
                &mut acks,
            )
            .await?;
            next += 1;
        }
        let Some(r) = r else { break };
        while let Some((at, _)) = recent_order.front() {
            if at.elapsed() <= hold {
                break;
            }
            let (at, id) = recent_order.pop_front().expect("not empty");
            if recent.get(&id) == Some(&at) {
                recent.remove(&id);
            }
        }
        if let Some(id) = msg_id(&r) {
            if let Some(at) = recent.get(&id) {
                let wait = hold.saturating_sub(at.elapsed());
                settle(&mut acks, 0).await?;
                tokio::time::sleep(wait).await;
            }
            let now = Instant::now();
            recent.insert(id.clone(), now);
            recent_order.push_back((now, id));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &r.headers {
            if !is_directive(k) {
                headers.append(k.as_str(), v.as_str());
            }
        }
        send(
            r.subject.clone(),
            headers,
            r.payload.clone(),
            r.position,
            &mut acks,
        )
        .await?;
        next = r.position + 1;
        if r.position.is_multiple_of(4096) {
            progress(r.position, end);
        }
    }
    settle(&mut acks, 0).await?;
    let stream = js.get_stream(name).await.map_err(nats)?;
    for seq in &gaps {
        stream.delete_message(*seq).await.map_err(nats)?;
    }
    js.update_stream(wanted).await.map_err(nats)?;
    progress(end, end);
    Ok(gaps.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(dir: &Path, bytes: &[u8]) -> Segment {
        std::fs::write(dir.join("s.seg"), bytes).unwrap();
        Segment {
            file: "s.seg".into(),
            from: 1,
            to: 9,
            messages: 2,
            bytes: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }

    fn read_all(dir: &Path, seg: &Segment) -> Result<Vec<Record>, BackupError> {
        let mut r = SegmentReader::open(dir, seg)?;
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok(out)
    }

    #[test]
    fn records_read_back_whole_and_a_short_or_changed_segment_is_refused() {
        let records = vec![
            Record {
                position: 7,
                subject: "chronicle.ev.job.1".into(),
                headers: vec![
                    ("Chronicle-Version".into(), "1".into()),
                    ("Nats-Msg-Id".into(), "c:0".into()),
                ],
                payload: Bytes::from_static(b"{\"a\":1}"),
            },
            Record {
                position: 9,
                subject: "chronicle.ev.x".into(),
                headers: vec![],
                payload: Bytes::new(),
            },
        ];
        let mut bytes = SEGMENT_MAGIC.to_vec();
        let mut boundaries = vec![bytes.len()];
        for r in &records {
            r.encode(&mut bytes);
            boundaries.push(bytes.len());
        }
        let dir = tempfile::tempdir().unwrap();
        let seg = segment(dir.path(), &bytes);
        assert_eq!(read_all(dir.path(), &seg).unwrap(), records);
        for cut in 0..bytes.len() {
            let seg = segment(dir.path(), &bytes[..cut]);
            // Cut between records, the segment is whole as far as its digest goes: the
            // manifest's count catches that (`Source::records`).
            assert!(
                read_all(dir.path(), &seg).is_err() || boundaries.contains(&cut),
                "a segment cut at {cut} is refused"
            );
        }
        for at in SEGMENT_MAGIC.len()..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 1;
            std::fs::write(dir.path().join("s.seg"), &changed).unwrap();
            let seg = Segment {
                sha256: hex::encode(Sha256::digest(&bytes)),
                ..seg.clone()
            };
            assert!(
                read_all(dir.path(), &seg).is_err(),
                "a byte changed at {at} is refused"
            );
        }
    }

    #[test]
    fn only_server_directives_are_left_out_of_a_restore() {
        assert!(is_directive("Nats-Batch-Id"));
        assert!(is_directive("Nats-Expected-Last-Subject-Sequence"));
        assert!(is_directive("Nats-TTL"));
        assert!(!is_directive("Nats-Msg-Id"));
        assert!(!is_directive("Chronicle-Auth"));
    }
}
