//! The reply publisher: a projector from the event log to AMQP replies.
//!
//! - `accepted` on `CourseRequested`, `success` on `CourseCompleted`,
//!   `error` on `CourseFailed`, for courses requested over AMQP only
//!   (`producer = "amqp"` in the `CourseRequested` metadata).
//! - Each reply goes to the request's `reply_to` with its `correlation_id`
//!   (both kept in the `CourseRequested` metadata), else to the durable
//!   `AMQP_RESPONSE_QUEUE`; persistent, with a publisher confirm.
//! - A batch of replies is published, every confirm awaited, and only then
//!   the checkpoint (`amqp_reply_checkpoint`) advanced. A crash between
//!   the confirms and the checkpoint re-sends that batch: replies are
//!   at-least-once. Duplicates carry the same `message_id`
//!   (`<course_id>/<stream_version>`) and body, so clients can drop them.
//! - Exactly one publisher across processes: a session advisory lock on a
//!   dedicated PostgreSQL connection (not the pool). Others stand by and
//!   take over when the holder's connection goes away.
//! - Woken by the store's [`Notifier`](crate::store::subscription::Notifier)
//!   wake-ups, polling as a fallback.

use std::collections::HashMap;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel};
use tokio::sync::watch;
use tokio_postgres::NoTls;
use uuid::Uuid;

use super::status::{AmqpState, AmqpStatus, Component};
use super::wire::{Reply, ReplyStatus};
use super::{connect, declare_response_queue, sleep_or_stop, AmqpError, AmqpSettings, Backoff};
use crate::domain::CourseEvent;
use crate::store::{EventStore, Metadata, Position, RecordedEvent};

/// Key of the publisher's advisory lock ("coursamq").
const LOCK_KEY: i64 = 0x636f_7572_7361_6d71;
/// The checkpoint row's name.
const CHECKPOINT: &str = "replies";
/// The producer name the consumer writes, which marks AMQP requests.
pub const PRODUCER: &str = "amqp";

/// How the publisher reads and waits.
#[derive(Debug, Clone, Copy)]
pub struct ReplyOptions {
    /// Most events read (and replies published) per checkpoint.
    pub batch_size: i64,
    /// Longest wait between reads without a wake-up.
    pub poll_interval: Duration,
    /// How often a standby tries to take the lock.
    pub lock_retry: Duration,
}

impl Default for ReplyOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            lock_retry: Duration::from_secs(1),
        }
    }
}

/// Runs the publisher until `stop`, reconnecting (to RabbitMQ and
/// PostgreSQL) with backoff.
pub(crate) async fn run(
    store: EventStore,
    wakeups: watch::Receiver<u64>,
    settings: AmqpSettings,
    status: AmqpStatus,
    options: ReplyOptions,
    mut stop: watch::Receiver<bool>,
) {
    let Some(url) = settings.amqp_url.clone() else {
        return;
    };
    let mut backoff = Backoff::new();
    let mut publisher = Publisher {
        store,
        wakeups,
        settings,
        status: status.clone(),
        options,
    };
    loop {
        match publisher.lead(&url, &mut stop, &mut backoff).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "AMQP reply publisher lost its connection; reconnecting");
                status.failed(Component::Publisher, &e);
            }
        }
        if sleep_or_stop(backoff.next_delay(), &mut stop).await {
            break;
        }
    }
    status.set(Component::Publisher, AmqpState::Stopped);
}

struct Publisher {
    store: EventStore,
    wakeups: watch::Receiver<u64>,
    settings: AmqpSettings,
    status: AmqpStatus,
    options: ReplyOptions,
}

impl Publisher {
    /// Takes the lock (standing by until then), then publishes until
    /// stopped (`Ok`) or a connection breaks (`Err`).
    async fn lead(
        &mut self,
        url: &str,
        stop: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Result<(), AmqpError> {
        let mut config = self.store.config().clone();
        config.application_name("coursegen amqp replies");
        let (client, connection) = config.connect(NoTls).await?;
        let connection = tokio::spawn(connection);
        loop {
            let locked: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
                .await?
                .get(0);
            if locked {
                break;
            }
            self.status.set(Component::Publisher, AmqpState::Standby);
            if sleep_or_stop(self.options.lock_retry, stop).await {
                return Ok(());
            }
        }

        let amqp = connect(url, "coursegen replies").await?;
        let channel = amqp.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        declare_response_queue(&channel, &self.settings.amqp_response_queue).await?;

        client
            .execute(
                "INSERT INTO amqp_reply_checkpoint (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                &[&CHECKPOINT],
            )
            .await?;
        let row = client
            .query_one(
                "SELECT transaction_id, global_position FROM amqp_reply_checkpoint WHERE name = $1",
                &[&CHECKPOINT],
            )
            .await?;
        let mut position = Position {
            transaction_id: row.get(0),
            global_position: row.get(1),
        };
        self.status.set(Component::Publisher, AmqpState::Connected);
        backoff.reset();
        tracing::info!(?position, "AMQP reply publisher is running");

        let mut retry_soon: Option<Duration> = None;
        let result = loop {
            if *stop.borrow() {
                break Ok(());
            }
            if connection.is_finished() {
                break Err(AmqpError::Lost(
                    "the publisher's database connection and lock",
                ));
            }
            if !amqp.status().connected() {
                break Err(AmqpError::Broker(lapin::Error::InvalidConnectionState(
                    amqp.status().state(),
                )));
            }
            self.wakeups.borrow_and_update();
            let events = self
                .store
                .read_all_after(position, self.options.batch_size)
                .await?;
            let Some(last) = events.last().map(RecordedEvent::position) else {
                let wait = retry_soon.unwrap_or(self.options.poll_interval);
                let woken = tokio::select! {
                    changed = self.wakeups.changed() => match changed {
                        Ok(()) => true,
                        // The Notifier is gone: plain polling.
                        Err(_) => {
                            tokio::time::sleep(wait).await;
                            false
                        }
                    },
                    () = tokio::time::sleep(wait) => false,
                    _ = stop.changed() => false,
                };
                retry_soon = match (woken, retry_soon) {
                    (true, _) => Some(Duration::from_millis(5)),
                    (false, Some(d)) if d < self.options.poll_interval => Some(d * 2),
                    _ => None,
                };
                continue;
            };
            retry_soon = None;
            let replies = self.replies_for(&events).await?;
            publish_all(&channel, &self.settings.amqp_response_queue, &replies).await?;
            client
                .execute(
                    "UPDATE amqp_reply_checkpoint
                     SET transaction_id = $2, global_position = $3, updated_at = now()
                     WHERE name = $1",
                    &[&CHECKPOINT, &last.transaction_id, &last.global_position],
                )
                .await?;
            position = last;
        };
        let _ = amqp.close(200, "stopping").await;
        drop(client);
        result
    }

    /// The replies a batch of events calls for, in log order.
    async fn replies_for(&self, events: &[RecordedEvent]) -> Result<Vec<Outgoing>, AmqpError> {
        let finished: Vec<Uuid> = events
            .iter()
            .filter(|e| matches!(e.event_type.as_str(), "CourseCompleted" | "CourseFailed"))
            .map(|e| e.stream_id)
            .collect();
        let origins = self.origins(&finished).await?;
        let mut out = Vec::new();
        for event in events {
            if !matches!(
                event.event_type.as_str(),
                "CourseRequested" | "CourseCompleted" | "CourseFailed"
            ) {
                continue;
            }
            let Ok(course_event) = event.to_course_event() else {
                tracing::warn!(
                    position = event.global_position,
                    "unreadable event; no reply"
                );
                continue;
            };
            let outgoing = match course_event {
                CourseEvent::CourseRequested(requested) => {
                    let metadata = event.metadata();
                    if metadata.producer.as_deref() != Some(PRODUCER) {
                        continue;
                    }
                    let mut reply = Reply::new(
                        Some(requested.request_id.to_string()),
                        ReplyStatus::Accepted,
                        event.recorded_at,
                    );
                    reply.course_id = Some(event.stream_id);
                    Outgoing::new(event, &metadata, reply)
                }
                CourseEvent::CourseCompleted(completed) => {
                    let Some(origin) = origins.get(&event.stream_id) else {
                        continue;
                    };
                    let mut reply = Reply::new(
                        origin.request_id.clone(),
                        ReplyStatus::Success,
                        event.recorded_at,
                    );
                    reply.course_id = Some(event.stream_id);
                    reply.course_title.clone_from(&origin.title);
                    reply.total_lessons = Some(completed.total_lessons);
                    Outgoing::new(event, &origin.metadata, reply)
                }
                CourseEvent::CourseFailed(failed) => {
                    let Some(origin) = origins.get(&event.stream_id) else {
                        continue;
                    };
                    let mut reply = Reply::new(
                        origin.request_id.clone(),
                        ReplyStatus::Error,
                        event.recorded_at,
                    );
                    reply.course_id = Some(event.stream_id);
                    reply.course_title.clone_from(&origin.title);
                    reply.error = Some(format!(
                        "generation failed at {}: {}",
                        failed.step, failed.error
                    ));
                    Outgoing::new(event, &origin.metadata, reply)
                }
                _ => continue,
            };
            out.push(outgoing);
        }
        Ok(out)
    }

    /// The requests behind finished courses that came over AMQP, with
    /// their latest titles: one query per batch.
    async fn origins(&self, course_ids: &[Uuid]) -> Result<HashMap<Uuid, Origin>, AmqpError> {
        if course_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let client = self
            .store
            .pool()
            .get()
            .await
            .map_err(crate::store::StoreError::from)?;
        let stmt = client
            .prepare_cached(
                "SELECT r.stream_id, r.metadata, r.payload->>'request_id',
                        (SELECT o.payload->>'title' FROM events o
                         WHERE o.stream_id = r.stream_id AND o.event_type = 'OutlineGenerated'
                         ORDER BY o.stream_version DESC LIMIT 1)
                 FROM events r
                 WHERE r.stream_id = ANY($1) AND r.stream_version = 0
                   AND r.metadata->>'producer' = $2",
            )
            .await?;
        let rows = client.query(&stmt, &[&course_ids, &PRODUCER]).await?;
        Ok(rows
            .iter()
            .map(|row| {
                let metadata: Metadata = serde_json::from_value(row.get(1)).unwrap_or_default();
                let origin = Origin {
                    metadata,
                    request_id: row.get(2),
                    title: row.get(3),
                };
                (row.get(0), origin)
            })
            .collect())
    }
}

struct Origin {
    metadata: Metadata,
    request_id: Option<String>,
    title: Option<String>,
}

/// A reply and where it goes.
pub(crate) struct Outgoing {
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    pub message_id: Option<String>,
    pub reply: Reply,
}

impl Outgoing {
    fn new(event: &RecordedEvent, origin: &Metadata, reply: Reply) -> Self {
        Self {
            reply_to: origin.reply_to.clone(),
            correlation_id: origin.correlation_id.clone(),
            message_id: Some(format!("{}/{}", event.stream_id, event.stream_version)),
            reply,
        }
    }
}

/// Publishes one reply (persistent, JSON) and returns its pending confirm.
///
/// # Errors
/// The channel is closed.
pub(crate) async fn send(
    channel: &Channel,
    response_queue: &str,
    outgoing: &Outgoing,
) -> Result<PublisherConfirm, AmqpError> {
    let routing_key = outgoing
        .reply_to
        .as_deref()
        .filter(|r| !r.is_empty())
        .unwrap_or(response_queue);
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_type(ShortString::from(
            match outgoing.reply.status {
                ReplyStatus::Accepted => "accepted",
                ReplyStatus::Success => "success",
                ReplyStatus::Error => "error",
            }
            .to_owned(),
        ))
        .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64);
    if let Some(id) = &outgoing.correlation_id {
        properties = properties.with_correlation_id(id.clone().into());
    }
    if let Some(id) = &outgoing.message_id {
        properties = properties.with_message_id(id.clone().into());
    }
    Ok(channel
        .basic_publish(
            "",
            routing_key,
            BasicPublishOptions::default(),
            &outgoing.reply.to_bytes(),
            properties,
        )
        .await?)
}

/// Waits for a publisher confirm.
///
/// # Errors
/// [`AmqpError::Nacked`] when the broker refused the message; broker errors.
pub(crate) async fn confirmed(confirm: PublisherConfirm) -> Result<(), AmqpError> {
    match confirm.await? {
        Confirmation::Nack(_) => Err(AmqpError::Nacked),
        Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
    }
}

/// Publishes every reply, then waits for all their confirms.
async fn publish_all(
    channel: &Channel,
    response_queue: &str,
    replies: &[Outgoing],
) -> Result<(), AmqpError> {
    let mut confirms = Vec::with_capacity(replies.len());
    for outgoing in replies {
        confirms.push(send(channel, response_queue, outgoing).await?);
    }
    for confirm in confirms {
        confirmed(confirm).await?;
    }
    Ok(())
}
