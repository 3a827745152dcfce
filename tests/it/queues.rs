//! One test's own RabbitMQ queues (`test_<random>_...`) on the test broker
//! (COURSEGEN_TEST_AMQP_URL, default guest on 127.0.0.1:5672), a
//! confirm-mode channel to publish to and read them, and their deletion at
//! the end, also on panic.

use std::time::Duration;

use coursegen::ingress::amqp::{connect, AmqpSettings};
use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, Consumer};
use uuid::Uuid;

use crate::helpers::eventually;

/// The broker the tests use.
pub fn amqp_url() -> String {
    std::env::var("COURSEGEN_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// One test's queues, and a confirm-mode channel to publish and read them.
pub struct Queues {
    /// The service's AMQP settings for these queues.
    pub settings: AmqpSettings,
    connection: Connection,
    channel: Channel,
}

impl Queues {
    /// Fresh queue names, declared up front (as the service will), so that
    /// nothing published before the service starts is lost.
    pub async fn new() -> Self {
        let prefix = format!("test_{}", Uuid::new_v4().simple());
        let settings = AmqpSettings {
            amqp_url: Some(amqp_url()),
            amqp_request_queue: format!("{prefix}_requests"),
            amqp_response_queue: format!("{prefix}_responses"),
            amqp_prefetch: 16,
            ..AmqpSettings::default()
        };
        let (connection, channel) = open().await;
        let queues = Self {
            settings,
            connection,
            channel,
        };
        coursegen::ingress::amqp::declare_request_topology(&queues.connection, &queues.settings)
            .await
            .unwrap();
        coursegen::ingress::amqp::declare_response_queue(&queues.channel, queues.responses())
            .await
            .unwrap();
        queues
    }

    /// Opens the test's connection again (after a broker restart).
    pub async fn reopen(&mut self) {
        let (connection, channel) = open().await;
        self.connection = connection;
        self.channel = channel;
    }

    /// The request queue.
    pub fn requests(&self) -> &str {
        &self.settings.amqp_request_queue
    }

    /// The queue of replies to requests without `reply_to`.
    pub fn responses(&self) -> &str {
        &self.settings.amqp_response_queue
    }

    /// The dead-letter queue of the request queue.
    pub fn dead(&self) -> String {
        self.settings.dead_letter_queue()
    }

    /// Publishes a persistent request and waits for the broker's confirm.
    pub async fn publish(&self, body: &[u8], reply_to: Option<&str>, correlation_id: Option<&str>) {
        let mut properties = BasicProperties::default().with_delivery_mode(2);
        if let Some(r) = reply_to {
            properties = properties.with_reply_to(r.to_owned().into());
        }
        if let Some(c) = correlation_id {
            properties = properties.with_correlation_id(c.to_owned().into());
        }
        self.publish_to(self.requests(), body, properties).await;
    }

    /// Publishes `body` to `queue` (default exchange) and waits for the confirm.
    pub async fn publish_to(&self, queue: &str, body: &[u8], properties: BasicProperties) {
        let confirmation = self
            .channel
            .basic_publish("", queue, BasicPublishOptions::default(), body, properties)
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(matches!(confirmation, Confirmation::Ack(None)));
    }

    /// An exclusive reply queue and a consumer on it.
    pub async fn reply_queue(&self) -> (String, Consumer) {
        let queue = self
            .channel
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let consumer = self
            .channel
            .basic_consume(
                queue.name().as_str(),
                "test-replies",
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        (queue.name().to_string(), consumer)
    }

    /// Ready messages in a queue.
    pub async fn count(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue,
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count()
    }

    /// Takes every message from a queue.
    pub async fn drain(&self, queue: &str) -> Vec<BasicGetMessage> {
        let mut all = Vec::new();
        while let Some(m) = self
            .channel
            .basic_get(queue, BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            all.push(m);
        }
        all
    }
}

async fn open() -> (Connection, Channel) {
    let connection = eventually(
        "RabbitMQ to accept a connection",
        Duration::from_secs(60),
        || async { connect(&amqp_url(), "coursegen tests").await.ok() },
    )
    .await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (connection, channel)
}

/// Deletes the queues, on a runtime of its own so that it also runs on panic.
impl Drop for Queues {
    fn drop(&mut self) {
        let settings = self.settings.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let Ok(connection) = connect(&amqp_url(), "coursegen test cleanup").await else {
                    return;
                };
                let Ok(channel) = connection.create_channel().await else {
                    return;
                };
                let dead = settings.dead_letter_queue();
                for queue in [
                    &settings.amqp_request_queue,
                    &settings.amqp_response_queue,
                    &dead,
                ] {
                    let _ = channel
                        .queue_delete(queue, QueueDeleteOptions::default())
                        .await;
                }
                let _ = channel
                    .exchange_delete(&dead, ExchangeDeleteOptions::default())
                    .await;
                let _ = connection.close(200, "cleaned up").await;
            });
        })
        .join();
    }
}
