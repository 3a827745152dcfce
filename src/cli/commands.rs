//! What each command does: open the database (or the broker), act, and say
//! what happened; the exit code tells scripts how it ended.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use uuid::Uuid;

use super::args::{
    Cli, Commands, EventsArgs, LlmCommand, ProjectionsAction, ProjectionsArgs, ReplayArgs,
    RetryArgs, SubmitArgs, Via,
};
use super::output::{self, CourseProgress, ReplyProgress};
use crate::config::DatabaseSettings;
use crate::database::Database;
use crate::domain::{course_id, Command, CourseRequest, DomainError, RawCourseRequest};
use crate::ingress::amqp::{self, client, AmqpError, AmqpSettings};
use crate::projections::{replay, CheckpointState, Projection};
use crate::store::courses::{self, CommandError, Submitted};
use crate::store::subscription::{Notifier, Waiter};
use crate::store::{EventStore, Metadata};

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
        Commands::Llm(LlmCommand::Check(args)) => Ok(llm_check(&args.llm).await),
        Commands::Bench(cmd) => crate::bench::run(&cli.database, cmd).await,
    }
}

/// `coursegen llm check`: what works on stdout (exit 0), or why not on
/// stderr (exit 1). Needs no database.
async fn llm_check(settings: &crate::llm::LlmSettings) -> ExitCode {
    use crate::llm::check::{check, CheckOutcome};
    match check(settings).await {
        Ok(CheckOutcome::Offline) => {
            println!(
                "LLM_PROVIDER is offline: courses come from the built-in generator, no server \
                 to check (set LLM_PROVIDER=openai and OPENAI_BASE_URL to use one)"
            );
            ExitCode::SUCCESS
        }
        Ok(CheckOutcome::Works(report)) => {
            println!(
                "works: {} at {}, structured output mode {}, {:.2} s, {} tokens ({} prompt + {} \
                 completion{})",
                report.model,
                settings.openai_base_url,
                report.mode,
                report.latency.as_secs_f64(),
                report.usage.total_tokens,
                report.usage.prompt_tokens,
                report.usage.completion_tokens,
                if report.usage.estimated {
                    ", estimated: the server reported no usage"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("llm check failed: {e}");
            ExitCode::FAILURE
        }
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
        return submit_via_amqp(&args.amqp, &request, args.wait).await;
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

/// `submit --via amqp`: publishes the request as any AMQP client would and
/// prints its course id; with `wait`, follows its replies until `success`
/// (exit 0) or `error` (exit 1).
async fn submit_via_amqp(
    settings: &AmqpSettings,
    request: &CourseRequest,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let url = settings
        .amqp_url
        .as_deref()
        .context("--via amqp needs AMQP_URL (or --amqp-url)")?;
    let connection = amqp::connect(url, "coursegen submit")
        .await
        .context("connecting to RabbitMQ")?;
    let replies = match client::publish(&connection, settings, request, wait).await {
        Ok(replies) => replies,
        Err(AmqpError::Unroutable(queue)) => {
            anyhow::bail!("no queue named {queue:?} took the request")
        }
        Err(AmqpError::Nacked) => anyhow::bail!("RabbitMQ refused the request (nack)"),
        Err(e) => return Err(e.into()),
    };
    let id = course_id(request.user_id, request.request_id);
    eprintln!("request published to {}", settings.amqp_request_queue);
    println!("{id}");
    let code = match replies {
        None => ExitCode::SUCCESS,
        Some(mut replies) => {
            let progress = ReplyProgress::start();
            loop {
                let Some(reply) = replies.next_reply().await.context("reading replies")? else {
                    break progress.broker_closed();
                };
                if let Some(code) = progress.show(id, reply) {
                    break code;
                }
            }
        }
    };
    let _ = connection.close(200, "done").await;
    Ok(code)
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
/// (success) or FAILED (failure, with the reason). Woken by appends, and
/// polling every second (so also when the LISTEN connection is gone).
async fn wait_for_course(store: &EventStore, id: Uuid) -> anyhow::Result<ExitCode> {
    let notifier = Notifier::start(store.config().clone());
    let mut waiter = Waiter::new(
        notifier.wakeups(),
        Duration::from_secs(1),
        Duration::from_millis(5),
    );
    let progress = CourseProgress::start();
    let mut seen = 0;
    loop {
        waiter.reading();
        let (course, events) = courses::load(store, id).await?;
        if let Some(code) = progress.show(id, &course) {
            return Ok(code);
        }
        if events.len() > seen {
            seen = events.len();
            waiter.found();
        }
        waiter.wait().await;
    }
}

async fn events(settings: &DatabaseSettings, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let db = Database::open(settings).await?;
    let events = db.store.read_stream(args.course_id).await?;
    if events.is_empty() {
        anyhow::bail!("no course with id {}", args.course_id);
    }
    output::write_events(&mut std::io::stdout().lock(), &events, args.json)?;
    Ok(ExitCode::SUCCESS)
}

async fn replay(settings: &DatabaseSettings, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let projections = match (&args.projection, args.all) {
        (Some(name), false) => vec![Projection::parse(name)?],
        // `--all`, or no projection named (clap refuses both together).
        _ => Projection::ALL.to_vec(),
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
            for name in checkpointed() {
                let cp = crate::projections::checkpoint(&db.store, name).await?;
                let lag = crate::projections::lag(&db.store, name).await?;
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
                healthy &= cp.as_ref().map(|c| c.state) != Some(CheckpointState::Failed);
                println!(
                    "{:<16} {:<8} {:>20} {:>11} {:>9.1}  {}",
                    name, state, position, lag.events, lag.seconds, error
                );
            }
            Ok(if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ProjectionsAction::Resume { name } => {
            let Some(name) = checkpointed().find(|n| *n == name) else {
                let known: Vec<_> = checkpointed().collect();
                anyhow::bail!("unknown projection {name:?} (known: {})", known.join(", "));
            };
            if crate::projections::resume(&db.store, name).await? {
                eprintln!("{name}: resumed; its runner retries the event it stopped at");
            } else {
                eprintln!("{name} has not failed: nothing to resume");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The names of every checkpointed runner: the read models, then the AMQP
/// reply publisher (which has a checkpoint but no tables to replay).
fn checkpointed() -> impl Iterator<Item = &'static str> {
    Projection::ALL
        .into_iter()
        .map(Projection::name)
        .chain([crate::ingress::amqp::replies::NAME])
}
