//! `coursegen bench amqp`: requests per second from publishing a request to
//! receiving its `accepted` reply, beside the raw publish-to-consume rate of
//! the same messages through the same broker (a bare consumer that acks), in
//! the same run. Queue names are unique per run and deleted afterwards.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use uuid::Uuid;

use super::ScratchDatabase;
use crate::app::{Application, ServeArgs};
use crate::domain::{CourseRequest, RawCourseRequest};
use crate::ingress::amqp::client::request_body;
use crate::ingress::amqp::replies::confirmed;
use crate::ingress::amqp::wire::{Reply, ReplyStatus};
use crate::ingress::amqp::{connect, declare_request_topology, AmqpService, AmqpSettings};
use crate::store::subscription::Notifier;

/// Options of `bench amqp`.
#[derive(Debug, Args)]
pub struct AmqpBenchArgs {
    /// RabbitMQ (queue names are made up per run; the queue settings are ignored).
    #[command(flatten)]
    pub amqp: AmqpSettings,
    /// Requests to send.
    #[arg(long, default_value_t = 5000)]
    pub messages: usize,
    /// Run only the AMQP consumer and reply publisher, without the
    /// scheduler generating the courses (offline) at the same time.
    #[arg(long)]
    pub ingress_only: bool,
}

/// `ServeArgs` as `coursegen serve --llm-provider offline` would get them.
#[derive(Parser)]
struct OfflineServe {
    #[command(flatten)]
    serve: ServeArgs,
}

/// Runs the benchmark in `scratch`.
///
/// # Errors
/// AMQP_URL unset, broker or database errors.
pub(crate) async fn run(scratch: &ScratchDatabase, args: &AmqpBenchArgs) -> anyhow::Result<()> {
    let url = args
        .amqp
        .amqp_url
        .clone()
        .context("bench amqp needs AMQP_URL (or --amqp-url)")?;
    let prefix = format!("bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let settings = AmqpSettings {
        amqp_url: Some(url.clone()),
        amqp_request_queue: format!("{prefix}_requests"),
        amqp_response_queue: format!("{prefix}_responses"),
        ..args.amqp.clone()
    };
    let raw_queue = format!("{prefix}_raw");
    let bodies: Vec<Vec<u8>> = (0..args.messages)
        .map(|i| request_body(&request(i)))
        .collect();
    let admin = connect(&url, "coursegen bench").await?;
    let outcome = measure(scratch, args, &settings, &admin, &raw_queue, &bodies).await;

    let channel = admin.create_channel().await?;
    for queue in [
        raw_queue.as_str(),
        settings.amqp_request_queue.as_str(),
        settings.amqp_response_queue.as_str(),
        settings.dead_letter_queue().as_str(),
    ] {
        let _ = channel
            .queue_delete(queue, QueueDeleteOptions::default())
            .await;
    }
    let _ = channel
        .exchange_delete(
            &settings.dead_letter_queue(),
            ExchangeDeleteOptions::default(),
        )
        .await;
    let _ = admin.close(200, "done").await;
    let (raw, service) = outcome?;
    let n = args.messages as f64;
    println!(
        "bench amqp: {} requests, prefetch {}, {}",
        args.messages,
        settings.amqp_prefetch,
        if args.ingress_only {
            "consumer + reply publisher only"
        } else {
            "full service (offline LLM generating meanwhile)"
        }
    );
    println!(
        "  raw publish -> consume+ack   {:>9.0} msg/s  ({:.2} s)",
        n / raw.as_secs_f64(),
        raw.as_secs_f64()
    );
    println!(
        "  publish -> accepted reply    {:>9.0} req/s  ({:.2} s)  {:.2} of raw",
        n / service.as_secs_f64(),
        service.as_secs_f64(),
        raw.as_secs_f64() / service.as_secs_f64()
    );
    Ok(())
}

fn request(i: usize) -> CourseRequest {
    CourseRequest::parse(RawCourseRequest {
        request_id: Some(Uuid::new_v4().to_string()),
        user_id: Some(Uuid::new_v4().to_string()),
        topic: Some(format!("Benchmark topic {i}")),
        num_lessons: Some(2),
        ..RawCourseRequest::default()
    })
    .expect("a valid request")
}

async fn measure(
    scratch: &ScratchDatabase,
    args: &AmqpBenchArgs,
    settings: &AmqpSettings,
    admin: &Connection,
    raw_queue: &str,
    bodies: &[Vec<u8>],
) -> anyhow::Result<(Duration, Duration)> {
    // Raw: the same bodies through a durable queue to a consumer that acks.
    let channel = admin.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    channel
        .queue_declare(raw_queue, durable(), FieldTable::default())
        .await?;
    let consumer_channel = admin.create_channel().await?;
    consumer_channel
        .basic_qos(settings.amqp_prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = consumer_channel
        .basic_consume(
            raw_queue,
            "bench-raw",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let started = Instant::now();
    let total = bodies.len();
    let consumed = tokio::spawn(async move {
        let mut n = 0;
        while n < total {
            let delivery = consumer.next().await.context("consumer ended")??;
            delivery.ack(BasicAckOptions::default()).await?;
            n += 1;
        }
        anyhow::Ok(())
    });
    publish_all(&channel, raw_queue, bodies).await?;
    consumed.await??;
    let raw = started.elapsed();

    // The service: publish to its request queue, wait for every `accepted`.
    let store = scratch.store(16);
    declare_request_topology(admin, settings).await?;
    let replies_channel = admin.create_channel().await?;
    replies_channel
        .queue_declare(
            &settings.amqp_response_queue,
            durable(),
            FieldTable::default(),
        )
        .await?;
    let mut replies = replies_channel
        .basic_consume(
            &settings.amqp_response_queue,
            "bench-replies",
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    enum Running {
        App(Box<Application>),
        Ingress(AmqpService, Notifier),
    }
    let running = if args.ingress_only {
        let notifier = Notifier::start(store.config().clone());
        let service = AmqpService::start(store.clone(), notifier.wakeups(), settings.clone());
        Running::Ingress(service, notifier)
    } else {
        let mut serve = OfflineServe::try_parse_from(["serve", "--llm-provider", "offline"])?.serve;
        serve.amqp = settings.clone();
        serve.shutdown_grace_secs = 0.0;
        Running::App(Box::new(Application::build(store.clone(), &serve)?))
    };
    // Start the clock once both are connected, as in a long-running service.
    let status = match &running {
        Running::App(app) => app.amqp_status().expect("AMQP is on"),
        Running::Ingress(service, _) => service.status(),
    };
    let connected = Instant::now();
    while !status.snapshot().healthy() {
        anyhow::ensure!(
            connected.elapsed() < Duration::from_secs(30),
            "the AMQP consumer and publisher did not connect: {:?}",
            status.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let accepted = tokio::spawn(async move {
        let mut seen = HashSet::new();
        while seen.len() < total {
            let delivery = replies.next().await.context("reply consumer ended")??;
            if let Ok(reply) = serde_json::from_slice::<Reply>(&delivery.data) {
                if reply.status == ReplyStatus::Accepted {
                    seen.insert(reply.request_id);
                }
            }
        }
        anyhow::Ok(())
    });
    publish_all(&channel, &settings.amqp_request_queue, bodies).await?;
    let waited = tokio::time::timeout(Duration::from_secs(600), accepted).await;
    let service = started.elapsed();
    match running {
        Running::App(app) => app.stop().await,
        Running::Ingress(service, notifier) => {
            service.stop().await;
            drop(notifier);
        }
    }
    store.pool().close();
    waited.context("accepted replies did not all arrive within 10 minutes")???;
    Ok((raw, service))
}

pub(super) fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Publishes persistent messages with confirms, up to 1,000 unconfirmed at once.
pub(super) async fn publish_all(
    channel: &Channel,
    queue: &str,
    bodies: &[Vec<u8>],
) -> anyhow::Result<()> {
    for window in bodies.chunks(1000) {
        let mut confirms = Vec::with_capacity(window.len());
        for body in window {
            confirms.push(
                channel
                    .basic_publish(
                        "",
                        queue,
                        BasicPublishOptions::default(),
                        body,
                        BasicProperties::default()
                            .with_delivery_mode(2)
                            .with_content_type("application/json".into()),
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            confirmed(confirm).await?;
        }
    }
    Ok(())
}
