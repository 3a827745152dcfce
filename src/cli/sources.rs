//! `coursegen sources`: a user's source library from the command line: add
//! files and folders (recursively, with a progress bar and a summary), list,
//! remove, and search as retrieval does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

use crate::config::DatabaseSettings;
use crate::database::{ClusterHold, Database};
use crate::projections::sources::queries;
use crate::projections::{catch_up, Projection};
use crate::sources::embeddings::EmbeddingsArgs;
use crate::sources::{self, semantic, IngestOutcome, NewSource};
use crate::store::{EventStore, Metadata, Position};

/// How long a command waits for the library to show what it recorded.
const CATCH_UP: Duration = Duration::from_secs(60);

/// `coursegen sources` actions.
#[derive(Debug, Subcommand)]
pub enum SourcesAction {
    /// Add files and folders (recursively) to a user's library: Markdown,
    /// plain text, HTML (its main text) and PDF (its text layer). The same
    /// content at the same path records nothing; changed content is a new
    /// version. Ends with what was added, unchanged, updated and skipped
    /// (each skip with its reason); exit code 1 if anything was skipped.
    Add(AddArgs),
    /// List the documents of a user's library (path, version, chunks, title).
    List(ListArgs),
    /// Remove documents (by path or id) from a user's library. Courses that
    /// cited them keep their citations.
    Rm(RmArgs),
    /// Show what retrieval finds for a query (best chunks first).
    Search(SearchArgs),
}

/// Whose library.
#[derive(Debug, Args)]
pub struct UserArg {
    /// The library's owner (a user id, as in `submit --user`).
    #[arg(long, env = "COURSEGEN_USER")]
    pub user: Uuid,
}

/// Files to add.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Files or folders. A folder's files keep their path inside it, e.g.
    /// `notes/cells.md` of folder `notes` is `cells.md` (under --prefix).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Library folder to put them under, e.g. `microbiology/`.
    #[arg(long, default_value = "")]
    pub prefix: String,
    #[command(flatten)]
    pub user: UserArg,
    /// The documents' language (e.g. en, de); detected from each text when omitted.
    #[arg(long)]
    pub language: Option<String>,
    /// With embeddings configured, each chunk's vector is stored too (also
    /// for unchanged documents lacking one); a file whose chunks cannot be
    /// embedded is skipped, nothing stored.
    #[command(flatten)]
    pub embeddings: EmbeddingsArgs,
}

/// Which documents to list.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only paths starting with this, e.g. `microbiology/`.
    #[arg(long, default_value = "")]
    pub prefix: String,
    #[command(flatten)]
    pub user: UserArg,
}

/// Documents to remove.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Library paths or document ids.
    #[arg(required = true)]
    pub documents: Vec<String>,
    #[command(flatten)]
    pub user: UserArg,
}

/// A query.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words, "quoted phrases", `or`, `-excluded`.
    pub query: String,
    /// Only paths starting with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Most chunks shown.
    #[arg(long, default_value_t = 5)]
    pub limit: i64,
    #[command(flatten)]
    pub user: UserArg,
    /// With embeddings configured, vector hits are fused with the full-text ones.
    #[command(flatten)]
    pub embeddings: EmbeddingsArgs,
}

/// Runs a `sources` action.
///
/// # Errors
/// Bad flags, database errors.
pub(super) async fn run(
    settings: &DatabaseSettings,
    cluster: &ClusterHold,
    action: SourcesAction,
) -> anyhow::Result<ExitCode> {
    match action {
        SourcesAction::Add(args) => add(settings, cluster, args).await,
        SourcesAction::List(args) => {
            let prefix = sources::parse_prefix(&args.prefix)?;
            let db = Database::open(settings, cluster).await?;
            caught_up(&db.store, None).await?;
            let rows = queries::list(db.store.pool(), args.user.user, &prefix).await?;
            if rows.is_empty() {
                eprintln!("no documents{}", under(&prefix));
            }
            for r in rows {
                println!(
                    "{}\t{}\tv{}\t{}\t{}",
                    r.id,
                    r.path,
                    r.version,
                    chunk_count(usize::try_from(r.chunk_count).unwrap_or(0)),
                    r.title
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SourcesAction::Rm(args) => rm(settings, cluster, args).await,
        SourcesAction::Search(args) => {
            let prefix = sources::parse_prefix(&args.prefix)?;
            let embedder = args.embeddings.embedder()?;
            let db = Database::open(settings, cluster).await?;
            caught_up(&db.store, None).await?;
            let hits = semantic::search(
                db.store.pool(),
                embedder.as_ref(),
                args.user.user,
                &args.query,
                &args.query,
                &prefix,
                args.limit.clamp(1, 100),
            )
            .await?;
            if hits.is_empty() {
                eprintln!("nothing found{}", under(&prefix));
            }
            for h in hits {
                let place = match (h.page, h.heading_path.is_empty()) {
                    (Some(p), _) => format!("page {p}"),
                    (None, false) => h.heading_path.join(" > "),
                    (None, true) => String::new(),
                };
                let passage: String = h.text.split_whitespace().collect::<Vec<_>>().join(" ");
                let passage: String = passage.chars().take(160).collect();
                println!(
                    "{:.3}\t{} v{}\t{}\t{}\n\t{}",
                    h.score, h.path, h.version, place, h.chunk_id, passage
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn under(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!(" under {prefix}")
    }
}

/// Waits until the library shows everything up to `position` (the log's end when `None`).
async fn caught_up(store: &EventStore, position: Option<Position>) -> anyhow::Result<()> {
    let position = match position {
        Some(p) => p,
        None => {
            let client = store.pool().get().await?;
            let row = client
                .query_opt(
                    "SELECT transaction_id::text::bigint, global_position FROM events
                     WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
                     ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
                    &[],
                )
                .await?;
            match row {
                Some(row) => Position {
                    transaction_id: row.get(0),
                    global_position: row.get(1),
                },
                None => Position::START,
            }
        }
    };
    if position == Position::START {
        return Ok(());
    }
    catch_up(store, Projection::Sources, position, CATCH_UP)
        .await
        .context("bringing the library up to date")
}

/// Every file under `path` (itself if a file), with its path inside the folder given.
fn files(path: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![(path.to_owned(), name)]);
    }
    let mut out = Vec::new();
    let mut stack = vec![(path.to_owned(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type()?.is_dir() {
                stack.push((e.path(), child_rel));
            } else {
                out.push((e.path(), child_rel));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

async fn add(
    settings: &DatabaseSettings,
    cluster: &ClusterHold,
    args: AddArgs,
) -> anyhow::Result<ExitCode> {
    let prefix = sources::parse_prefix(&args.prefix)?;
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix
    } else {
        format!("{prefix}/")
    };
    if let Some(l) = &args.language {
        sources::parse_language(l)?;
    }
    let embedder = args.embeddings.embedder()?;
    let mut todo = Vec::new();
    let mut skipped: Vec<(String, String)> = Vec::new();
    for p in &args.paths {
        match files(p) {
            Ok(found) => todo.extend(found),
            Err(e) => skipped.push((p.display().to_string(), format!("cannot read: {e}"))),
        }
    }
    let db = Database::open(settings, cluster).await?;
    let bar = ProgressBar::new(todo.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} files {msg}").expect("static template"),
    );
    let (mut added, mut updated, mut unchanged) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    let metadata = Metadata {
        user_id: Some(args.user.user),
        ..Metadata::producer("cli")
    };
    for (file, rel) in todo {
        bar.set_message(rel.clone());
        let library_path = format!("{prefix}{rel}");
        let outcome = match tokio::fs::read(&file).await {
            Err(e) => Err(format!("cannot read: {e}")),
            Ok(bytes) => sources::ingest_with(
                &db.store,
                embedder.as_ref(),
                &NewSource {
                    user_id: args.user.user,
                    path: &library_path,
                    bytes: &bytes,
                    media_type: None,
                    language: args.language.as_deref(),
                    title: None,
                },
                &metadata,
            )
            .await
            .map_err(|e| {
                if e.is_rejection() {
                    e.to_string()
                } else {
                    format!("not stored: {e}")
                }
            }),
        };
        match outcome {
            Ok(o) => {
                if let Some(a) = o.appended() {
                    last = Some(a.position);
                }
                match o {
                    IngestOutcome::Added {
                        version, chunks, ..
                    } => added.push(format!(
                        "{library_path} (v{version}, {})",
                        chunk_count(chunks)
                    )),
                    IngestOutcome::Updated {
                        version, chunks, ..
                    } => updated.push(format!(
                        "{library_path} (v{version}, {})",
                        chunk_count(chunks)
                    )),
                    IngestOutcome::Unchanged { version, .. } => {
                        unchanged.push(format!("{library_path} (v{version})"))
                    }
                }
            }
            Err(reason) => skipped.push((file.display().to_string(), reason)),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if last.is_some() {
        caught_up(&db.store, last).await?;
    }
    for (label, items) in [
        ("added", &added),
        ("updated", &updated),
        ("unchanged", &unchanged),
    ] {
        for i in items.iter() {
            println!("{label}\t{i}");
        }
    }
    for (file, reason) in &skipped {
        println!("skipped\t{file}: {reason}");
    }
    eprintln!(
        "{} added, {} updated, {} unchanged, {} skipped",
        added.len(),
        updated.len(),
        unchanged.len(),
        skipped.len()
    );
    Ok(if skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn rm(
    settings: &DatabaseSettings,
    cluster: &ClusterHold,
    args: RmArgs,
) -> anyhow::Result<ExitCode> {
    let db = Database::open(settings, cluster).await?;
    caught_up(&db.store, None).await?;
    let user = args.user.user;
    let mut missing = 0;
    let mut last = None;
    let metadata = Metadata {
        user_id: Some(user),
        ..Metadata::producer("cli")
    };
    for d in &args.documents {
        let row = match Uuid::parse_str(d) {
            Ok(id) => queries::get(db.store.pool(), user, id).await?,
            Err(_) => match sources::parse_path(d) {
                Ok(p) => queries::by_path(db.store.pool(), user, &p).await?,
                Err(e) => {
                    eprintln!("{e}");
                    missing += 1;
                    continue;
                }
            },
        };
        let Some(row) = row else {
            eprintln!("{d}: no such document in this user's library");
            missing += 1;
            continue;
        };
        match sources::remove(&db.store, user, row.id, &row.path, &metadata).await? {
            Some(a) => {
                last = Some(a.position);
                println!("removed\t{}", row.path);
            }
            None => {
                eprintln!("{d}: already removed");
                missing += 1;
            }
        }
    }
    if last.is_some() {
        caught_up(&db.store, last).await?;
    }
    Ok(if missing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// "1 chunk", "4 chunks".
fn chunk_count(n: usize) -> String {
    if n == 1 {
        "1 chunk".to_owned()
    } else {
        format!("{n} chunks")
    }
}
