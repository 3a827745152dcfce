//! The command line: `coursegen <command>`; see `coursegen --help`.
//!
//! - `args`: the commands and flags (clap), re-exported here.
//! - `commands`: what each command does, and its exit code.
//! - `output`: the terminal output: the event timeline and progress bars.

mod args;
mod commands;
mod output;

pub use args::Cli;
pub use commands::run;
