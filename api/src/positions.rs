//! Where each projection stands, as announced by the projectors (`LISTEN
//! chronicle_projections`), for `X-Chronicle-Position` and read-your-writes waits.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};

/// Checkpoints by projection name, kept current by a background listener.
#[derive(Clone)]
pub struct Positions {
    rx: watch::Receiver<HashMap<String, u64>>,
}

impl Positions {
    /// Starts listening; reconnects by itself when Postgres goes away.
    pub fn start(database_url: String) -> Positions {
        let (tx, rx) = watch::channel(HashMap::new());
        tokio::spawn(async move {
            loop {
                if let Err(e) = listen(&database_url, &tx).await {
                    tracing::debug!(error = %e, "projection listener disconnected");
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Positions { rx }
    }

    /// The lowest checkpoint among `names` (0 for one never run).
    pub fn position_of(&self, names: &[&str]) -> u64 {
        let map = self.rx.borrow();
        names
            .iter()
            .map(|n| map.get(*n).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    /// Waits until every one of `names` has reached `min`, at most `timeout`. Answers the
    /// position reached, or `None` on time-out.
    pub async fn wait_for(&self, names: &[&str], min: u64, timeout: Duration) -> Option<u64> {
        let mut rx = self.rx.clone();
        let reached =
            |m: &HashMap<String, u64>| names.iter().all(|n| m.get(*n).copied().unwrap_or(0) >= min);
        match tokio::time::timeout(timeout, rx.wait_for(reached)).await {
            Ok(Ok(_)) => Some(self.position_of(names)),
            _ => None,
        }
    }
}

async fn listen(
    url: &str,
    tx: &watch::Sender<HashMap<String, u64>>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut conn) = tokio_postgres::connect(url, NoTls).await?;
    let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if ntx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    // Listen first, then read: nothing announced in between is missed.
    client
        .batch_execute(&format!(
            "LISTEN {}",
            chronicle_projections::runtime::CHANNEL
        ))
        .await?;
    let rows = client
        .query(
            "SELECT name, position FROM read.projection_checkpoints",
            &[],
        )
        .await?;
    tx.send_modify(|m| {
        for r in rows {
            m.insert(r.get(0), r.get::<_, i64>(1) as u64);
        }
    });
    while let Some(payload) = nrx.recv().await {
        if let Some((name, pos)) = payload.rsplit_once(':')
            && let Ok(pos) = pos.parse::<u64>()
        {
            tx.send_modify(|m| {
                let e = m.entry(name.to_owned()).or_insert(0);
                *e = (*e).max(pos);
            });
        }
    }
    driver.abort();
    Ok(())
}
