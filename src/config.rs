//! Typed settings. Every value comes from a CLI flag or its environment
//! variable (also read from `.env`), with the defaults the README lists.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Where the database is and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL connection string. Unset: a private cluster under --data-dir,
    /// made with this machine's PostgreSQL binaries and reachable only through
    /// a Unix socket, running while any coursegen process uses it (the last
    /// to exit stops it).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory of the private PostgreSQL cluster used when DATABASE_URL is unset.
    #[arg(
        long,
        env = "COURSEGEN_DATA_DIR",
        default_value = ".coursegen/pg",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Connections in the pool.
    #[arg(
        long,
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub max_connections: usize,
}

/// The file backup.
#[derive(Debug, Clone, Default, Args)]
pub struct ExportSettings {
    /// Keep a file backup of every READY course under this directory:
    /// `<slug>/course.json`, `README.md` and `NN-<lesson>.md`, rewritten when
    /// the course changes, moved to `.deleted/` when it is deleted. Off when unset.
    #[arg(long, env = "EXPORT_DIR")]
    pub export_dir: Option<PathBuf>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging.
#[derive(Debug, Clone, Args)]
pub struct LogSettings {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log more: `-v` for INFO lines (what the private cluster does, ...),
    /// `-vv` for DEBUG. `serve` logs INFO without it, the other commands
    /// only warnings and errors. RUST_LOG, when set, decides instead.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Append log lines to this file instead of writing them to stderr
    /// (`scripts/run.sh` runs `serve` with `.coursegen/serve.log`).
    #[arg(long, env = "LOG_FILE", global = true)]
    pub log_file: Option<PathBuf>,
}

impl LogSettings {
    /// The log filter when RUST_LOG is unset: `quiet` (the short commands,
    /// whose output is their result) shows only warnings and errors, the
    /// service INFO; each `-v` adds a level.
    pub fn default_filter(&self, quiet: bool) -> &'static str {
        match self.verbose + u8::from(!quiet) {
            0 => "warn",
            1 => "info,tokio_postgres=warn",
            2 => "debug,tokio_postgres=info",
            _ => "trace",
        }
    }
}
