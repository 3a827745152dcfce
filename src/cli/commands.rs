//! What each command does: open the database (or the broker), act, and say
//! what happened; the exit code tells scripts how it ended.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};
use uuid::Uuid;

use super::args::{
    Cli, Commands, CoursesAction, EditArgs, EventsArgs, LlmCommand, ProjectionsAction,
    ProjectionsArgs, ReplayArgs, RetryArgs, SubmitArgs, Via,
};
use super::output::{self, CourseProgress, ReplyProgress};
use crate::config::DatabaseSettings;
use crate::database::{ClusterHold, Database};
use crate::domain::{
    course_id, Command, CourseRequest, DomainError, MetadataChange, RawCourseRequest,
    RawMetadataChange, Reason,
};
use crate::ingress::amqp::{self, client, AmqpError, AmqpSettings};
use crate::projections::{replay, CheckpointState, Projection};
use crate::store::courses::{self, CommandError, Submitted};
use crate::store::subscription::{Notifier, Waiter};
use crate::store::{EventStore, Metadata};

/// Runs the parsed command, then gives up this process's hold on the
/// private cluster (stopping it if no other process holds it), however the
/// command ended: done, failed, or interrupted by SIGINT/SIGTERM.
///
/// # Errors
/// Whatever stopped the command; `main` prints it on one line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cluster = ClusterHold::default();
    let mut interrupt = Interrupt::listen()?;
    let result = match cli.command {
        Commands::Serve(args) => serve(&cli.database, &cluster, args, &mut interrupt).await,
        command => tokio::select! {
            result = dispatch(&cli.database, &cluster, command) => result,
            signal = interrupt.recv() => {
                eprintln!("{}: stopped", signal.name);
                Ok(signal.exit_code())
            }
        },
    };
    cluster.release().await;
    result
}

/// `serve`: starts everything, runs until SIGINT, SIGTERM or SIGHUP, stops
/// cleanly. A signal during the start ends it at once.
async fn serve(
    settings: &DatabaseSettings,
    cluster: &ClusterHold,
    args: crate::app::ServeArgs,
    interrupt: &mut Interrupt,
) -> anyhow::Result<ExitCode> {
    let started = async {
        let db = Database::open(settings, cluster).await?;
        let mut app = crate::app::Application::build(db.store.clone(), &args)?;
        app.start_http(&args.http).await?;
        anyhow::Ok((db, app))
    };
    let (_db, app) = tokio::select! {
        started = started => started?,
        signal = interrupt.recv() => return Ok(signal.exit_code()),
    };
    tracing::info!("coursegen is running; stop it with Ctrl-C or SIGTERM");
    let signal = interrupt.recv().await;
    tracing::info!("{}: shutting down", signal.name);
    app.stop().await;
    Ok(ExitCode::SUCCESS)
}

async fn dispatch(
    settings: &DatabaseSettings,
    cluster: &ClusterHold,
    command: Commands,
) -> anyhow::Result<ExitCode> {
    match command {
        Commands::Serve(_) => unreachable!("run starts serve itself"),
        Commands::Retry(args) => retry(settings, cluster, args).await,
        Commands::Migrate => {
            Database::open(settings, cluster).await?;
            eprintln!("database schema is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Commands::Submit(args) => submit(settings, cluster, args).await,
        Commands::Events(args) => events(settings, cluster, args).await,
        Commands::Courses(CoursesAction::Edit(args)) => edit(settings, cluster, args).await,
        Commands::Courses(CoursesAction::Subtitles(args)) => {
            super::subtitles::write(settings, cluster, args).await
        }
        Commands::Sources(action) => super::sources::run(settings, cluster, action).await,
        Commands::Replay(args) => replay(settings, cluster, args).await,
        Commands::Projections(args) => projections_command(settings, cluster, args).await,
        Commands::Llm(LlmCommand::Check(args)) => Ok(llm_check(&args.llm).await),
        Commands::Bench(cmd) => crate::bench::run(settings, cluster, cmd).await,
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

/// SIGINT (Ctrl-C), SIGTERM or SIGHUP (the terminal closed). Listening
/// starts when it is made, so a command stopped at any moment still
/// releases the private cluster rather than dying with it running.
struct Interrupt {
    int: Signal,
    term: Signal,
    hup: Signal,
}

/// The signal an [`Interrupt`] received.
struct Received {
    name: &'static str,
    number: i32,
}

impl Received {
    /// 128 + the signal's number, as a shell reports a command it ended.
    fn exit_code(&self) -> ExitCode {
        ExitCode::from(128 + self.number as u8)
    }
}

impl Interrupt {
    fn listen() -> anyhow::Result<Self> {
        let listen = |kind| signal(kind).context("installing the signal handlers");
        Ok(Self {
            int: listen(SignalKind::interrupt())?,
            term: listen(SignalKind::terminate())?,
            hup: listen(SignalKind::hangup())?,
        })
    }

    /// Waits for one of the signals.
    async fn recv(&mut self) -> Received {
        let (name, number) = tokio::select! {
            _ = self.int.recv() => ("SIGINT", libc::SIGINT),
            _ = self.term.recv() => ("SIGTERM", libc::SIGTERM),
            _ = self.hup.recv() => ("SIGHUP", libc::SIGHUP),
        };
        Received { name, number }
    }
}

async fn submit(
    settings: &DatabaseSettings,
    cluster: &ClusterHold,
    args: SubmitArgs,
) -> anyhow::Result<ExitCode> {
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
        author: args.metadata.author,
        tags: non_empty(args.metadata.tags),
        difficulty: args.metadata.difficulty,
        prerequisites: non_empty(args.metadata.prerequisites),
        learning_outcomes: non_empty(args.metadata.learning_outcomes),
        subtitle_languages: non_empty(args.subtitle_languages),
    })
    .map_err(|e| anyhow::anyhow!("invalid request: {e}"))?;
    if args.via == Via::Amqp {
        return submit_via_amqp(&args.amqp, &request, args.wait).await;
    }
    let db = Database::open(settings, cluster).await?;
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

/// A repeated flag given at least once.
fn non_empty(items: Vec<String>) -> Option<Vec<String>> {
    (!items.is_empty()).then_some(items)
}

/// `courses edit`: records the metadata change (nothing when it repeats the
/// current values).
async fn edit(
    settings: &DatabaseSettings,
    cluster: &ClusterHold,
    args: EditArgs,
) -> anyhow::Result<ExitCode> {
    let change = MetadataChange::parse(RawMetadataChange {
        author: args.metadata.author,
        tags: non_empty(args.metadata.tags),
        language: args.language,
        difficulty: args.metadata.difficulty,
        prerequisites: non_empty(args.metadata.prerequisites),
        learning_outcomes: non_empty(args.metadata.learning_outcomes),
    })
    .map_err(|e| anyhow::anyhow!("invalid edit: {e}"))?;
    let db = Database::open(settings, cluster).await?;
    let mut metadata = Metadata::producer("cli");
    metadata.user_id = args.user;
    let id = args.course_id;
    match courses::execute(&db.store, id, Command::ChangeMetadata(change), &metadata).await {
        Ok((events, _)) if events.is_empty() => {
            eprintln!("course {id} already has this metadata; nothing recorded")
        }
        Ok(_) => eprintln!("course {id} metadata changed"),
        Err(CommandError::Rejected(DomainError::NotFound)) => {
            anyhow::bail!("no course with id {id}")
        }
        Err(CommandError::Rejected(e)) => anyhow::bail!("cannot edit course {id}: {e}"),
        Err(e) => return Err(e.into()),
    }
    Ok(ExitCode::SUCCESS)
}

async fn retry(
    settings: &DatabaseSettings,
    cluster: &ClusterHold,
    args: RetryArgs,
) -> anyhow::Result<ExitCode> {
    let reason =
        Reason::parse(args.reason).map_err(|e| anyhow::anyhow!("invalid --reason: {e}"))?;
    let db = Database::open(settings, cluster).await?;
    let command = Command::Retry { reason };
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

async fn events(
    settings: &DatabaseSettings,
    cluster: &ClusterHold,
    args: EventsArgs,
) -> anyhow::Result<ExitCode> {
    let db = Database::open(settings, cluster).await?;
    let events = db.store.read_stream(args.course_id).await?;
    if events.is_empty() {
        anyhow::bail!("no course with id {}", args.course_id);
    }
    output::write_events(&mut std::io::stdout().lock(), &events, args.json)?;
    Ok(ExitCode::SUCCESS)
}

async fn replay(
    settings: &DatabaseSettings,
    cluster: &ClusterHold,
    args: ReplayArgs,
) -> anyhow::Result<ExitCode> {
    let projections = match (&args.projection, args.all) {
        (Some(name), false) => vec![Projection::parse(name)?],
        // `--all`, or no projection named (clap refuses both together).
        _ => Projection::ALL.to_vec(),
    };
    let db = Database::open(settings, cluster).await?;
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
    cluster: &ClusterHold,
    args: ProjectionsArgs,
) -> anyhow::Result<ExitCode> {
    let db = Database::open(settings, cluster).await?;
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
