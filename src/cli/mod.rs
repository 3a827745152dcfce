//! The command line: `coursegen <command>`; see `coursegen --help`.
//!
//! - `args`: the commands and flags (clap), re-exported here.
//! - `commands`: what each command does, and its exit code.
//! - `output`: the terminal output: the event timeline and progress bars.
//! - `subtitles`: `courses subtitles`, writing subtitle files.
//! - `sources`: `sources add|list|rm|search`, the source library.

mod args;
mod commands;
mod output;
mod sources;
mod subtitles;

pub use args::Cli;
pub use commands::run;
