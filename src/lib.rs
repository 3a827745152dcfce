//! coursegen: an event-sourced service that turns a topic into a complete
//! online course with a language model.
//!
//! - [`domain`]: pure core: ids, events, commands, course state (decide/evolve).
//! - [`store`]: the PostgreSQL event store: migrations, append, gap-safe reads, subscription, work queue.
//! - [`database`]: opening the database: the configured server or a private cluster (shared by coursegen processes, stopped by the last), migrated.
//! - [`llm`]: the language model: OpenAI-compatible client and offline generator.
//! - [`actors`]: the scheduler and one course actor per in-flight course.
//! - [`projections`]: read models built from the log: runners (checkpoint, lock, lag), replay.
//! - [`render`]: lesson markdown to sanitised HTML, for every page that shows model output.
//! - [`sources`]: the source library: files to document versions (text, chunks, language), ingested into one stream per document.
//! - [`ingress`]: how requests arrive and replies leave: the HTTP API (`/api/v1`) and RabbitMQ.
//! - [`web`]: the web app at `/`: server-rendered pages over the same projections and tenant rules as the API.
//! - [`app`]: `coursegen serve`: everything started, stopped cleanly on a signal.
//! - [`retry`]: retry delays: one exponential backoff with a cap and jitter for every retrying loop.
//! - [`config`]: typed settings from the environment and CLI flags.
//! - [`telemetry`]: logging setup (text or JSON lines, on stderr or to a file).
//! - [`cli`]: the command-line interface.
//! - [`bench`]: benchmarks run with `coursegen bench`.

pub mod actors;
pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod database;
pub mod domain;
pub mod ingress;
pub mod llm;
pub mod projections;
pub mod render;
pub mod retry;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod web;
