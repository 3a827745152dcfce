//! The reply publisher: a projection from the event log to AMQP replies,
//! driven by the projection runner like the read models.
//!
//! - `accepted` on `CourseRequested`, `success` on `CourseCompleted`,
//!   `error` on `CourseFailed`, for courses requested over AMQP only
//!   (`producer = "amqp"` in the `CourseRequested` metadata).
//! - Each reply goes to the request's `reply_to` with its `correlation_id`
//!   (both kept in the `CourseRequested` metadata), else to the durable
//!   `AMQP_RESPONSE_QUEUE`; persistent, with a publisher confirm.
//! - A batch of replies is published, every confirm awaited, and only then
//!   the checkpoint (the [`NAME`] row of `projection_checkpoints`) advanced,
//!   in the runner's batch transaction. A crash between the confirms and
//!   the commit re-sends that batch: replies are at-least-once. Duplicates
//!   carry the same `message_id` (`<course_id>/<stream_version>`) and body,
//!   so clients can drop them.
//! - Exactly one publisher across processes: the runner's session advisory
//!   lock on a dedicated PostgreSQL connection. Others stand by and take
//!   over when the holder's connection goes away. The broker connection is
//!   opened only once the lock is held, and dropped with it.
//! - Never replayed: it has no tables, and rebuilding it would re-send
//!   every reply ever sent.
//! - Its runner state is mirrored into the [`AmqpStatus`] publisher
//!   component (standby, connected, reconnecting with the last error).

use std::collections::HashMap;

use actix::{Actor, Addr};
use async_trait::async_trait;
use deadpool_postgres::Transaction;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::watch;
use uuid::Uuid;

use super::status::{AmqpState, AmqpStatus, Component};
use super::wire::{Reply, ReplyStatus};
use super::{connect, declare_response_queue, reconnect_backoff, AmqpError, AmqpSettings};
use crate::domain::CourseEvent;
use crate::projections::runner::{ProjectionRunner, RunnerOptions, RunnerState};
use crate::projections::{payload_of_types, ApplierError, ApplyError, BatchApplier};
use crate::retry::Backoff;
use crate::store::{EventStore, Metadata, RecordedEvent};

/// The name of the publisher's checkpoint row, status and runner.
pub(crate) const NAME: &str = "amqp_replies";
/// Key of the publisher's advisory lock ("coursamq"): the key the publisher
/// held before it ran under the projection runner, so that old and new
/// processes still exclude each other during a rolling upgrade.
const LOCK_KEY: i64 = 0x636f_7572_7361_6d71;
/// The producer name the consumer writes, which marks AMQP requests.
pub(crate) const PRODUCER: &str = "amqp";

/// Starts the publisher's runner (standing by while another process holds
/// its lock). Must be called inside an actix System.
pub(crate) fn start(
    store: EventStore,
    wakeups: watch::Receiver<u64>,
    url: String,
    settings: AmqpSettings,
    status: AmqpStatus,
    options: RunnerOptions,
) -> Addr<ProjectionRunner> {
    let publisher = Publisher {
        url,
        settings,
        status,
        broker: None,
    };
    ProjectionRunner::new(Box::new(publisher), store, wakeups, options).start()
}

/// The open broker connection and its confirm-mode channel.
struct Broker {
    connection: Connection,
    channel: Channel,
}

struct Publisher {
    url: String,
    settings: AmqpSettings,
    status: AmqpStatus,
    /// Open while this process holds the lock.
    broker: Option<Broker>,
}

fn sink(e: AmqpError) -> ApplierError {
    ApplierError::Sink(Box::new(e))
}

#[async_trait]
impl BatchApplier for Publisher {
    fn name(&self) -> &'static str {
        NAME
    }

    fn lock_key(&self) -> i64 {
        LOCK_KEY
    }

    fn reconnect_backoff(&self) -> Backoff {
        reconnect_backoff()
    }

    async fn open(&mut self) -> Result<(), ApplierError> {
        self.broker = None;
        let connection = connect(&self.url, "coursegen replies")
            .await
            .map_err(sink)?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| sink(e.into()))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| sink(e.into()))?;
        declare_response_queue(&channel, &self.settings.amqp_response_queue)
            .await
            .map_err(sink)?;
        self.broker = Some(Broker {
            connection,
            channel,
        });
        tracing::info!("AMQP reply publisher is running");
        Ok(())
    }

    fn check(&self) -> Result<(), ApplierError> {
        match &self.broker {
            Some(b) if b.connection.status().connected() => Ok(()),
            Some(b) => Err(sink(AmqpError::Broker(
                lapin::Error::InvalidConnectionState(b.connection.status().state()),
            ))),
            None => Err(sink(AmqpError::Lost(
                "the reply publisher's broker connection",
            ))),
        }
    }

    fn payload_sql(&self) -> String {
        payload_of_types(&REPLIED_TYPES, true)
    }

    async fn apply(
        &mut self,
        tx: &Transaction<'_>,
        events: Vec<RecordedEvent>,
    ) -> Result<(), ApplierError> {
        let replies = replies_for(tx, &events).await?;
        drop(events);
        let Some(broker) = &self.broker else {
            return Err(sink(AmqpError::Lost(
                "the reply publisher's broker connection",
            )));
        };
        publish_all(
            &broker.channel,
            &self.settings.amqp_response_queue,
            &replies,
        )
        .await
        .map_err(sink)
    }

    fn state_changed(&self, state: RunnerState) {
        let mirrored = match state {
            RunnerState::Standby => AmqpState::Standby,
            RunnerState::Running => AmqpState::Connected,
            RunnerState::Stopped => AmqpState::Stopped,
            // Connecting (or reconnecting after the error already reported);
            // never paused nor failed: nothing replays it, no event poisons it.
            RunnerState::Starting | RunnerState::Paused | RunnerState::Failed => return,
        };
        self.status.set(Component::Publisher, mirrored);
    }

    fn connection_lost(&mut self, error: &str) {
        self.status.failed(Component::Publisher, &error);
        // The lock is gone with the database connection: so is the right to
        // publish. Dropping the last handle closes the broker connection.
        self.broker = None;
    }
}

/// The event types a reply is published for (the publisher reads no other
/// payload).
const REPLIED_TYPES: [&str; 3] = ["CourseRequested", "CourseCompleted", "CourseFailed"];

/// The replies a batch of events calls for, in log order.
async fn replies_for(
    tx: &Transaction<'_>,
    events: &[RecordedEvent],
) -> Result<Vec<Outgoing>, ApplyError> {
    let finished: Vec<Uuid> = events
        .iter()
        .filter(|e| matches!(e.event_type.as_str(), "CourseCompleted" | "CourseFailed"))
        .map(|e| e.stream_id)
        .collect();
    let origins = origins(tx, &finished)
        .await
        .map_err(ApplyError::Connection)?;
    let mut out = Vec::new();
    for event in events {
        if !REPLIED_TYPES.contains(&event.event_type.as_str()) {
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
async fn origins(
    tx: &Transaction<'_>,
    course_ids: &[Uuid],
) -> Result<HashMap<Uuid, Origin>, tokio_postgres::Error> {
    if course_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = tx
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
    let rows = tx.query(&stmt, &[&course_ids, &PRODUCER]).await?;
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
