//! Typed settings. Every value comes from a CLI flag or its environment
//! variable (also read from `.env`), with the defaults the README lists.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Where the database is and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL connection string. Unset: a private cluster under --data-dir,
    /// made with this machine's PostgreSQL binaries and reachable only through
    /// a Unix socket.
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

/// How logs are written (always to stderr).
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
}
