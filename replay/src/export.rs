//! Exports: a range of the log with the seals that cover it, in one NDJSON file that an
//! auditor verifies with the public seal key alone, on a machine with no access to NATS
//! or Postgres.
//!
//! The file: a manifest line, one line per stored message (`position`, `subject`,
//! `version`, and the stored envelope as `payload`, or `payload_hex` for a message that
//! is not JSON), and a last line with the SHA-256 of every byte before it. Seals make the
//! content tamper-evident; the digest makes any changed byte evident.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use bytes::Bytes;
use chronicle_events::jetstream::RawEvent;
use chronicle_events::{EventLog, JetStreamLog, LogError};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use chronicle_events::Keyring;

use crate::seal::PublicSealKey;
use crate::sealer::seal_tip;
use crate::verify::{Verifier, VerifyReport};

pub const FORMAT: &str = "chronicle-export/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub stream_name: String,
    pub subject_prefix: String,
    pub from_position: u64,
    pub to_position: u64,
    pub messages: u64,
    /// The public seal key of the exporting system (an auditor should compare it with
    /// the key they obtained independently, or pass their own).
    pub seal_public_key: Option<String>,
    pub created_at: chrono::DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("the export file is not valid: {0}")]
    Invalid(String),
}

/// Writes positions `from..=to` (by default: from 1 to the last seal) to `out`. Answers
/// the manifest.
pub async fn export(
    log: &JetStreamLog,
    from: Option<u64>,
    to: Option<u64>,
    seal_public_key: Option<String>,
    out: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Manifest, ExportError> {
    let from = from.unwrap_or(1).max(1);
    let to = match to {
        Some(t) => t,
        None => {
            let tip = seal_tip(log).await?;
            if tip.head.position == 0 {
                log.last_position().await?
            } else {
                tip.head.position
            }
        }
    };
    let tmp = out.with_extension("partial");
    let file = std::fs::File::create(&tmp)?;
    let mut w = DigestWriter::new(BufWriter::new(file));
    let mut manifest = Manifest {
        format: FORMAT.into(),
        stream_name: log.config().stream_name.clone(),
        subject_prefix: log.config().subject_prefix.clone(),
        from_position: from,
        to_position: to,
        messages: 0,
        seal_public_key,
        created_at: Utc::now(),
    };
    // The count is known only at the end: the manifest goes first with the range, and
    // the count is checked against the lines on verify.
    let mut lines = Vec::new();
    let filter = log.subject_filter(None);
    let mut seq = from;
    while seq <= to {
        let (raws, more) = log.read_raw_batch(seq, &filter, 1000).await?;
        for r in raws.iter().filter(|r| r.position <= to) {
            lines.push(record_line(r));
        }
        if let Some(last) = raws.last() {
            progress(last.position.min(to), to);
        }
        match raws.last() {
            Some(last) if more && last.position < to => seq = last.position + 1,
            _ => break,
        }
    }
    manifest.messages = lines.len() as u64;
    w.line(&json!({ "manifest": manifest }))?;
    for l in lines {
        w.raw_line(l)?;
    }
    let digest = hex::encode(w.hasher.clone().finalize());
    let mut inner = w.inner;
    writeln!(inner, "{}", json!({ "digest": digest }))?;
    inner.flush()?;
    drop(inner);
    std::fs::rename(&tmp, out)?;
    Ok(manifest)
}

/// One message as an export line. A JSON payload goes in as its stored bytes (a restore
/// from the export must give every message back byte for byte: its authentication covers
/// them); anything else as hex.
fn record_line(r: &RawEvent) -> Vec<u8> {
    let head = json!({
        "position": r.position,
        "subject": r.subject,
        "version": r.version_header,
        "auth": r.auth,
        "prev": r.prev,
        "msg_id": r.msg_id,
    });
    let mut line = serde_json::to_vec(&head).unwrap_or_default();
    line.pop();
    let p = &r.payload;
    let verbatim = p.first() == Some(&b'{')
        && p.last() == Some(&b'}')
        && !p.contains(&b'\n')
        && serde_json::from_slice::<serde::de::IgnoredAny>(p).is_ok();
    if verbatim {
        line.extend_from_slice(b",\"payload\":");
        line.extend_from_slice(p);
    } else {
        line.extend_from_slice(b",\"payload_hex\":\"");
        line.extend_from_slice(hex::encode(p).as_bytes());
        line.push(b'"');
    }
    line.push(b'}');
    line
}

struct DigestWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> DigestWriter<W> {
    fn new(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn line(&mut self, v: &Value) -> std::io::Result<()> {
        self.raw_line(serde_json::to_vec(v).map_err(std::io::Error::other)?)
    }

    fn raw_line(&mut self, mut bytes: Vec<u8>) -> std::io::Result<()> {
        bytes.push(b'\n');
        self.hasher.update(&bytes);
        self.inner.write_all(&bytes)
    }
}

/// An export read whole for a restore: its digest checked, its lines as stored messages
/// with the headers Chronicle wrote.
pub struct ExportFile {
    pub manifest: Manifest,
    pub records: Vec<crate::backup::Record>,
}

#[derive(Deserialize)]
struct Line<'a> {
    manifest: Option<Manifest>,
    digest: Option<String>,
    position: Option<u64>,
    subject: Option<String>,
    version: Option<u64>,
    auth: Option<String>,
    prev: Option<String>,
    msg_id: Option<String>,
    #[serde(borrow)]
    payload: Option<&'a serde_json::value::RawValue>,
    payload_hex: Option<String>,
}

/// Reads an export for a restore: refused if its digest does not match its content, its
/// lines are out of order, or they do not add up to its manifest.
pub fn read_records(path: &Path) -> Result<ExportFile, ExportError> {
    use crate::backup::Record;
    let bytes = std::fs::read(path)?;
    let mut hasher = Sha256::new();
    let mut manifest: Option<Manifest> = None;
    let mut digest = None;
    let mut records = Vec::new();
    let mut previous = 0u64;
    for (n, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        if digest.is_some() {
            return Err(ExportError::Invalid("content after the digest line".into()));
        }
        let line: Line = serde_json::from_slice(raw)
            .map_err(|e| ExportError::Invalid(format!("line {}: {e}", n + 1)))?;
        if let Some(d) = line.digest {
            digest = Some(d);
            continue;
        }
        hasher.update(raw);
        hasher.update(b"\n");
        if let Some(m) = line.manifest {
            if n != 0 || m.format != FORMAT {
                return Err(ExportError::Invalid(format!(
                    "line {}: a manifest of format {} (the first line, {FORMAT}, expected)",
                    n + 1,
                    m.format
                )));
            }
            manifest = Some(m);
            continue;
        }
        let bad = |what: &str| ExportError::Invalid(format!("line {}: {what}", n + 1));
        let position = line.position.ok_or_else(|| bad("no position"))?;
        if position <= previous {
            return Err(bad("position out of order"));
        }
        previous = position;
        let payload = match (line.payload, line.payload_hex) {
            (Some(p), _) => Bytes::copy_from_slice(p.get().as_bytes()),
            (None, Some(h)) => Bytes::from(hex::decode(h).map_err(|_| bad("bad hex"))?),
            _ => return Err(bad("no payload")),
        };
        let mut headers = Vec::new();
        if let Some(v) = line.version {
            headers.push((
                chronicle_events::jetstream::VERSION_HEADER.to_owned(),
                v.to_string(),
            ));
        }
        if let Some(a) = line.auth {
            headers.push((chronicle_events::auth::AUTH_HEADER.to_owned(), a));
        }
        if let Some(p) = line.prev {
            headers.push((chronicle_events::auth::PREV_HEADER.to_owned(), p));
        }
        if let Some(id) = line.msg_id {
            headers.push(("Nats-Msg-Id".to_owned(), id));
        }
        headers.sort();
        records.push(Record {
            position,
            subject: line.subject.ok_or_else(|| bad("no subject"))?,
            headers,
            payload,
        });
    }
    let manifest = manifest.ok_or_else(|| ExportError::Invalid("no manifest".into()))?;
    if digest.as_deref() != Some(hex::encode(hasher.finalize()).as_str()) {
        return Err(ExportError::Invalid(
            "the file's digest does not match its content: it was changed".into(),
        ));
    }
    if records.len() as u64 != manifest.messages
        || records.last().map_or(0, |r| r.position) != manifest.to_position
    {
        return Err(ExportError::Invalid(format!(
            "the file holds {} messages up to {}; its manifest says {} up to {}",
            records.len(),
            records.last().map_or(0, |r| r.position),
            manifest.messages,
            manifest.to_position
        )));
    }
    Ok(ExportFile { manifest, records })
}

/// What offline verification found.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub manifest: Manifest,
    pub digest_ok: bool,
    pub problems: Vec<String>,
    pub report: VerifyReport,
    pub ok: bool,
}

/// The positions the seals in an export recorded as unauthenticated.
fn recorded_unauthenticated(path: &Path) -> Result<Vec<u64>, ExportError> {
    let reader = BufReader::new(std::fs::File::open(path)?);
    let mut out = Vec::new();
    for line in reader.split(b'\n') {
        let Ok(v) = serde_json::from_slice::<Value>(&line?) else {
            continue;
        };
        if v["payload"]["type"] == "SealRecorded"
            && let Some(list) = v["payload"]["data"]["unauthenticated"].as_array()
        {
            out.extend(list.iter().filter_map(Value::as_u64));
        }
    }
    Ok(out)
}

/// Verifies an export. `key` is the public seal key the auditor obtained independently;
/// without it the seals are checked against the key the manifest names, which proves
/// nothing (whoever rewrote the file wrote that key too), and the report says so and is
/// not ok. With `keyring` (an operator holding the event keys) every message's
/// authentication is checked; without, the positions the seals recorded as
/// unauthenticated are reported.
pub fn verify_file(
    path: &Path,
    key: Option<PublicSealKey>,
    keyring: Option<Keyring>,
) -> Result<FileReport, ExportError> {
    let recorded = if keyring.is_none() {
        recorded_unauthenticated(path)?
    } else {
        vec![]
    };
    let trusted_key = key.is_some();
    let file = std::fs::File::open(path)?;
    let reader = BufReader::new(file);
    let mut hasher = Sha256::new();
    let mut manifest: Option<Manifest> = None;
    let mut verifier: Option<Verifier> = None;
    let mut digest: Option<String> = None;
    let mut problems = Vec::new();
    let mut messages = 0u64;
    let mut last_position = 0u64;
    for (n, line) in reader.split(b'\n').enumerate() {
        let line = line?;
        if digest.is_some() {
            if !line.is_empty() {
                problems.push("content after the digest line".into());
            }
            continue;
        }
        let v: Value = serde_json::from_slice(&line)
            .map_err(|e| ExportError::Invalid(format!("line {}: {e}", n + 1)))?;
        if let Some(d) = v.get("digest").and_then(Value::as_str) {
            digest = Some(d.to_owned());
            continue;
        }
        hasher.update(&line);
        hasher.update(b"\n");
        if n == 0 {
            let m: Manifest =
                serde_json::from_value(v.get("manifest").cloned().unwrap_or(Value::Null))
                    .map_err(|e| ExportError::Invalid(format!("manifest: {e}")))?;
            if m.format != FORMAT {
                return Err(ExportError::Invalid(format!(
                    "format {} is not {FORMAT}",
                    m.format
                )));
            }
            let key = match key {
                Some(k) => Some(k),
                None => match &m.seal_public_key {
                    Some(k) => Some(PublicSealKey::from_hex(k).map_err(ExportError::Invalid)?),
                    None => None,
                },
            };
            verifier = Some(
                Verifier::new(&m.subject_prefix, m.from_position, key, keyring.clone())
                    .with_recorded_unauthenticated(recorded.iter().copied()),
            );
            manifest = Some(m);
            continue;
        }
        let verifier = verifier
            .as_mut()
            .ok_or_else(|| ExportError::Invalid("no manifest".into()))?;
        let position = v["position"]
            .as_u64()
            .ok_or_else(|| ExportError::Invalid(format!("line {}: no position", n + 1)))?;
        let payload = match (
            &v.get("payload"),
            v.get("payload_hex").and_then(Value::as_str),
        ) {
            (Some(p), _) => Bytes::from(serde_json::to_vec(p).unwrap_or_default()),
            (None, Some(h)) => Bytes::from(
                hex::decode(h)
                    .map_err(|_| ExportError::Invalid(format!("line {}: bad hex", n + 1)))?,
            ),
            _ => return Err(ExportError::Invalid(format!("line {}: no payload", n + 1))),
        };
        verifier.check(&RawEvent {
            position,
            subject: v["subject"].as_str().unwrap_or_default().to_owned(),
            version_header: v["version"].as_u64(),
            msg_id: None,
            auth: v["auth"].as_str().map(str::to_owned),
            prev: v["prev"].as_str().map(str::to_owned),
            payload,
        });
        messages += 1;
        last_position = position;
    }
    let manifest = manifest.ok_or_else(|| ExportError::Invalid("empty file".into()))?;
    let digest_ok = digest.as_deref() == Some(hex::encode(hasher.finalize()).as_str());
    if !digest_ok {
        problems.push("the file's digest does not match its content: it was changed".into());
    }
    if messages != manifest.messages {
        problems.push(format!(
            "the manifest lists {} messages, the file holds {messages}",
            manifest.messages
        ));
    }
    if messages > 0 && last_position != manifest.to_position {
        problems.push(format!(
            "the file ends at {last_position}, the manifest says {}",
            manifest.to_position
        ));
    }
    let report = verifier.map(Verifier::finish).unwrap_or_default();
    if report.seals.sealed_to == 0 && messages > 0 {
        problems.push("no seal covers this export".into());
    }
    if !trusted_key {
        problems.push(
            "the seals were checked only against the public key written in the file, which \
             whoever rewrote the file would write too: give the key you obtained \
             independently (--public-key)"
                .into(),
        );
    }
    let ok = report.ok && problems.is_empty();
    Ok(FileReport {
        manifest,
        digest_ok,
        problems,
        report,
        ok,
    })
}
