//! Waking readers when events are appended.
//!
//! One dedicated connection LISTENs on [`NOTIFY_CHANNEL`] and bumps a counter
//! on every notification; readers wait on that counter *or* a poll interval,
//! whichever comes first. A lost notification (the listener was reconnecting,
//! or the event's transaction was not yet past the read horizon when the
//! reader looked) therefore only delays a reader, never loses an event.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{EventStore, Position, RecordedEvent, StoreError, NOTIFY_CHANNEL};

/// A handle on the LISTEN connection; clone the receivers it hands out.
/// Dropping the last `Notifier` stops the listener task.
pub struct Notifier {
    rx: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Notifier {
    /// Starts listening on a dedicated connection that reconnects (with
    /// backoff up to 5 s) whenever it is lost.
    pub fn start(config: tokio_postgres::Config) -> Self {
        let (tx, rx) = watch::channel(0u64);
        let task = tokio::spawn(listen_forever(config, tx));
        Self { rx, task }
    }

    /// A receiver that changes on every wake-up.
    pub fn wakeups(&self) -> watch::Receiver<u64> {
        self.rx.clone()
    }
}

async fn listen_forever(config: tokio_postgres::Config, tx: watch::Sender<u64>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen_once(&config, &tx).await {
            Ok(()) => tracing::warn!("LISTEN connection closed; reconnecting"),
            Err(e) => tracing::warn!(error = %e, "LISTEN connection failed; reconnecting"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        // Notifications sent while disconnected are gone: wake everyone once.
        tx.send_modify(|n| *n += 1);
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    tx: &watch::Sender<u64>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let wake = tx.clone();
    let pump = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => wake.send_modify(|n| *n += 1),
                Ok(_) => {}
                Err(e) => {
                    let _ = done_tx.send(Err(e));
                    return;
                }
            }
        }
        let _ = done_tx.send(Ok(()));
    });
    client
        .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
        .await?;
    tracing::debug!("listening for appended events");
    let result = (&mut done_rx).await.unwrap_or(Ok(()));
    pump.abort();
    drop(client);
    result
}

/// How a [`Subscription`] reads.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionOptions {
    /// Longest wait between reads without a notification.
    pub poll_interval: Duration,
    /// Events per read.
    pub batch_size: i64,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            batch_size: 500,
        }
    }
}

/// A reader of the global log from a checkpoint on, in commit-safe order.
pub struct Subscription {
    store: EventStore,
    position: Position,
    wakeups: watch::Receiver<u64>,
    options: SubscriptionOptions,
    /// After a wake-up found nothing (its transaction is not past the read
    /// horizon yet), look again soon rather than after a full poll interval.
    retry_soon: Option<Duration>,
}

impl Subscription {
    /// Reads after `position`, woken by `notifier`.
    pub fn new(
        store: EventStore,
        notifier: &Notifier,
        position: Position,
        options: SubscriptionOptions,
    ) -> Self {
        Self {
            store,
            position,
            wakeups: notifier.wakeups(),
            options,
            retry_soon: None,
        }
    }

    /// The position after the last event handed out.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The next batch of events, waiting until there is one.
    ///
    /// # Errors
    /// Database errors; the subscription stays usable and resumes at the same position.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            self.wakeups.borrow_and_update();
            let events = self
                .store
                .read_all_after(self.position, self.options.batch_size)
                .await?;
            if let Some(last) = events.last() {
                self.position = last.position();
                self.retry_soon = None;
                return Ok(events);
            }
            let wait = self.retry_soon.unwrap_or(self.options.poll_interval);
            let woken = tokio::select! {
                changed = self.wakeups.changed() => match changed {
                    Ok(()) => true,
                    // Listener gone: plain polling.
                    Err(_) => {
                        tokio::time::sleep(wait).await;
                        false
                    }
                },
                () = tokio::time::sleep(wait) => false,
            };
            self.retry_soon = match (woken, self.retry_soon) {
                (true, _) => Some(Duration::from_millis(5)),
                (false, Some(d)) if d < self.options.poll_interval => Some(d * 2),
                _ => None,
            };
        }
    }
}
