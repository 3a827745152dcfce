//! The command line: `coursegen <command>`; see `coursegen --help`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::config::{DatabaseSettings, LogSettings};
use crate::database::Database;
use crate::domain::{CourseEvent, CourseRequest, RawCourseRequest};
use crate::projections::{replay, Projection};
use crate::store::courses::{self, Submitted};
use crate::store::{Metadata, RecordedEvent};

/// Turn a topic into a complete online course with a language model.
///
/// Every step of every course is an event in PostgreSQL. With no
/// DATABASE_URL, coursegen starts a private PostgreSQL cluster under
/// .coursegen/pg using this machine's PostgreSQL binaries.
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

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Create or update the database schema (every other command does this too).
    Migrate,
    /// Request a course: records CourseRequested and prints the course id.
    ///
    /// The course id is derived from (user, request id): submitting the same
    /// request again prints the same id and records nothing new.
    Submit(SubmitArgs),
    /// Show a course's history: every event of its stream, oldest first.
    Events(EventsArgs),
    /// Rebuild projections from the whole log into fresh tables, then swap
    /// them in atomically; queries keep being answered meanwhile.
    Replay(ReplayArgs),
    /// Measure performance against the configured PostgreSQL (in a scratch database).
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
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

/// Which course's history to show.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The course id printed by `submit`.
    pub course_id: Uuid,
    /// One JSON object per event (all columns) instead of the timeline.
    #[arg(long)]
    pub json: bool,
}

/// Runs the parsed command.
///
/// # Errors
/// Whatever stopped the command; `main` prints it on one line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Commands::Migrate => {
            Database::open(&cli.database).await?;
            eprintln!("database schema is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Commands::Submit(args) => submit(&cli.database, args).await,
        Commands::Events(args) => events(&cli.database, args).await,
        Commands::Replay(args) => replay(&cli.database, args).await,
        Commands::Bench(cmd) => crate::bench::run(&cli.database, cmd).await,
    }
}

async fn submit(settings: &DatabaseSettings, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let request = CourseRequest::parse(RawCourseRequest {
        request_id: Some(
            args.request_id
                .unwrap_or_else(|| Uuid::new_v4().to_string()),
        ),
        user_id: Some(args.user),
        topic: Some(args.topic),
        grade_level: args.grade,
        num_lessons: Some(args.lessons),
        language: Some(args.language),
        source_filter: args.source_filter,
    })
    .map_err(|e| anyhow::anyhow!("invalid request: {e}"))?;
    let db = Database::open(settings).await?;
    let (id, outcome) = courses::submit(&db.store, request, Metadata::producer("cli")).await?;
    match outcome {
        Submitted::Created(_) => eprintln!("course requested"),
        Submitted::Duplicate => {
            eprintln!("this request was already submitted; nothing new recorded")
        }
    }
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

async fn replay(settings: &DatabaseSettings, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let projections = match &args.projection {
        Some(name) => vec![Projection::parse(name)?],
        None => Projection::ALL.to_vec(),
    };
    let db = Database::open(settings).await?;
    let reports = replay::replay_all(&db.store, &projections, true)
        .await
        .context("replaying the log")?;
    for report in reports {
        eprintln!(
            "{}: {} events in {:.1} s ({:.0} events/s), checkpoint {}/{}",
            report.projection,
            report.events,
            report.elapsed.as_secs_f64(),
            report.events as f64 / report.elapsed.as_secs_f64().max(1e-9),
            report.checkpoint.transaction_id,
            report.checkpoint.global_position
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn events(settings: &DatabaseSettings, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let db = Database::open(settings).await?;
    let events = db.store.read_stream(args.course_id).await?;
    if events.is_empty() {
        anyhow::bail!("no course with id {}", args.course_id);
    }
    let mut out = std::io::stdout().lock();
    for e in &events {
        if args.json {
            serde_json::to_writer(&mut out, e)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "v{:<3} {}  {:<18} {}",
                e.stream_version,
                e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                e.event_type,
                summary(e)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A one-line human summary of an event's payload.
pub fn summary(e: &RecordedEvent) -> String {
    let Ok(event) = e.to_course_event() else {
        return format!("(unreadable payload, event_version {})", e.event_version);
    };
    match event {
        CourseEvent::CourseRequested(r) => format!(
            "{:?}, {} lessons, {}{}, user {}",
            r.topic,
            r.num_lessons,
            r.language,
            r.grade_level.map(|g| format!(", {g}")).unwrap_or_default(),
            r.user_id
        ),
        CourseEvent::GenerationStarted(s) => format!("attempt {} with {}", s.attempt, s.model),
        CourseEvent::OutlineGenerated(o) => format!(
            "{:?}, {} lessons planned, {} tokens",
            o.title,
            o.lessons.len(),
            o.usage.total_tokens
        ),
        CourseEvent::LessonGenerated(l) => format!(
            "lesson {}: {:?}, {} chars, {} quiz questions, {} tokens",
            l.number,
            l.title,
            l.content_md.chars().count(),
            l.quiz.len(),
            l.usage.total_tokens
        ),
        CourseEvent::CourseCompleted(c) => {
            format!(
                "{} lessons, {} tokens in all",
                c.total_lessons, c.usage.total_tokens
            )
        }
        CourseEvent::CourseFailed(f) => format!(
            "at {}: {}{}",
            f.step,
            f.error,
            if f.retryable { " (retryable)" } else { "" }
        ),
        CourseEvent::GenerationRetried(r) => r.reason.unwrap_or_else(|| "retry".into()),
        CourseEvent::CourseDeleted(d) => d.reason.unwrap_or_else(|| "deleted".into()),
        CourseEvent::CourseRestored(_) => "restored".into(),
    }
}
