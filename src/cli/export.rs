//! `coursegen export`: READY courses as zips in a directory, and the file
//! backup's rebuild that `coursegen replay` runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

use super::args::ExportArgs;
use crate::config::DatabaseSettings;
use crate::database::{ClusterHold, Database};
use crate::domain::CourseStatus;
use crate::export::{self, archive, backup, CourseExport};
use crate::store::EventStore;

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix:>12}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {what} ETA {{eta}}"
        ))
        .expect("valid template"),
    );
    bar
}

/// Loads course `id` for export, refusing what is not READY or deleted.
async fn exportable(client: &deadpool_postgres::Client, id: Uuid) -> anyhow::Result<CourseExport> {
    let course = export::load(client, id)
        .await?
        .with_context(|| format!("no course with id {id}"))?;
    if course.deleted_at.is_some() {
        anyhow::bail!(
            "course {id} was deleted restore it first: POST /api/v1/courses/{id}/restore"
        );
    }
    if course.status != CourseStatus::Ready {
        anyhow::bail!(
            "course {id} is {}: only READY courses are exported",
            course.status
        );
    }
    Ok(course)
}

/// Writes the package to `dir`, through a temporary file renamed into place.
fn write_package(
    dir: &Path,
    name: &str,
    files: &[export::PackageFile],
    modified: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", Uuid::new_v4().simple()));
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let written = archive::write_zip(files, modified, std::io::BufWriter::new(file))
        .map_err(anyhow::Error::from)
        .and_then(|w| Ok(w.into_inner().map_err(|e| e.into_error())?.sync_all()?))
        .and_then(|()| Ok(std::fs::rename(&tmp, &path)?));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", path.display())));
    }
    Ok(path)
}

pub(super) async fn export(
    settings: &DatabaseSettings,
    cluster: &ClusterHold,
    args: ExportArgs,
) -> anyhow::Result<ExitCode> {
    let db = Database::open(settings, cluster).await?;
    let client = db.store.pool().get().await?;
    let ids: Vec<Uuid> = if args.all {
        client
            .query(
                "SELECT id FROM courses WHERE status = $1 AND deleted_at IS NULL ORDER BY created_at, id",
                &[&CourseStatus::Ready],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        args.course_ids.clone()
    };
    // Every named course checked before anything is written.
    if !args.all {
        for id in &ids {
            exportable(&client, *id).await?;
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let progress = if args.all {
        let b = bar(ids.len() as u64, "courses");
        b.set_prefix(args.format.as_str());
        b
    } else {
        ProgressBar::hidden()
    };
    for id in ids {
        let course = exportable(&client, id).await?;
        let name = args.format.archive_name(&course.slug);
        let files = args.format.files(&course);
        let (out, modified) = (args.out.clone(), course.updated_at);
        let path =
            tokio::task::spawn_blocking(move || write_package(&out, &name, &files, modified))
                .await??;
        progress.suspend(|| println!("{}", path.display()));
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok(ExitCode::SUCCESS)
}

/// Rebuilds the file backup under `dir`, with a progress bar.
pub(super) async fn rebuild_backup(store: &EventStore, dir: &Path) -> anyhow::Result<()> {
    let progress = bar(0, "courses");
    progress.set_prefix(backup::NAME);
    let report = backup::rebuild(store, dir.to_path_buf(), &progress)
        .await
        .with_context(|| format!("rebuilding the file backup in {}", dir.display()))?;
    progress.finish_and_clear();
    eprintln!(
        "{}: course directories written: {}, moved to .deleted/: {}",
        backup::NAME,
        report.written,
        report.moved_away
    );
    Ok(())
}
