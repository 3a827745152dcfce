//! The arguments of `coursegen`: every command, flag and help text (clap).

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::config::{DatabaseSettings, LogSettings};

/// Turn a topic into a complete online course with a language model.
///
/// Every step of every course is an event in PostgreSQL. With no
/// DATABASE_URL, coursegen uses a private PostgreSQL cluster under
/// .coursegen/pg, made with this machine's PostgreSQL binaries. Every
/// coursegen process on it holds it while it runs: the first one starts
/// it, and the last one to exit stops it, so `submit` or `events` never
/// stop it under a running `serve`, and nothing is left running after the
/// last exits.
///
/// `serve` logs INFO lines; the other commands only warnings and errors
/// (`-v` for more, or RUST_LOG).
#[derive(Debug, Parser)]
#[command(
    name = "coursegen",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub database: DatabaseSettings,

    #[command(flatten)]
    pub log: LogSettings,

    #[command(subcommand)]
    pub command: Commands,
}

impl Cli {
    /// The log filter when RUST_LOG is unset: `serve` logs INFO; the short
    /// commands only warnings and errors, so that what they print is their
    /// result; `-v` adds a level.
    pub fn default_log_filter(&self) -> &'static str {
        self.log
            .default_filter(!matches!(self.command, Commands::Serve(_)))
    }
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run the service: generate every queued course (and resume any left
    /// half-done) until SIGINT, SIGTERM or SIGHUP. Several `serve`
    /// processes on one database share the work.
    Serve(crate::app::ServeArgs),
    /// Create or update the database schema (every other command does this too).
    Migrate,
    /// Request a course: records CourseRequested and prints the course id.
    ///
    /// The course id is derived from (user, request id): submitting the same
    /// request again prints the same id and records nothing new.
    Submit(SubmitArgs),
    /// Show a course's history: every event of its stream, oldest first.
    Events(EventsArgs),
    /// Work with one course: edit its metadata.
    #[command(subcommand)]
    Courses(CoursesAction),
    /// Re-open a FAILED course: generation resumes at the first missing step
    /// (steps already recorded are kept, their tokens not paid again).
    Retry(RetryArgs),
    /// A user's source library: add, list, remove and search the documents
    /// courses are grounded in.
    #[command(subcommand)]
    Sources(super::sources::SourcesAction),
    /// Rebuild projections from the whole log into fresh tables, then swap
    /// them in atomically; queries keep being answered meanwhile.
    Replay(ReplayArgs),
    /// Show each projection's state, checkpoint and lag, or resume one that
    /// a poison event stopped.
    Projections(ProjectionsArgs),
    /// The language model server: check that it works before generating.
    #[command(subcommand)]
    Llm(LlmCommand),
    /// Measure performance against the configured PostgreSQL (in a scratch database).
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

/// `coursegen llm` commands.
#[derive(Debug, Subcommand)]
pub enum LlmCommand {
    /// Send one tiny structured request to the configured server and report
    /// the structured-output mode that works, the model, the latency and
    /// the token usage; or why it does not work (unreachable, 401, model
    /// not found, no structured output at all), with exit code 1.
    Check(LlmCheckArgs),
}

/// The server `coursegen llm check` asks: the settings `serve` uses.
#[derive(Debug, Args)]
pub struct LlmCheckArgs {
    #[command(flatten)]
    pub llm: crate::llm::LlmSettings,
}

/// A course request.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// What the course teaches (1 to 200 characters).
    #[arg(long)]
    pub topic: String,
    /// The requesting user's id (a UUID).
    #[arg(long)]
    pub user: String,
    /// Idempotency key (a UUID): the same user and request id always mean the
    /// same course. A fresh one is generated when omitted.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Number of lessons, 1 to 20.
    #[arg(long, default_value_t = 4)]
    pub lessons: i64,
    /// Audience, e.g. "Grade 8" or "university" (at most 50 characters).
    #[arg(long)]
    pub grade: Option<String>,
    /// Language of the course as a BCP-47 tag, e.g. en, de, pt-BR.
    #[arg(long, default_value = "en")]
    pub language: String,
    /// Restrict sources to this relative path prefix, e.g. "microbiology/".
    #[arg(long)]
    pub source_filter: Option<String>,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    /// Also make subtitles in this language (BCP-47; repeat for more).
    #[arg(long = "subtitle-language")]
    pub subtitle_languages: Vec<String>,
    /// Wait until the course is READY (exit 0) or FAILED (exit 1), showing
    /// progress. A running `coursegen serve` does the generating.
    #[arg(long)]
    pub wait: bool,
    /// How to submit: straight into the database, or as a message on the
    /// AMQP request queue (needs AMQP_URL; `--wait` then follows the replies).
    #[arg(long, value_enum, default_value_t = Via::Db)]
    pub via: Via,
    #[command(flatten)]
    pub amqp: crate::ingress::amqp::AmqpSettings,
}

/// Course metadata, as `submit` and `courses edit` take it.
#[derive(Debug, Args, Default)]
pub struct MetadataArgs {
    /// Who the course is credited to (at most 100 characters).
    #[arg(long)]
    pub author: Option<String>,
    /// A tag (repeat for more, at most 20); normalised to lower case.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// beginner, intermediate or advanced.
    #[arg(long)]
    pub difficulty: Option<String>,
    /// Something learners should know first (repeat for more).
    #[arg(long = "prerequisite")]
    pub prerequisites: Vec<String>,
    /// Something learners can do afterwards (repeat for more).
    #[arg(long = "outcome")]
    pub learning_outcomes: Vec<String>,
}

/// `coursegen courses` actions.
#[derive(Debug, Subcommand)]
pub enum CoursesAction {
    /// Change a course's metadata (records CourseMetadataChanged; the
    /// history shows who changed what). Lists given replace the old ones.
    Edit(EditArgs),
    /// Write a course's subtitles in one language as WebVTT, SRT or JSON:
    /// one lesson to stdout, or every lesson into a directory.
    Subtitles(SubtitlesArgs),
}

/// Which subtitles to write, and how.
#[derive(Debug, Args)]
pub struct SubtitlesArgs {
    /// The course id.
    pub course_id: Uuid,
    /// Language (BCP-47); default: the course's.
    #[arg(long)]
    pub lang: Option<String>,
    /// vtt, srt or json.
    #[arg(long, default_value = "vtt")]
    pub format: String,
    /// Only this lesson (to stdout).
    #[arg(long)]
    pub lesson: Option<i32>,
    /// Write every lesson as `lesson-<n>.<lang>.<format>` into this directory.
    #[arg(long)]
    pub out_dir: Option<std::path::PathBuf>,
}

/// A metadata edit.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The course id.
    pub course_id: Uuid,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    /// The course's language as a BCP-47 tag.
    #[arg(long)]
    pub language: Option<String>,
    /// Who is editing (a user id, kept in the history).
    #[arg(long)]
    pub user: Option<Uuid>,
}

/// The way `submit` sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Record CourseRequested in the database directly.
    Db,
    /// Publish to AMQP_REQUEST_QUEUE, as any AMQP client would.
    Amqp,
}

/// Which course to retry.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The course id.
    pub course_id: Uuid,
    /// Why (kept in the history): at most 500 characters, no control characters.
    #[arg(long)]
    pub reason: Option<String>,
    /// Wait until the course is READY or FAILED again, showing progress.
    #[arg(long)]
    pub wait: bool,
}

/// Which projections to rebuild.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct ReplayArgs {
    /// The projection to rebuild: courses or course_summary.
    #[arg(long)]
    pub projection: Option<String>,
    /// Rebuild every projection (the default).
    #[arg(long)]
    pub all: bool,
}

/// What to do with the projections.
#[derive(Debug, Args)]
pub struct ProjectionsArgs {
    #[command(subcommand)]
    pub action: Option<ProjectionsAction>,
}

/// `coursegen projections` actions.
#[derive(Debug, Subcommand)]
pub enum ProjectionsAction {
    /// State, checkpoint, lag and error of every projection (the default).
    Status,
    /// Clear a projection's failed state: its runner retries the event it
    /// stopped at (after the fix for it is deployed) within seconds. To
    /// rebuild it from the log instead, use `coursegen replay`.
    Resume {
        /// The projection: courses, course_summary or amqp_replies.
        name: String,
    },
}

/// Which course's history to show.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The course id printed by `submit`.
    pub course_id: Uuid,
    /// One JSON object per event (all columns) instead of the timeline.
    #[arg(long)]
    pub json: bool,
}
