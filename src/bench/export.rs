//! `coursegen bench export`: the file backup and the packages of N courses,
//! each beside a baseline from the same run: the backup's rebuild beside
//! writing the same bytes with the same atomic discipline (so the ratio is
//! what loading and rendering add to the file system's cost), and SCORM
//! zips built in memory beside only loading the courses they are built from.

use std::time::{Duration, Instant};

use clap::Args;
use uuid::Uuid;

use super::ScratchDatabase;
use crate::export::backup::{self, BackupDir};
use crate::export::{self, backup_files, ExportFormat};
use crate::projections::{replay, Projection};

/// Options of `bench export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// READY courses of 3 lessons each.
    #[arg(long, default_value_t = 500)]
    pub courses: u32,
}

/// `bench export`: fills the log, projects it, then times the backup and the packages.
pub(super) async fn run(scratch: &ScratchDatabase, args: &ExportArgs) -> anyhow::Result<()> {
    let store = scratch.store(4);
    let written = super::replay::fill_log(&store, args.courses).await?;
    let client = store.pool().get().await?;
    // The log is read below the cluster's oldest running transaction: a
    // long one elsewhere on the server (another database's) holds it back.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let readable: i64 = client
            .query_one(
                "SELECT count(*) FROM events WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())",
                &[],
            )
            .await?
            .get(0);
        if u64::try_from(readable).unwrap_or(0) >= written {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the log stayed behind a long transaction on the server for 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    replay::replay(&store, Projection::Courses, false).await?;
    let ids: Vec<Uuid> = client
        .query("SELECT id FROM courses ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    println!("bench export: {} READY courses", ids.len());

    // Loading only: the SQL every export runs.
    let t = Instant::now();
    let mut courses = Vec::with_capacity(ids.len());
    for id in &ids {
        courses.extend(export::load(&client, *id).await?);
    }
    let load = t.elapsed();

    // SCORM 1.2 zips, loaded, rendered and compressed in memory.
    let t = Instant::now();
    let mut bytes = 0usize;
    for id in &ids {
        if let Some(course) = export::load(&client, *id).await? {
            let files = ExportFormat::Scorm12.files(&course);
            bytes += export::archive::write_zip(&files, course.updated_at, Vec::new())?.len();
        }
    }
    let scorm = t.elapsed();
    drop(client);

    let root = std::env::temp_dir().join(format!("coursegen-bench-export-{}", Uuid::new_v4()));
    // Baseline: the same backup files, already rendered, written atomically.
    let files: Vec<_> = courses
        .iter()
        .map(|c| (c.slug.clone(), backup_files(c)))
        .collect();
    let raw_root = root.join("raw");
    let t = Instant::now();
    let dir = BackupDir::new(raw_root.clone());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        for (slug, files) in &files {
            dir.write(slug, files)?;
        }
        Ok(())
    })
    .await??;
    let raw = t.elapsed();

    let t = Instant::now();
    let report = backup::rebuild(
        &store,
        root.join("backup"),
        &indicatif::ProgressBar::hidden(),
    )
    .await?;
    let rebuild = t.elapsed();
    std::fs::remove_dir_all(&root)?;

    let per_s = |d: Duration| ids.len() as f64 / d.as_secs_f64().max(1e-9);
    println!(
        "  load only            {:>8.2} s  {:>8.0} courses/s",
        load.as_secs_f64(),
        per_s(load)
    );
    println!(
        "  SCORM zips (memory)  {:>8.2} s  {:>8.0} courses/s, {:.1} KB each, ratio to load {:.2}",
        scorm.as_secs_f64(),
        per_s(scorm),
        bytes as f64 / ids.len().max(1) as f64 / 1024.0,
        scorm.as_secs_f64() / load.as_secs_f64().max(1e-9)
    );
    println!(
        "  raw atomic writes    {:>8.2} s  {:>8.0} courses/s",
        raw.as_secs_f64(),
        per_s(raw)
    );
    println!(
        "  backup rebuild       {:>8.2} s  {:>8.0} courses/s ({} written), ratio to raw writes {:.2}",
        rebuild.as_secs_f64(),
        per_s(rebuild),
        report.written,
        rebuild.as_secs_f64() / raw.as_secs_f64().max(1e-9)
    );
    Ok(())
}
