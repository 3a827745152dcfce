//! The request consumer.
//!
//! For each message on `AMQP_REQUEST_QUEUE` (up to `AMQP_PREFETCH` at once):
//!
//! - valid: `CourseRequested` is recorded (idempotently: a redelivered or
//!   duplicated request maps to the same course id and records nothing new)
//!   with the message's `reply_to` and `correlation_id` in its metadata,
//!   and only then the message is acked. A database outage is retried with
//!   backoff while the message stays unacked.
//! - refused (see [`wire::parse_request`]): a copy goes to the dead-letter
//!   exchange `<queue>.dead` with the reason in the `x-coursegen-error`
//!   header, an `error` reply goes out when the `request_id` can be read,
//!   and once both are confirmed the message is acked.
//!
//! A broken connection drops every unacked message back to the broker, which
//! redelivers it; since recording is idempotent nothing is created twice.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use tokio::sync::watch;

use super::replies::{self, Outgoing, PRODUCER};
use super::status::{AmqpState, AmqpStatus, Component};
use super::wire::{self, Refusal, Reply, ReplyStatus};
use super::{
    connect, declare_request_topology, declare_response_queue, reconnect_backoff, sleep_or_stop,
    AmqpError, AmqpSettings, ERROR_HEADER,
};
use crate::retry::Backoff;
use crate::store::courses::{self, CommandError, Submitted};
use crate::store::{EventStore, Metadata};

/// Runs the consumer until `stop`, reconnecting with backoff.
pub(crate) async fn run(
    store: EventStore,
    settings: AmqpSettings,
    status: AmqpStatus,
    mut stop: watch::Receiver<bool>,
) {
    let Some(url) = settings.amqp_url.clone() else {
        return;
    };
    let mut backoff = reconnect_backoff();
    loop {
        match consume(&store, &settings, &url, &status, &mut stop, &mut backoff).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "AMQP consumer lost its connection; reconnecting");
                status.failed(Component::Consumer, &e);
            }
        }
        if sleep_or_stop(backoff.next_delay(), &mut stop).await {
            break;
        }
    }
    status.set(Component::Consumer, AmqpState::Stopped);
}

/// What every message handler needs.
struct Handler {
    store: EventStore,
    /// A confirm-mode channel for dead letters and error replies.
    publish: Channel,
    settings: AmqpSettings,
    stop: watch::Receiver<bool>,
}

async fn consume(
    store: &EventStore,
    settings: &AmqpSettings,
    url: &str,
    status: &AmqpStatus,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Result<(), AmqpError> {
    let connection = connect(url, "coursegen requests").await?;
    declare_request_topology(&connection, settings).await?;
    let publish = connection.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    declare_response_queue(&publish, &settings.amqp_response_queue).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(settings.amqp_prefetch.max(1), BasicQosOptions::default())
        .await?;
    let tag = format!("coursegen-{}", uuid::Uuid::new_v4().simple());
    let mut deliveries = channel
        .basic_consume(
            &settings.amqp_request_queue,
            &tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    status.set(Component::Consumer, AmqpState::Connected);
    backoff.reset();
    tracing::info!(queue = %settings.amqp_request_queue, "consuming AMQP course requests");

    let handler = Arc::new(Handler {
        store: store.clone(),
        publish,
        settings: settings.clone(),
        stop: stop.clone(),
    });
    let mut in_flight = FuturesUnordered::new();
    let result = loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break Ok(()),
            Some(handled) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(e) = handled {
                    break Err(e);
                }
            }
            delivery = deliveries.next() => match delivery {
                Some(Ok(delivery)) => in_flight.push(handler.clone().handle(delivery)),
                Some(Err(e)) => break Err(e.into()),
                None => break Err(AmqpError::Lost("the request consumer (cancelled by the broker)")),
            },
        }
    };
    if result.is_ok() {
        // Stop taking messages, let those being recorded finish and be acked.
        let _ = channel
            .basic_cancel(&tag, BasicCancelOptions::default())
            .await;
        while let Some(handled) = in_flight.next().await {
            if let Err(e) = handled {
                tracing::warn!(error = %e, "a request was left unacked at shutdown; it will be redelivered");
            }
        }
    }
    drop(in_flight);
    let _ = connection.close(200, "stopping").await;
    result
}

impl Handler {
    /// Records or refuses one message, then acks it. Returns an error only
    /// when the channel broke (the broker then redelivers the message).
    async fn handle(self: Arc<Self>, delivery: Delivery) -> Result<(), AmqpError> {
        let reply_to = delivery.properties.reply_to().as_ref().map(|s| s.as_str());
        let correlation_id = delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.as_str());
        let parsed = wire::parse_request(&delivery.data).and_then(|request| {
            wire::check_properties(reply_to, correlation_id).map_err(|reason| Refusal {
                reason,
                request_id: Some(request.request_id.to_string()),
            })?;
            Ok(request)
        });
        match parsed {
            Ok(request) => {
                let properties = &delivery.properties;
                let metadata = Metadata {
                    producer: Some(PRODUCER.into()),
                    reply_to: properties.reply_to().as_ref().map(|s| s.to_string()),
                    correlation_id: properties.correlation_id().as_ref().map(|s| s.to_string()),
                    ..Metadata::default()
                };
                let request_id = request.request_id.to_string();
                let mut backoff = reconnect_backoff();
                loop {
                    match courses::submit(&self.store, request.clone(), metadata.clone()).await {
                        Ok((id, outcome)) => {
                            tracing::debug!(course_id = %id, duplicate = (outcome == Submitted::Duplicate),
                                redelivered = delivery.redelivered, "AMQP request recorded");
                            break;
                        }
                        Err(CommandError::Rejected(e)) => {
                            let refusal = Refusal {
                                reason: format!("request refused: {e}"),
                                request_id: Some(request_id),
                            };
                            self.refuse(&delivery, &refusal).await?;
                            break;
                        }
                        Err(CommandError::Store(e)) => {
                            tracing::warn!(error = %e, "cannot record an AMQP request; retrying");
                            let mut stop = self.stop.clone();
                            if sleep_or_stop(backoff.next_delay(), &mut stop).await {
                                // Unacked: redelivered to whoever consumes next.
                                return Ok(());
                            }
                        }
                    }
                }
                let pause = self.settings.amqp_test_pause_before_ack_ms;
                if pause > 0 {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
            Err(refusal) => {
                tracing::info!(reason = %refusal.reason, "AMQP message refused; dead-lettered");
                self.refuse(&delivery, &refusal).await?;
            }
        }
        delivery.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Dead-letters the message with its reason and answers it with an
    /// `error` reply if it has a readable request id; waits for both confirms.
    async fn refuse(&self, delivery: &Delivery, refusal: &Refusal) -> Result<(), AmqpError> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        let reason: String = refusal.reason.chars().take(2000).collect();
        headers.insert(
            ERROR_HEADER.into(),
            AMQPValue::LongString(LongString::from(reason.clone())),
        );
        let properties: BasicProperties = delivery
            .properties
            .clone()
            .with_headers(headers)
            .with_delivery_mode(2);
        let dead = self.settings.dead_letter_queue();
        let dead_letter = self
            .publish
            .basic_publish(
                &dead,
                &self.settings.amqp_request_queue,
                BasicPublishOptions::default(),
                &delivery.data,
                properties,
            )
            .await?;
        let reply = match &refusal.request_id {
            Some(id) => {
                let mut reply =
                    Reply::new(Some(id.clone()), ReplyStatus::Error, chrono::Utc::now());
                reply.error = Some(reason);
                let outgoing = Outgoing {
                    reply_to: wire::usable_property(
                        delivery.properties.reply_to().as_ref().map(|s| s.as_str()),
                    ),
                    correlation_id: wire::usable_property(
                        delivery
                            .properties
                            .correlation_id()
                            .as_ref()
                            .map(|s| s.as_str()),
                    ),
                    message_id: None,
                    reply,
                };
                Some(
                    replies::send(&self.publish, &self.settings.amqp_response_queue, &outgoing)
                        .await?,
                )
            }
            None => None,
        };
        replies::confirmed(dead_letter).await?;
        if let Some(reply) = reply {
            replies::confirmed(reply).await?;
        }
        Ok(())
    }
}
