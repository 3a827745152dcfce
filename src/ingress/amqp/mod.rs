//! RabbitMQ ingress: course requests in, replies out.
//!
//! - [`consumer`]: reads `AMQP_REQUEST_QUEUE`, validates each message,
//!   records `CourseRequested` and acks only after that commit. Anything it
//!   cannot accept is dead-lettered to `<queue>.dead` with the reason in the
//!   `x-coursegen-error` header (and answered with an `error` reply when the
//!   message's `request_id` can be read).
//! - [`replies`]: the reply publisher, a projection over the log run by the
//!   projection runner: `accepted` on `CourseRequested`, `success` on
//!   `CourseCompleted`, `error` on `CourseFailed`, each published with a
//!   publisher confirm before its checkpoint advances (at-least-once: a
//!   crash may repeat, never lose, a reply).
//! - [`client`]: publishing a request and following its replies, as
//!   `coursegen submit --via amqp [--wait]` does.
//! - [`status`]: connected / reconnecting and the last error, for health checks.
//!
//! Both loops reconnect with backoff when RabbitMQ goes away. Only requests
//! that arrived over AMQP (`producer = "amqp"` in the event metadata) get
//! AMQP replies; HTTP and CLI requests are answered through their own ingress.

pub(crate) mod client;
pub(crate) mod consumer;
pub(crate) mod replies;
pub mod status;
pub mod wire;

use std::time::Duration;

use actix::Addr;
use clap::Args;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::watch;

use crate::projections::runner::{ProjectionRunner, RunnerOptions, StopRunner};
use crate::retry::Backoff;
use crate::store::EventStore;

use status::Component;
pub use status::{AmqpState, AmqpStatus, AmqpStatusSnapshot, ComponentStatus};

/// Default request queue.
pub(crate) const DEFAULT_REQUEST_QUEUE: &str = "coursegen.requests";
/// Default queue of replies to requests without `reply_to`.
pub(crate) const DEFAULT_RESPONSE_QUEUE: &str = "coursegen.responses";
/// Header of a dead letter that says why it was refused.
pub const ERROR_HEADER: &str = "x-coursegen-error";

/// Where RabbitMQ is and which queues to use.
#[derive(Clone, Args)]
pub struct AmqpSettings {
    /// RabbitMQ URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f. Unset: the
    /// AMQP consumer and reply publisher are off.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,

    /// Queue of course requests; refused messages go to `<name>.dead`.
    #[arg(long, env = "AMQP_REQUEST_QUEUE", default_value = DEFAULT_REQUEST_QUEUE)]
    pub amqp_request_queue: String,

    /// Queue of replies to requests that carry no `reply_to`.
    #[arg(long, env = "AMQP_RESPONSE_QUEUE", default_value = DEFAULT_RESPONSE_QUEUE)]
    pub amqp_response_queue: String,

    /// Unacknowledged requests the broker hands this process at once (they
    /// are recorded concurrently, up to this many).
    #[arg(long, env = "AMQP_PREFETCH", default_value_t = 64)]
    pub amqp_prefetch: u16,

    /// Test hook: milliseconds to wait between committing a request and
    /// acking it, so a test can kill the process in that window.
    #[arg(
        long,
        env = "AMQP_TEST_PAUSE_BEFORE_ACK_MS",
        default_value_t = 0,
        hide = true
    )]
    pub amqp_test_pause_before_ack_ms: u64,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            amqp_url: None,
            amqp_request_queue: DEFAULT_REQUEST_QUEUE.into(),
            amqp_response_queue: DEFAULT_RESPONSE_QUEUE.into(),
            amqp_prefetch: 64,
            amqp_test_pause_before_ack_ms: 0,
        }
    }
}

/// The URL may hold a password: never print it.
impl std::fmt::Debug for AmqpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSettings")
            .field("amqp_url", &self.amqp_url.as_ref().map(|_| "<set>"))
            .field("amqp_request_queue", &self.amqp_request_queue)
            .field("amqp_response_queue", &self.amqp_response_queue)
            .field("amqp_prefetch", &self.amqp_prefetch)
            .finish()
    }
}

impl AmqpSettings {
    /// The dead-letter exchange and queue of the request queue.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.amqp_request_queue)
    }
}

/// Errors of the AMQP layer.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The broker is unreachable or the connection/channel broke; retried with backoff.
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker refused (nacked) a publish; it is retried.
    #[error("RabbitMQ refused to take a message (publisher nack)")]
    Nacked,
    /// A mandatory publish found no queue (e.g. the request queue does not exist).
    #[error("no queue named {0:?} to route the message to")]
    Unroutable(String),
    /// A connection this loop depends on went away.
    #[error("lost {0}")]
    Lost(&'static str),
    #[error("event store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// Opens a connection whose I/O runs on the current tokio runtime.
///
/// # Errors
/// [`AmqpError::Broker`] when the broker cannot be reached or refuses the login.
pub async fn connect(url: &str, name: &str) -> Result<Connection, AmqpError> {
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
        .with_connection_name(name.to_owned().into());
    Ok(Connection::connect(url, properties).await?)
}

/// Declares the request queue (durable, dead-lettering to `<name>.dead`), its
/// dead-letter exchange and queue.
///
/// A request queue that already exists with other arguments (declared by an
/// older client without a dead-letter exchange) is used as it is: the
/// consumer dead-letters by publishing to `<name>.dead` itself, so it does not
/// depend on the queue's arguments.
///
/// # Errors
/// Broker errors.
pub async fn declare_request_topology(
    connection: &Connection,
    settings: &AmqpSettings,
) -> Result<(), AmqpError> {
    let channel = connection.create_channel().await?;
    let dead = settings.dead_letter_queue();
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .exchange_declare(
            &dead,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(&dead, durable, FieldTable::default())
        .await?;
    channel
        .queue_bind(
            &dead,
            &dead,
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dead.clone().into()),
    );
    let declared = channel
        .queue_declare(&settings.amqp_request_queue, durable, arguments)
        .await;
    if let Err(e) = declared {
        // PRECONDITION_FAILED closes the channel: check on a fresh one that the
        // queue at least exists.
        tracing::warn!(queue = %settings.amqp_request_queue, error = %e,
            "request queue exists with other arguments; using it as it is");
        let channel = connection.create_channel().await?;
        channel
            .queue_declare(
                &settings.amqp_request_queue,
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let _ = channel.close(200, "declared").await;
    } else {
        let _ = channel.close(200, "declared").await;
    }
    Ok(())
}

/// Declares the durable queue of replies without `reply_to`.
///
/// # Errors
/// Broker errors.
pub async fn declare_response_queue(channel: &Channel, name: &str) -> Result<(), AmqpError> {
    channel
        .queue_declare(
            name,
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// The retry delays of the AMQP loops: 200 ms doubling to 10 s, each up to
/// 25 % longer at random, so a fleet does not reconnect in step.
pub(crate) fn reconnect_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(10)).with_jitter(1.0..=1.25)
}

/// Waits `delay` or until `stop` turns true; returns whether to stop.
pub(crate) async fn sleep_or_stop(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// The running consumer and reply publisher of one `serve` process.
pub(crate) struct AmqpService {
    status: AmqpStatus,
    stop: watch::Sender<bool>,
    consumer: tokio::task::JoinHandle<()>,
    /// The reply publisher's projection runner (none without AMQP_URL).
    publisher: Option<Addr<ProjectionRunner>>,
}

impl AmqpService {
    /// Starts the consumer and the reply publisher (the latter stands by
    /// while another process holds its lock). They connect in the
    /// background and keep reconnecting; see [`AmqpService::status`].
    /// Must be called inside an actix System.
    pub(crate) fn start(
        store: EventStore,
        wakeups: watch::Receiver<u64>,
        settings: AmqpSettings,
    ) -> Self {
        let status = AmqpStatus::new();
        let (stop, stop_rx) = watch::channel(false);
        let consumer = tokio::spawn(consumer::run(
            store.clone(),
            settings.clone(),
            status.clone(),
            stop_rx,
        ));
        let publisher = settings.amqp_url.clone().map(|url| {
            replies::start(
                store,
                wakeups,
                url,
                settings,
                status.clone(),
                RunnerOptions::default(),
            )
        });
        Self {
            status,
            stop,
            consumer,
            publisher,
        }
    }

    /// A handle on the connection state, for health checks.
    pub fn status(&self) -> AmqpStatus {
        self.status.clone()
    }

    /// The reply publisher's runner, to report it with the other projections.
    pub(crate) fn publisher(&self) -> Option<Addr<ProjectionRunner>> {
        self.publisher.clone()
    }

    /// Stops consuming (requests being recorded finish and are acked; the
    /// broker redelivers any others), then the publisher: the reply batch
    /// it is publishing is confirmed and checkpointed first, so a clean stop
    /// sends no reply twice (only a batch still unconfirmed after the
    /// runner's stop timeout is rolled back and sent again by the next
    /// publisher).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let abort = self.consumer.abort_handle();
        if tokio::time::timeout(Duration::from_secs(10), self.consumer)
            .await
            .is_err()
        {
            // Whatever it held unacked goes back to the broker.
            tracing::warn!("the AMQP consumer did not stop within 10 s; aborted");
            abort.abort();
        }
        if let Some(publisher) = self.publisher {
            let _ = publisher.send(StopRunner).await;
            self.status.set(Component::Publisher, AmqpState::Stopped);
        }
    }
}
