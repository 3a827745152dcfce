//! Integration tests: one binary, real PostgreSQL, one database per test.

mod amqp;
mod fake_llm;
mod generation;
mod helpers;
mod http;
mod llm;
mod projections;
mod store;
