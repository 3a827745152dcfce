//! The ways requests come in (and replies go out).
//!
//! - [`http`]: the REST API under `/api/v1`.
//! - [`amqp`]: RabbitMQ: the request consumer, the reply publisher
//!   (a projector over the log) and the `submit --via amqp` client.

pub mod amqp;
pub mod http;
