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
use crate::retry::Backoff;

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
    pub(crate) fn wakeups(&self) -> watch::Receiver<u64> {
        self.rx.clone()
    }
}

async fn listen_forever(config: tokio_postgres::Config, tx: watch::Sender<u64>) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match listen_once(&config, &tx, &mut backoff).await {
            Ok(()) => tracing::warn!("LISTEN connection closed; reconnecting"),
            Err(e) => tracing::warn!(error = %e, "LISTEN connection failed; reconnecting"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff.next_delay()).await;
        // Notifications sent while disconnected are gone: wake everyone once.
        tx.send_modify(|n| *n += 1);
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    tx: &watch::Sender<u64>,
    backoff: &mut Backoff,
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
    // Listening again: a later loss reconnects quickly, however many
    // attempts this connection took.
    backoff.reset();
    let result = (&mut done_rx).await.unwrap_or(Ok(()));
    pump.abort();
    drop(client);
    result
}

/// "Wait for a wake-up, or poll": how every reader of the log waits when
/// it found nothing new.
///
/// A wake-up may come before its event is readable (its transaction is
/// not past the read horizon yet, or a slower one holds the horizon back):
/// after a wake-up the waiter looks again soon (a [`Backoff`] from
/// `first_retry`, doubling up to the poll interval) rather than waiting a
/// full poll interval.
#[derive(Debug)]
pub(crate) struct Waiter {
    wakeups: watch::Receiver<u64>,
    poll_interval: Duration,
    /// The quick looks after a wake-up.
    retry: Backoff,
    /// Whether the reads since the last wake-up found nothing yet (the
    /// waits then come from `retry`).
    retrying: bool,
}

impl Waiter {
    /// Woken by `wakeups` (a [`Notifier`]'s), polling every `poll_interval`.
    pub fn new(
        wakeups: watch::Receiver<u64>,
        poll_interval: Duration,
        first_retry: Duration,
    ) -> Self {
        Self {
            wakeups,
            poll_interval,
            retry: Backoff::new(first_retry, poll_interval),
            retrying: false,
        }
    }

    /// Call before each read: the wake-ups so far are answered by it.
    pub(crate) fn reading(&mut self) {
        self.wakeups.borrow_and_update();
    }

    /// The read found events: the next empty one waits a full interval again.
    pub(crate) fn found(&mut self) {
        self.retrying = false;
    }

    /// The read found nothing: waits for a wake-up or the current interval,
    /// whichever comes first. With the notifier gone (no wake-up will come,
    /// and its channel answers at once) it sleeps the poll interval.
    pub(crate) async fn wait(&mut self) {
        let poll = self.poll_interval;
        let wait = if self.retrying {
            self.retry.next_delay()
        } else {
            poll
        };
        let woken = tokio::select! {
            changed = self.wakeups.changed() => match changed {
                Ok(()) => true,
                Err(_) => {
                    self.retrying = false;
                    tokio::time::sleep(poll).await;
                    false
                }
            },
            () = tokio::time::sleep(wait) => false,
        };
        if woken {
            self.retrying = true;
            self.retry.reset();
        }
    }
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
    waiter: Waiter,
    options: SubscriptionOptions,
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
            waiter: Waiter::new(
                notifier.wakeups(),
                options.poll_interval,
                Duration::from_millis(5),
            ),
            options,
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
            self.waiter.reading();
            let events = self
                .store
                .read_all_after(self.position, self.options.batch_size)
                .await?;
            if let Some(last) = events.last() {
                self.position = last.position();
                self.waiter.found();
                return Ok(events);
            }
            self.waiter.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// How long `waiter.wait()` took, on the paused clock.
    async fn timed(waiter: &mut Waiter) -> Duration {
        let started = tokio::time::Instant::now();
        waiter.wait().await;
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn without_wake_ups_it_polls() {
        let (_tx, rx) = watch::channel(0u64);
        let mut waiter = Waiter::new(rx, 500 * MS, 5 * MS);
        waiter.reading();
        assert_eq!(timed(&mut waiter).await, 500 * MS);
        assert_eq!(timed(&mut waiter).await, 500 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_ends_the_wait_then_it_looks_again_soon_up_to_the_poll_interval() {
        let (tx, rx) = watch::channel(0u64);
        let mut waiter = Waiter::new(rx, 40 * MS, 5 * MS);
        waiter.reading();
        let wake = tokio::spawn(async move {
            tokio::time::sleep(10 * MS).await;
            tx.send_modify(|n| *n += 1);
            tx
        });
        assert_eq!(timed(&mut waiter).await, 10 * MS);
        let _tx = wake.await.unwrap();
        // The read after the wake-up found nothing: 5, 10, 20, 40 ms, then polling.
        let waits = [
            timed(&mut waiter).await,
            timed(&mut waiter).await,
            timed(&mut waiter).await,
            timed(&mut waiter).await,
            timed(&mut waiter).await,
        ];
        assert_eq!(waits, [5, 10, 20, 40, 40].map(|ms| ms * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn another_wake_up_starts_the_quick_retries_over() {
        let (tx, rx) = watch::channel(0u64);
        let mut waiter = Waiter::new(rx, 40 * MS, 5 * MS);
        waiter.reading();
        tx.send_modify(|n| *n += 1);
        assert_eq!(timed(&mut waiter).await, Duration::ZERO);
        assert_eq!(timed(&mut waiter).await, 5 * MS);
        assert_eq!(timed(&mut waiter).await, 10 * MS);
        tx.send_modify(|n| *n += 1);
        assert_eq!(timed(&mut waiter).await, Duration::ZERO);
        assert_eq!(timed(&mut waiter).await, 5 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn found_events_end_the_quick_retries() {
        let (tx, rx) = watch::channel(0u64);
        let mut waiter = Waiter::new(rx, 40 * MS, 5 * MS);
        waiter.reading();
        tx.send_modify(|n| *n += 1);
        assert_eq!(timed(&mut waiter).await, Duration::ZERO);
        waiter.found();
        waiter.reading();
        assert_eq!(timed(&mut waiter).await, 40 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_before_the_read_is_answered_by_it() {
        let (tx, rx) = watch::channel(0u64);
        let mut waiter = Waiter::new(rx, 40 * MS, 5 * MS);
        tx.send_modify(|n| *n += 1);
        waiter.reading();
        assert_eq!(timed(&mut waiter).await, 40 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn with_the_notifier_gone_it_keeps_polling() {
        let (tx, rx) = watch::channel(0u64);
        let mut waiter = Waiter::new(rx, 40 * MS, 5 * MS);
        drop(tx);
        waiter.reading();
        assert_eq!(timed(&mut waiter).await, 40 * MS);
        assert_eq!(timed(&mut waiter).await, 40 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn with_the_notifier_gone_after_a_wake_up_it_polls_at_once() {
        let (tx, rx) = watch::channel(0u64);
        let mut waiter = Waiter::new(rx, 40 * MS, 5 * MS);
        waiter.reading();
        tx.send_modify(|n| *n += 1);
        drop(tx);
        assert_eq!(timed(&mut waiter).await, Duration::ZERO);
        // No quick looks for wake-ups that can no longer come.
        assert_eq!(timed(&mut waiter).await, 40 * MS);
        assert_eq!(timed(&mut waiter).await, 40 * MS);
    }
}
