//! coursegen: an event-sourced service that turns a topic into a complete
//! online course with a language model.
//!
//! - [`domain`]: pure core: ids, events, commands, course state (decide/evolve).
//! - [`store`]: the PostgreSQL event store: migrations, append, gap-safe reads, subscription.
//! - [`projections`]: read models built from the log: runners (checkpoint, lock, lag), replay.
//! - [`config`]: typed settings from the environment and CLI flags.
//! - [`cli`]: the command-line interface.
//! - [`bench`]: benchmarks run with `coursegen bench`.

pub mod bench;
pub mod cli;
pub mod config;
pub mod database;
pub mod domain;
pub mod projections;
pub mod store;
pub mod telemetry;
