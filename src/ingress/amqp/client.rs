//! Publishing a course request the way any AMQP client would, and following
//! its replies: what `coursegen submit --via amqp [--wait]` is built on (the
//! command line shows them).

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, Consumer};
use serde_json::json;

use super::wire::Reply;
use super::{declare_request_topology, AmqpError, AmqpSettings};
use crate::domain::CourseRequest;

/// The JSON body of a request, as the README's RabbitMQ section specifies it.
pub(crate) fn request_body(request: &CourseRequest) -> Vec<u8> {
    let mut body = json!({
        "request_id": request.request_id,
        "user_id": request.user_id,
        "topic": request.topic,
        "grade_level": request.grade_level,
        "num_lessons": request.num_lessons,
        "language": request.language,
        "source_filter": request.source_filter,
    });
    if !request.subtitle_languages.is_empty() {
        body["subtitle_languages"] = json!(request.subtitle_languages);
    }
    // The optional metadata fields, those given only.
    if let (Some(body), serde_json::Value::Object(metadata)) = (
        body.as_object_mut(),
        serde_json::to_value(&request.metadata).expect("metadata serializes"),
    ) {
        body.extend(metadata);
    }
    serde_json::to_vec(&body).expect("requests serialize")
}

/// The replies to one published request, read from an exclusive,
/// auto-deleted queue that lives as long as the connection.
pub(crate) struct Replies {
    consumer: Consumer,
    correlation_id: String,
}

impl Replies {
    /// The next reply to this request, skipping messages that are not a
    /// reply or answer another request; `None` once the broker closed the queue.
    ///
    /// # Errors
    /// [`AmqpError::Broker`] when reading from the broker fails.
    pub(crate) async fn next_reply(&mut self) -> Result<Option<Reply>, AmqpError> {
        while let Some(delivery) = self.consumer.next().await {
            let delivery = delivery?;
            let Ok(reply) = serde_json::from_slice::<Reply>(&delivery.data) else {
                continue;
            };
            if reply.request_id.as_deref() == Some(self.correlation_id.as_str()) {
                return Ok(Some(reply));
            }
        }
        Ok(None)
    }
}

/// Publishes `request` to the request queue, persistent and with a
/// publisher confirm. The queue is declared first as the service declares
/// it, so a request sent before the service first starts waits in it. With
/// `follow`, the request names a reply queue of its own, whose replies are
/// returned.
///
/// # Errors
/// [`AmqpError::Unroutable`] when no queue took the request,
/// [`AmqpError::Nacked`] when the broker refused it, broker errors.
pub(crate) async fn publish(
    connection: &Connection,
    settings: &AmqpSettings,
    request: &CourseRequest,
    follow: bool,
) -> Result<Option<Replies>, AmqpError> {
    declare_request_topology(connection, settings).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let correlation_id = request.request_id.to_string();

    let replies = if follow {
        let queue = channel
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let consumer = channel
            .basic_consume(
                queue.name().as_str(),
                "coursegen-submit",
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Some((queue.name().to_string(), consumer))
    } else {
        None
    };

    let mut properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_correlation_id(correlation_id.clone().into());
    if let Some((queue, _)) = &replies {
        properties = properties.with_reply_to(queue.clone().into());
    }
    let confirmation = channel
        .basic_publish(
            "",
            &settings.amqp_request_queue,
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &request_body(request),
            properties,
        )
        .await?
        .await?;
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => {}
        Confirmation::Ack(Some(_)) => {
            return Err(AmqpError::Unroutable(settings.amqp_request_queue.clone()))
        }
        Confirmation::Nack(_) => return Err(AmqpError::Nacked),
    }
    Ok(replies.map(|(_, consumer)| Replies {
        consumer,
        correlation_id,
    }))
}
