//! Live events: one reader of the log per process, fanned out to every subscriber.
//!
//! The [`Hub`] follows the log (an ordered consumer, started with the first subscriber and
//! stopped a while after the last) and puts each event, rendered once, into a broadcast
//! ring that every subscriber reads from: memory is the ring's, whatever the number of
//! subscribers, and a subscriber that falls behind the ring by more than its size is told
//! `lagging` and closed, never buffered for.
//!
//! A subscription resumes after a position with nothing missed or repeated: it first reads
//! the history after that position (no ring yet, so a long catch-up cannot lag), then
//! joins the ring, reads the history again from where it got to up to the log's end, and
//! from then on takes the ring's events past the last position it reached. Every event
//! the ring carries after the subscription joined it was appended after that join, so the
//! second read and the ring overlap and never leave a gap; positions say which are new.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronicle_events::{Domain, EventLog, JetStreamLog, RecordedEvent, StreamId, events_only};
use futures::{Stream, StreamExt};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::auth::Revocations;

/// At most how many events of a history read are handled between two looks at the
/// subscription's end conditions.
const HISTORY_BATCH: usize = 256;

/// How long the log reader runs on after its last subscriber has gone.
const IDLE_STOP: Duration = Duration::from_secs(30);

/// One event as subscribers get it: the envelope with its position and version, rendered
/// once for all of them.
#[derive(Debug)]
pub struct Live {
    pub position: u64,
    pub stream: StreamId,
    pub event_type: String,
    pub json: Arc<str>,
}

impl Live {
    fn of(e: &RecordedEvent) -> Live {
        Live {
            position: e.position,
            stream: e.envelope.stream.clone(),
            event_type: e.envelope.event_type.clone(),
            json: chronicle_replay::history::record_json(e).into(),
        }
    }
}

/// A stream a subscription names: one aggregate, or every stream of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamPattern {
    One(StreamId),
    Domain(Domain),
}

impl StreamPattern {
    pub fn parse(s: &str) -> Option<StreamPattern> {
        match s.split_once('.') {
            Some((d, "*")) => d.parse().ok().map(StreamPattern::Domain),
            _ => s.parse().ok().map(StreamPattern::One),
        }
    }

    pub fn domain(&self) -> Domain {
        match self {
            StreamPattern::One(s) => s.domain(),
            StreamPattern::Domain(d) => *d,
        }
    }

    fn matches(&self, stream: &StreamId) -> bool {
        match self {
            StreamPattern::One(s) => s == stream,
            StreamPattern::Domain(d) => stream.domain() == *d,
        }
    }

    fn filter(&self) -> String {
        match self {
            StreamPattern::One(s) => s.to_string(),
            StreamPattern::Domain(d) => format!("{d}.*"),
        }
    }
}

/// What a subscription delivers: events of the `domains` its caller may see, of one of
/// `streams` (any, when empty) and one of `types` (any, when empty).
#[derive(Debug, Clone)]
pub struct Filter {
    pub domains: HashSet<Domain>,
    pub streams: Vec<StreamPattern>,
    pub types: Vec<String>,
}

impl Filter {
    fn keeps(&self, stream: &StreamId, event_type: &str) -> bool {
        self.domains.contains(&stream.domain())
            && (self.streams.is_empty() || self.streams.iter().any(|p| p.matches(stream)))
            && (self.types.is_empty() || self.types.iter().any(|t| t == event_type))
    }

    /// The one subject filter a history read can use, when there is one.
    fn read_filter(&self) -> Option<String> {
        match self.streams.as_slice() {
            [one] => Some(one.filter()),
            _ => None,
        }
    }
}

/// What a subscription yields.
#[derive(Debug)]
pub enum Item {
    Event(Arc<Live>),
    /// It fell behind: the last position it reached; the subscription ends.
    Lagging(u64),
    /// It ends: why.
    Ended(End),
}

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Revoked,
    Expired,
    Stopping,
    LogUnavailable,
}

impl End {
    pub fn text(self) -> &'static str {
        match self {
            End::Revoked => "the token has been revoked",
            End::Expired => "the token has expired",
            End::Stopping => "the server is stopping",
            End::LogUnavailable => "the log is unavailable",
        }
    }
}

/// What ends a subscription besides the subscriber: its token revoked or expired, the
/// process stopping.
struct Ends {
    revocations: Arc<Revocations>,
    revoked: watch::Receiver<u64>,
    jti: Uuid,
    expiry: std::pin::Pin<Box<tokio::time::Sleep>>,
    closing: watch::Receiver<bool>,
}

impl Ends {
    /// Waits for the first of them. Cancel-safe: a subscription selects on it beside each
    /// read.
    async fn next(&mut self) -> End {
        loop {
            tokio::select! {
                _ = self.revoked.changed() => if self.revocations.is_revoked(&self.jti) {
                    return End::Revoked;
                },
                _ = &mut self.expiry => return End::Expired,
                _ = self.closing.changed() => return End::Stopping,
            }
        }
    }
}

/// The subscription limit of a token is reached.
#[derive(Debug)]
pub struct LimitReached;

#[derive(Clone)]
pub struct Hub(Arc<Inner>);

struct Inner {
    log: JetStreamLog,
    tx: broadcast::Sender<Arc<Live>>,
    /// Whether the log reader runs; changed only with `subscribers` known.
    running: tokio::sync::Mutex<bool>,
    subscribers: AtomicUsize,
    per_token: Mutex<HashMap<Uuid, usize>>,
    per_token_limit: usize,
    closing: watch::Sender<bool>,
}

/// A subscriber's place: counted while it lives, freed when dropped.
pub struct Ticket {
    hub: Hub,
    jti: Uuid,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let inner = &self.hub.0;
        let left = inner.subscribers.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::gauge!("chronicle_subscribers").set(left as f64);
        let mut per = inner.per_token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per.get_mut(&self.jti) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.jti);
            }
        }
    }
}

impl Hub {
    /// `lag`: how far (in events) a subscriber may fall behind; `per_token`: how many
    /// subscriptions one token may hold.
    pub fn new(log: JetStreamLog, lag: usize, per_token: usize) -> Hub {
        let (tx, _) = broadcast::channel(lag.max(16));
        Hub(Arc::new(Inner {
            log,
            tx,
            running: tokio::sync::Mutex::new(false),
            subscribers: AtomicUsize::new(0),
            per_token: Mutex::new(HashMap::new()),
            per_token_limit: per_token.max(1),
            closing: watch::Sender::new(false),
        }))
    }

    /// How many subscriptions are open.
    pub fn subscribers(&self) -> usize {
        self.0.subscribers.load(Ordering::SeqCst)
    }

    /// Ends every subscription (the process is stopping).
    pub fn close(&self) {
        self.0.closing.send_replace(true);
    }

    /// Admits a subscriber holding token `jti`, within its token's limit, and makes sure
    /// the log reader runs.
    pub async fn admit(&self, jti: Uuid) -> Result<Ticket, LimitReached> {
        {
            let mut per = self.0.per_token.lock().unwrap_or_else(|p| p.into_inner());
            let n = per.entry(jti).or_insert(0);
            if *n >= self.0.per_token_limit {
                return Err(LimitReached);
            }
            *n += 1;
        }
        let mut running = self.0.running.lock().await;
        let now = self.0.subscribers.fetch_add(1, Ordering::SeqCst) + 1;
        metrics::gauge!("chronicle_subscribers").set(now as f64);
        let ticket = Ticket {
            hub: self.clone(),
            jti,
        };
        if !*running {
            // Started at the log's end as of now: every subscriber reads the history up to
            // (at least) here itself, so the reader never has to go back.
            let start = self.0.log.last_position().await.unwrap_or(0) + 1;
            *running = true;
            tokio::spawn(self.clone().read_log(start));
        }
        Ok(ticket)
    }

    /// The log reader: follows the log from `next` into the ring until no subscriber has
    /// been left for [`IDLE_STOP`]; a broken feed is taken up again where it stopped.
    async fn read_log(self, mut next: u64) {
        let inner = &self.0;
        let mut idle_since: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let mut feed = match inner.log.follow(next, &[]).await {
                Ok(feed) => events_only(feed, "subscriptions"),
                Err(e) => {
                    tracing::warn!(error = %e, "the live feed cannot start; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if self.stop_if_idle(&mut idle_since).await {
                        return;
                    }
                    continue;
                }
            };
            loop {
                tokio::select! {
                    item = feed.next() => match item {
                        Some(Ok(e)) => {
                            next = e.position + 1;
                            // No receiver is fine: nobody is listening at this moment.
                            let _ = inner.tx.send(Arc::new(Live::of(&e)));
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the live feed broke; taking it up again");
                            break;
                        }
                        None => break,
                    },
                    _ = tick.tick() => {
                        if self.stop_if_idle(&mut idle_since).await {
                            return;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether the reader stops now: no subscriber for [`IDLE_STOP`].
    async fn stop_if_idle(&self, idle_since: &mut Option<tokio::time::Instant>) -> bool {
        if self.0.subscribers.load(Ordering::SeqCst) > 0 {
            *idle_since = None;
            return false;
        }
        let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() < IDLE_STOP {
            return false;
        }
        let mut running = self.0.running.lock().await;
        if self.0.subscribers.load(Ordering::SeqCst) > 0 {
            *idle_since = None;
            return false;
        }
        *running = false;
        true
    }

    /// The events after `from` that `filter` keeps, then live ones as they come, until
    /// the subscriber falls behind, its token is revoked (`jti`) or expires
    /// (`expires_at`), or the process stops. Holds `ticket` while it runs.
    pub fn subscribe(
        &self,
        ticket: Ticket,
        filter: Filter,
        from: u64,
        revocations: Arc<Revocations>,
        jti: Uuid,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> impl Stream<Item = Item> + Send + 'static {
        let hub = self.clone();
        async_stream::stream! {
            let _ticket = ticket;
            let mut ends = Ends {
                revoked: revocations.watch(),
                revocations,
                jti,
                expiry: Box::pin(tokio::time::sleep(
                    (expires_at - chrono::Utc::now()).to_std().unwrap_or_default(),
                )),
                closing: hub.0.closing.subscribe(),
            };
            let read_filter = filter.read_filter();
            let mut last = from;
            let mut receiver: Option<broadcast::Receiver<Arc<Live>>> = None;
            // Two reads of the history (the second after joining the ring), then the ring.
            for phase in 0..3 {
                if phase == 1 {
                    receiver = Some(hub.0.tx.subscribe());
                }
                if phase < 2 {
                    let history = match hub.0.log.read_ordered(last + 1, read_filter.as_deref()).await {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::warn!(error = %e, "a subscription cannot read the log");
                            yield Item::Ended(End::LogUnavailable);
                            return;
                        }
                    };
                    // What has arrived is taken together: one look at the token and the
                    // clock per batch, not per event.
                    let mut history = events_only(history, "subscriptions").ready_chunks(HISTORY_BATCH);
                    loop {
                        tokio::select! {
                            batch = history.next() => {
                                let Some(batch) = batch else { break };
                                for e in batch {
                                    match e {
                                        Ok(e) => {
                                            last = e.position;
                                            if filter.keeps(&e.envelope.stream, &e.envelope.event_type) {
                                                yield Item::Event(Arc::new(Live::of(&e)));
                                            }
                                        }
                                        Err(e) => {
                                            tracing::warn!(error = %e, "a subscription's history read broke");
                                            yield Item::Ended(End::LogUnavailable);
                                            return;
                                        }
                                    }
                                }
                            },
                            why = ends.next() => {
                                yield Item::Ended(why);
                                return;
                            }
                        }
                    }
                    continue;
                }
                let Some(rx) = receiver.as_mut() else { return };
                loop {
                    tokio::select! {
                        live = rx.recv() => match live {
                            Ok(live) => {
                                if live.position <= last {
                                    continue;
                                }
                                last = live.position;
                                if filter.keeps(&live.stream, &live.event_type) {
                                    yield Item::Event(live);
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                metrics::counter!("chronicle_subscribers_lagging_total").increment(1);
                                yield Item::Lagging(last);
                                return;
                            }
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                        why = ends.next() => {
                            yield Item::Ended(why);
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_filters() {
        let job: StreamId = "job.42".parse().unwrap();
        let other: StreamId = "job.43".parse().unwrap();
        let entry: StreamId = "entry.e1".parse().unwrap();
        assert_eq!(
            StreamPattern::parse("job.42"),
            Some(StreamPattern::One(job.clone()))
        );
        assert_eq!(
            StreamPattern::parse("job.*"),
            Some(StreamPattern::Domain(Domain::Job))
        );
        assert_eq!(StreamPattern::parse("nope.*"), None);
        assert_eq!(StreamPattern::parse("job.4 2"), None);
        assert_eq!(StreamPattern::parse("job"), None);
        let f = Filter {
            domains: [Domain::Job, Domain::Entry].into_iter().collect(),
            streams: vec![
                StreamPattern::One(job.clone()),
                StreamPattern::Domain(Domain::Entry),
            ],
            types: vec!["JobStarted".into(), "JournalEntryPosted".into()],
        };
        assert!(f.keeps(&job, "JobStarted"));
        assert!(!f.keeps(&job, "JobSubmitted"), "AND across parameters");
        assert!(!f.keeps(&other, "JobStarted"));
        assert!(f.keeps(&entry, "JournalEntryPosted"), "OR within one");
        assert_eq!(f.read_filter(), None);
        let only = Filter {
            domains: [Domain::Job].into_iter().collect(),
            streams: vec![],
            types: vec![],
        };
        assert!(
            !only.keeps(&entry, "JournalEntryPosted"),
            "never a domain not seen"
        );
        assert!(only.keeps(&other, "JobStarted"));
    }
}
