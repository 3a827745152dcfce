//! `coursegen submit --via amqp`: publishes a request the way any AMQP
//! client would, and with `--wait` follows its replies.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use serde_json::json;

use super::wire::{Reply, ReplyStatus};
use super::{connect, declare_request_topology, AmqpSettings};
use crate::domain::{course_id, CourseRequest};

/// The JSON body of a request, as DESIGN.md specifies it.
pub fn request_body(request: &CourseRequest) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "request_id": request.request_id,
        "user_id": request.user_id,
        "topic": request.topic,
        "grade_level": request.grade_level,
        "num_lessons": request.num_lessons,
        "language": request.language,
        "source_filter": request.source_filter,
    }))
    .expect("requests serialize")
}

/// Publishes `request` to the request queue with a publisher confirm and
/// prints its course id; with `wait`, follows the replies on an exclusive,
/// auto-deleted queue until `success` (exit 0) or `error` (exit 1).
///
/// # Errors
/// AMQP_URL unset, the broker unreachable, or the message refused.
pub async fn submit(
    settings: &AmqpSettings,
    request: &CourseRequest,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let url = settings
        .amqp_url
        .as_deref()
        .context("--via amqp needs AMQP_URL (or --amqp-url)")?;
    let connection = connect(url, "coursegen submit")
        .await
        .context("connecting to RabbitMQ")?;
    // Declared as the service declares them, so a request sent before the
    // service first starts waits in the queue.
    declare_request_topology(&connection, settings).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let replies = if wait {
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

    let correlation_id = request.request_id.to_string();
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
        Confirmation::Ack(Some(_)) => anyhow::bail!(
            "no queue named {:?} took the request",
            settings.amqp_request_queue
        ),
        Confirmation::Nack(_) => anyhow::bail!("RabbitMQ refused the request (nack)"),
    }
    let id = course_id(request.user_id, request.request_id);
    eprintln!("request published to {}", settings.amqp_request_queue);
    println!("{id}");

    let Some((_, mut consumer)) = replies else {
        let _ = connection.close(200, "done").await;
        return Ok(ExitCode::SUCCESS);
    };
    let spinner = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("valid template"),
    );
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner.set_message("published; waiting for `coursegen serve` to accept it");
    let code = loop {
        let Some(delivery) = consumer.next().await else {
            spinner.abandon_with_message("the broker closed the reply queue");
            break ExitCode::FAILURE;
        };
        let delivery = delivery.context("reading replies")?;
        let Ok(reply) = serde_json::from_slice::<Reply>(&delivery.data) else {
            continue;
        };
        if reply.request_id.as_deref() != Some(correlation_id.as_str()) {
            continue;
        }
        match reply.status {
            ReplyStatus::Accepted => {
                spinner.set_message(format!("accepted as course {id}; generating"));
            }
            ReplyStatus::Success => {
                let title = reply.course_title.unwrap_or_default();
                let lessons = reply.total_lessons.unwrap_or_default();
                spinner.finish_with_message(format!("READY: {title} ({lessons} lessons)"));
                eprintln!("course {id} is READY: {title} ({lessons} lessons)");
                break ExitCode::SUCCESS;
            }
            ReplyStatus::Error => {
                let error = reply.error.unwrap_or_default();
                spinner.abandon_with_message(format!("FAILED: {error}"));
                eprintln!("course {id} failed: {error}");
                break ExitCode::FAILURE;
            }
        }
    };
    let _ = connection.close(200, "done").await;
    Ok(code)
}
