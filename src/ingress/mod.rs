//! The ways requests come in (and replies go out).
//!
//! - [`http`]: the REST API under `/api/v1`.
//! - [`amqp`]: RabbitMQ: the request consumer, the reply publisher
//!   (a projector over the log) and the `submit --via amqp` client.
//! - [`nul`]: finding NUL characters, which no ingress lets reach SQL.

pub mod amqp;
pub mod http;
pub mod nul;
