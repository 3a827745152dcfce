//! Integration tests: one binary, real PostgreSQL, one database per test.

mod amqp;
mod app;
mod cluster;
mod deletion;
mod elements;
mod fake_llm;
mod generation;
mod helpers;
mod http;
mod llm;
mod metadata;
mod progress;
mod projections;
mod queues;
mod requests;
mod store;
mod subtitles;
mod unavailable;
