//! Integration tests: one binary, real PostgreSQL, one database per test.

mod amqp;
mod app;
mod dialects;
mod fake_llm;
mod generation;
mod helpers;
mod http;
mod llm;
mod llm_check;
mod projections;
mod queues;
mod real_llm;
mod store;
