//! The file backup: a projector that keeps `EXPORT_DIR/<slug>/` (`course.json`,
//! `README.md`, `NN-<lesson-slug>.md`) in step with every READY course, as the
//! predecessor's `courses/` directory was.
//!
//! - It runs under the projection runner (lock, checkpoint, wake-ups), named
//!   [`NAME`]. A batch is applied once the `courses` projection has applied
//!   it too (it reads the course from there), then the checkpoint moves.
//! - A course directory is written whole into `EXPORT_DIR/.tmp/` and then
//!   renamed into place (an exchange with the old one when there is one), so
//!   `<slug>/` is always a complete export. A crash leaves at most a
//!   directory under `.tmp/`, removed when the runner next starts; the batch
//!   whose checkpoint was not committed is applied again.
//! - Which directory belongs to which course is the `export_backups` table,
//!   written in the batch transaction: a renamed course's old directory is
//!   removed, a deleted course's moved to `EXPORT_DIR/.deleted/<slug>/`, a
//!   restored one written back.
//! - [`rebuild`] (what `coursegen replay` runs) writes every course afresh
//!   and moves away what belongs to none.

use std::collections::HashSet;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::{backup_files, load, PackageFile};
use crate::domain::CourseStatus;
use crate::projections::courses::queries;
use crate::projections::{
    lock_key, wait_for_position, ApplierError, BatchApplier, ProjectionRunner, RunnerOptions,
};
use crate::store::{EventStore, RecordedEvent};

/// The name of the projector's checkpoint row, lock and status.
pub const NAME: &str = "file_backup";

/// Where temporary course directories are written before the rename.
const TMP: &str = ".tmp";
/// Where deleted courses' directories go.
const DELETED: &str = ".deleted";

/// Test fault injection: with this variable set to `n`, the process aborts
/// (as a kill would stop it) after writing `n` files of a course directory.
pub const ABORT_AFTER_FILES: &str = "COURSEGEN_FAULT_EXPORT_ABORT_AFTER_FILES";

/// Longest wait for the `courses` projection to apply a batch.
const COURSES_WAIT: Duration = Duration::from_secs(30);

/// The backup directory and how it is written.
#[derive(Debug, Clone)]
pub struct BackupDir {
    root: PathBuf,
    abort_after: Option<usize>,
}

impl BackupDir {
    /// The backup under `root` (created when missing).
    pub fn new(root: PathBuf) -> Self {
        let abort_after = std::env::var(ABORT_AFTER_FILES)
            .ok()
            .and_then(|v| v.parse().ok());
        Self { root, abort_after }
    }

    /// Creates the directory and clears what an interrupted write left in `.tmp/`.
    fn prepare(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.root.join(DELETED))?;
        let tmp = self.root.join(TMP);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(tmp)
    }

    /// The directory of `slug`, refusing names that would leave the root.
    fn course_dir(&self, slug: &str) -> std::io::Result<PathBuf> {
        if slug.is_empty()
            || slug.starts_with('.')
            || slug.contains(['/', '\\', '\0'])
            || slug.len() > 200
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{slug:?} is no directory name"),
            ));
        }
        Ok(self.root.join(slug))
    }

    /// Writes `files` as `<slug>/`, atomically: complete in `.tmp/`, synced,
    /// then renamed into place.
    ///
    /// # Errors
    /// File system errors (the old directory then stays as it was).
    pub fn write(&self, slug: &str, files: &[PackageFile]) -> std::io::Result<()> {
        let target = self.course_dir(slug)?;
        let tmp = self
            .root
            .join(TMP)
            .join(format!("{slug}.{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&tmp)?;
        for (i, f) in files.iter().enumerate() {
            let path = tmp.join(&f.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut file = std::fs::File::create(&path)?;
            file.write_all(&f.bytes)?;
            file.sync_all()?;
            if self.abort_after == Some(i + 1) {
                tracing::error!("{ABORT_AFTER_FILES} reached: aborting mid-export");
                std::process::abort();
            }
        }
        sync_dir(&tmp)?;
        if target.exists() {
            exchange(&tmp, &target)?;
            std::fs::remove_dir_all(&tmp)?;
        } else {
            std::fs::rename(&tmp, &target)?;
        }
        sync_dir(&self.root)
    }

    /// Removes `.deleted/<slug>/` (the copy of a course restored since).
    fn forget_deleted(&self, slug: &str) -> std::io::Result<()> {
        self.course_dir(slug)?;
        match std::fs::remove_dir_all(self.root.join(DELETED).join(slug)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes `<slug>/` (a renamed course's old directory).
    fn remove(&self, slug: &str) -> std::io::Result<()> {
        let dir = self.course_dir(slug)?;
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Moves `<slug>/` to `.deleted/<slug>/` (replacing an older copy there).
    pub fn move_to_deleted(&self, slug: &str) -> std::io::Result<()> {
        let dir = self.course_dir(slug)?;
        if !dir.exists() {
            return Ok(());
        }
        let target = self.root.join(DELETED).join(slug);
        std::fs::create_dir_all(self.root.join(DELETED))?;
        if target.exists() {
            exchange(&dir, &target)?;
            std::fs::remove_dir_all(&dir)?;
        } else {
            std::fs::rename(&dir, &target)?;
        }
        sync_dir(&self.root)
    }

    /// The course directories there are now (not `.tmp`, `.deleted`).
    fn course_dirs(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_dir() && !name.starts_with('.') {
                out.push(name);
            }
        }
        Ok(out)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Swaps two existing directories in one step (`renameat2` with
/// `RENAME_EXCHANGE`), so the target never is missing or half there; where
/// the file system cannot, moves the old one aside first.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let ca = CString::new(a.as_os_str().as_bytes())?;
    let cb = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths for the duration of the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(e);
    }
    let aside = a.with_extension("old");
    std::fs::rename(b, &aside)?;
    std::fs::rename(a, b)?;
    std::fs::rename(aside, a)
}

/// What one course's change does to the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Write the course as `slug` (and drop the old directory when renamed).
    Write { slug: String },
    /// Move the directory to `.deleted/`.
    Delete { slug: String },
    /// Nothing to do (not READY yet, or not exported and deleted).
    Keep,
}

fn action(status: CourseStatus, deleted: bool, slug: &str, exported: Option<&str>) -> Action {
    match (deleted, exported) {
        (true, Some(old)) => Action::Delete {
            slug: old.to_owned(),
        },
        (true, None) => Action::Keep,
        (false, _) if status == CourseStatus::Ready => Action::Write {
            slug: slug.to_owned(),
        },
        (false, _) => Action::Keep,
    }
}

fn sink<E: std::error::Error + Send + Sync + 'static>(e: E) -> ApplierError {
    ApplierError::Sink(Box::new(e))
}

/// A change of `export_backups` a synced course asks for.
#[derive(Debug)]
enum IndexChange {
    /// The course's directory is now `slug`.
    Set(Uuid, String),
    /// The course has no directory any more.
    Remove(Uuid),
}

/// Brings the backup of course `id` in line with the read model; returns
/// the change of `export_backups` that records it. Reads only through `tx`:
/// the batch's writes all come at its end, so that the transaction holds no
/// transaction id (which would hold back every reader's commit horizon)
/// while files are written.
async fn sync_course(
    store: &EventStore,
    tx: &Transaction<'_>,
    dir: &BackupDir,
    id: Uuid,
) -> Result<Option<IndexChange>, ApplierError> {
    let client = store.pool().get().await.map_err(sink)?;
    let Some(record) = queries::course(&client, id).await.map_err(sink)? else {
        return Ok(None);
    };
    let exported: Option<String> = tx
        .query_opt(
            "SELECT slug FROM export_backups WHERE course_id = $1",
            &[&id],
        )
        .await
        .map_err(sink)?
        .map(|r| r.get(0));
    match action(
        record.status,
        record.deleted_at.is_some(),
        &record.slug,
        exported.as_deref(),
    ) {
        Action::Keep => Ok(None),
        Action::Delete { slug } => {
            let d = dir.clone();
            blocking(move || d.move_to_deleted(&slug)).await?;
            Ok(Some(IndexChange::Remove(id)))
        }
        Action::Write { slug } => {
            let Some(course) = load(&client, id).await.map_err(sink)? else {
                return Ok(None);
            };
            drop(client);
            let files = backup_files(&course);
            let d = dir.clone();
            let (new, old) = (slug.clone(), exported.filter(|old| *old != slug));
            blocking(move || {
                d.write(&new, &files)?;
                d.forget_deleted(&new)?;
                match old {
                    Some(old) => d.remove(&old),
                    None => Ok(()),
                }
            })
            .await?;
            Ok(Some(IndexChange::Set(id, slug)))
        }
    }
}

/// Writes the batch's changes of `export_backups`.
async fn record(tx: &Transaction<'_>, changes: &[IndexChange]) -> Result<(), ApplierError> {
    for change in changes {
        match change {
            IndexChange::Set(id, slug) => tx
                .execute(
                    "INSERT INTO export_backups (course_id, slug, exported_at) VALUES ($1, $2, now())
                     ON CONFLICT (course_id) DO UPDATE SET slug = $2, exported_at = now()",
                    &[id, slug],
                )
                .await
                .map_err(sink)?,
            IndexChange::Remove(id) => tx
                .execute("DELETE FROM export_backups WHERE course_id = $1", &[id])
                .await
                .map_err(sink)?,
        };
    }
    Ok(())
}

async fn blocking(
    f: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> Result<(), ApplierError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(sink)?
        .map_err(sink)
}

/// The projector's applier.
struct Backup {
    store: EventStore,
    dir: BackupDir,
}

#[async_trait]
impl BatchApplier for Backup {
    fn name(&self) -> &'static str {
        NAME
    }

    fn lock_key(&self) -> i64 {
        lock_key("runner", NAME)
    }

    /// Only which courses changed is read from the events (the rest from
    /// the `courses` projection): no payload.
    fn payload_sql(&self) -> String {
        "'null'::jsonb".to_owned()
    }

    async fn open(&mut self) -> Result<(), ApplierError> {
        let d = self.dir.clone();
        blocking(move || d.prepare()).await
    }

    async fn apply(
        &mut self,
        tx: &Transaction<'_>,
        events: Vec<RecordedEvent>,
    ) -> Result<(), ApplierError> {
        let Some(last) = events.last().map(RecordedEvent::position) else {
            return Ok(());
        };
        let mut seen = HashSet::new();
        let ids: Vec<Uuid> = events
            .iter()
            .map(|e| e.stream_id)
            .filter(|id| seen.insert(*id))
            .collect();
        drop(events);
        wait_for_position(&self.store, "courses", last, COURSES_WAIT)
            .await
            .map_err(sink)?;
        let mut changes = Vec::new();
        for id in ids {
            changes.extend(sync_course(&self.store, tx, &self.dir, id).await?);
        }
        record(tx, &changes).await
    }
}

/// Starts the backup projector writing under `root`. Must be called inside
/// an actix System.
///
/// # Errors
/// Database errors registering its checkpoint.
pub async fn start(
    store: EventStore,
    wakeups: tokio::sync::watch::Receiver<u64>,
    root: PathBuf,
    options: RunnerOptions,
) -> Result<actix::Addr<ProjectionRunner>, crate::projections::ProjectionError> {
    use actix::Actor;
    let client = store.pool().get().await?;
    client
        .execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&NAME],
        )
        .await?;
    drop(client);
    let applier = Backup {
        store: store.clone(),
        dir: BackupDir::new(root),
    };
    Ok(ProjectionRunner::new(Box::new(applier), store, wakeups, options).start())
}

/// What a [`rebuild`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildReport {
    pub written: usize,
    pub moved_away: usize,
}

/// Rebuilds the backup from the read model: every READY course written
/// afresh, the deleted ones' and unknown directories moved to `.deleted/`,
/// `export_backups` rewritten. Safe beside a running projector (each write
/// is whole and of the current state).
///
/// # Errors
/// Database and file system errors.
pub async fn rebuild(
    store: &EventStore,
    root: PathBuf,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<RebuildReport> {
    use anyhow::Context as _;
    let dir = BackupDir::new(root);
    let d = dir.clone();
    tokio::task::spawn_blocking(move || d.prepare())
        .await?
        .context("preparing the export directory")?;
    let mut client = store.pool().get().await?;
    let ids: Vec<Uuid> = client
        .query(
            "SELECT id FROM courses WHERE status = $1 AND deleted_at IS NULL ORDER BY created_at, id",
            &[&CourseStatus::Ready],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    progress.set_length(ids.len() as u64);
    let mut report = RebuildReport::default();
    let mut kept = HashSet::new();
    let mut rows = Vec::new();
    for id in ids {
        if let Some(course) = load(&client, id).await? {
            let files = backup_files(&course);
            let d = dir.clone();
            let slug = course.slug.clone();
            tokio::task::spawn_blocking(move || d.write(&slug, &files))
                .await?
                .with_context(|| format!("writing {}", course.slug))?;
            kept.insert(course.slug.clone());
            rows.push((id, course.slug));
            report.written += 1;
        }
        progress.inc(1);
    }
    let d = dir.clone();
    report.moved_away = tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
        let mut n = 0;
        for name in d.course_dirs()? {
            if !kept.contains(&name) {
                d.move_to_deleted(&name)?;
                n += 1;
            }
        }
        Ok(n)
    })
    .await??;
    let tx = client.transaction().await?;
    tx.execute("DELETE FROM export_backups", &[]).await?;
    for (id, slug) in &rows {
        tx.execute(
            "INSERT INTO export_backups (course_id, slug, exported_at) VALUES ($1, $2, now())",
            &[id, slug],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ready_courses_are_written_and_only_exported_ones_moved_away() {
        use CourseStatus::*;
        assert_eq!(
            action(Ready, false, "a", None),
            Action::Write { slug: "a".into() }
        );
        assert_eq!(
            action(Ready, false, "b", Some("a")),
            Action::Write { slug: "b".into() }
        );
        assert_eq!(action(Generating, false, "a", Some("a")), Action::Keep);
        assert_eq!(
            action(Ready, true, "a", Some("a")),
            Action::Delete { slug: "a".into() }
        );
        assert_eq!(action(Ready, true, "a", None), Action::Keep);
    }

    fn files(text: &str) -> Vec<PackageFile> {
        vec![
            PackageFile::new("course.json", text.as_bytes().to_vec()),
            PackageFile::new("README.md", b"readme".to_vec()),
        ]
    }

    #[test]
    fn a_rewrite_replaces_the_directory_whole_and_a_delete_moves_it_away() {
        let root = std::env::temp_dir().join(format!("coursegen-backup-{}", Uuid::new_v4()));
        let dir = BackupDir::new(root.clone());
        dir.prepare().unwrap();
        dir.write("intro", &files("one")).unwrap();
        std::fs::write(root.join("intro/stale.md"), "old").unwrap();
        dir.write("intro", &files("two")).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("intro/course.json")).unwrap(),
            "two"
        );
        assert!(!root.join("intro/stale.md").exists());
        assert_eq!(std::fs::read_dir(root.join(TMP)).unwrap().count(), 0);
        dir.move_to_deleted("intro").unwrap();
        assert!(!root.join("intro").exists());
        assert!(root.join(".deleted/intro/course.json").exists());
        assert!(dir.write("../escape", &files("x")).is_err());
        std::fs::remove_dir_all(root).unwrap();
    }
}
