//! The ways requests come in (and replies go out).
//!
//! - [`amqp`]: RabbitMQ: the request consumer, the reply publisher
//!   (a projector over the log) and the `submit --via amqp` client.

pub mod amqp;
