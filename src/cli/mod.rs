//! The command line: `coursegen <command>`; see `coursegen --help`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::config::{DatabaseSettings, LogSettings};
use crate::database::Database;
use crate::domain::{
    Command, CourseEvent, CourseRequest, CourseStatus, DomainError, RawCourseRequest,
};
use crate::projections::{replay, Projection};
use crate::store::courses::{self, CommandError, Submitted};
use crate::store::subscription::Notifier;
use crate::store::{EventStore, Metadata, RecordedEvent};

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
    /// Run the service: generate every queued course (and resume any left
    /// half-done) until SIGINT/SIGTERM. Several `serve` processes on one
    /// database share the work.
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
    /// Re-open a FAILED course: generation resumes at the first missing step
    /// (steps already recorded are kept, their tokens not paid again).
    Retry(RetryArgs),
    /// Rebuild projections from the whole log into fresh tables, then swap
    /// them in atomically; queries keep being answered meanwhile.
    Replay(ReplayArgs),
    /// Show each projection's state, checkpoint and lag, or resume one that
    /// a poison event stopped.
    Projections(ProjectionsArgs),
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
    /// Why (kept in the history).
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
        /// The projection: courses or course_summary.
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

/// Runs the parsed command.
///
/// # Errors
/// Whatever stopped the command; `main` prints it on one line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Commands::Serve(args) => {
            let db = Database::open(&cli.database).await?;
            let mut app = crate::app::Application::build(db.store.clone(), &args)?;
            app.start_http(&args.http).await?;
            tracing::info!("coursegen is running; stop it with Ctrl-C or SIGTERM");
            app.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Commands::Retry(args) => retry(&cli.database, args).await,
        Commands::Migrate => {
            Database::open(&cli.database).await?;
            eprintln!("database schema is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Commands::Submit(args) => submit(&cli.database, args).await,
        Commands::Events(args) => events(&cli.database, args).await,
        Commands::Replay(args) => replay(&cli.database, args).await,
        Commands::Projections(args) => projections_command(&cli.database, args).await,
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
    if args.via == Via::Amqp {
        return crate::ingress::amqp::client::submit(&args.amqp, &request, args.wait).await;
    }
    let db = Database::open(settings).await?;
    let (id, outcome) = courses::submit(&db.store, request, Metadata::producer("cli")).await?;
    match outcome {
        Submitted::Created(_) => eprintln!("course requested"),
        Submitted::Duplicate => {
            eprintln!("this request was already submitted; nothing new recorded")
        }
    }
    println!("{id}");
    if args.wait {
        return wait_for_course(&db.store, id).await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn retry(settings: &DatabaseSettings, args: RetryArgs) -> anyhow::Result<ExitCode> {
    let db = Database::open(settings).await?;
    let command = Command::Retry {
        reason: args.reason,
    };
    match courses::execute(
        &db.store,
        args.course_id,
        command,
        &Metadata::producer("cli"),
    )
    .await
    {
        Ok(_) => eprintln!(
            "course {} re-queued; generation resumes at the first missing step",
            args.course_id
        ),
        Err(CommandError::Rejected(DomainError::NotFound)) => {
            anyhow::bail!("no course with id {}", args.course_id)
        }
        Err(CommandError::Rejected(e)) => {
            anyhow::bail!("cannot retry course {}: {e}", args.course_id)
        }
        Err(e) => return Err(e.into()),
    }
    if args.wait {
        return wait_for_course(&db.store, args.course_id).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Shows a progress bar (lessons done / planned) until the course is READY
/// (success) or FAILED (failure, with the reason).
async fn wait_for_course(store: &EventStore, id: Uuid) -> anyhow::Result<ExitCode> {
    let notifier = Notifier::start(store.config().clone());
    let mut wakeups = notifier.wakeups();
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} lessons  {msg}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    loop {
        let (course, _) = courses::load(store, id).await?;
        bar.set_length(u64::from(course.planned_lessons()));
        bar.set_position(course.lessons_done.len() as u64);
        let title = course
            .outline
            .as_ref()
            .map(|o| o.title.as_str())
            .unwrap_or("");
        match course.status {
            Some(CourseStatus::Ready) => {
                bar.finish_with_message(format!("READY: {title}"));
                eprintln!("course {id} is READY: {title}");
                return Ok(ExitCode::SUCCESS);
            }
            Some(CourseStatus::Failed) => {
                bar.abandon_with_message("FAILED");
                let failure = course.failure.expect("a failed course has its failure");
                eprintln!("course failed at {}: {}", failure.step, failure.error);
                if failure.retryable {
                    eprintln!("this may pass on a retry: coursegen retry {id}");
                }
                return Ok(ExitCode::FAILURE);
            }
            Some(CourseStatus::Queued) => bar.set_message("QUEUED (waiting for `coursegen serve`)"),
            _ => bar.set_message(format!("GENERATING {title}")),
        }
        tokio::select! {
            _ = wakeups.changed() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
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

async fn projections_command(
    settings: &DatabaseSettings,
    args: ProjectionsArgs,
) -> anyhow::Result<ExitCode> {
    let db = Database::open(settings).await?;
    match args.action.unwrap_or(ProjectionsAction::Status) {
        ProjectionsAction::Status => {
            let mut healthy = true;
            println!(
                "{:<16} {:<8} {:>20} {:>11} {:>9}  error",
                "projection", "state", "checkpoint (tx/pos)", "lag events", "lag s"
            );
            for p in Projection::ALL {
                let cp = crate::projections::checkpoint(&db.store, p.name()).await?;
                let lag = crate::projections::lag(&db.store, p.name()).await?;
                let (state, position, error) = match &cp {
                    Some(c) => (
                        c.state.as_str(),
                        format!(
                            "{}/{}",
                            c.position.transaction_id, c.position.global_position
                        ),
                        c.error.as_deref().unwrap_or(""),
                    ),
                    None => ("new", "-".to_owned(), ""),
                };
                healthy &= state != "failed";
                println!(
                    "{:<16} {:<8} {:>20} {:>11} {:>9.1}  {}",
                    p.name(),
                    state,
                    position,
                    lag.events,
                    lag.seconds,
                    error
                );
            }
            Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ProjectionsAction::Resume { name } => {
            let projection = Projection::parse(&name)?;
            if crate::projections::resume(&db.store, projection).await? {
                eprintln!("{projection}: resumed; its runner retries the event it stopped at");
            } else {
                eprintln!("{projection} has not failed: nothing to resume");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
