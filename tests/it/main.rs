//! Integration tests: one binary, real PostgreSQL, one database per test.

mod amqp;
mod app;
mod browser;
mod cluster;
mod deletion;
mod dialects;
mod elements;
mod fake_llm;
mod generation;
mod helpers;
mod http;
mod llm;
mod llm_check;
mod metadata;
mod progress;
mod projections;
mod queues;
mod real_llm;
mod requests;
mod sources;
mod store;
mod subtitles;
mod unavailable;
mod web;
