//! Who uses the private cluster, kept in two lock files beside its data
//! directory (`.coursegen/pg.lock` and `.coursegen/pg.holders` for the
//! default `.coursegen/pg`):
//!
//! - the **start lock**, held exclusively by a process while it starts the
//!   cluster or decides whether to stop it, so a start and a stop never
//!   interleave;
//! - the **holders** file: every process using the cluster holds a shared
//!   lock on it from the moment it joins (under the start lock) until it
//!   leaves. A leaving process takes the start lock, drops its shared lock and
//!   tries an exclusive one without waiting. It gets it only when no other
//!   process holds the cluster, and only then stops the cluster.
//!
//! Both are `flock`s (std's `File::lock*`). The kernel drops them when a
//! process dies, so a killed holder neither keeps the cluster up for good nor
//! blocks a stop: a cluster left running by a killed last holder is reused by
//! the next process and stopped when that one leaves. The files are opened
//! close-on-exec (std's default), so postgres, started by `pg_ctl` from this
//! process, does not inherit a lock. They live beside the data directory,
//! not in it: `initdb` wants an empty directory, and the data directory
//! belongs to the `postgres` user when coursegen runs as root.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::DatabaseError;

/// The exclusive start lock: starting the cluster, or deciding to stop it,
/// happens only while it is held. Released when dropped (or when the process dies).
pub(super) struct StartLock {
    _file: File,
}

impl StartLock {
    /// Waits for the start lock of the cluster in `data_dir`.
    ///
    /// # Errors
    /// The lock file cannot be opened or locked.
    pub(super) fn acquire(data_dir: &Path) -> Result<Self, DatabaseError> {
        let path = beside(data_dir, "lock");
        let file = open(&path)?;
        file.lock().map_err(io_error("locking", &path))?;
        Ok(Self { _file: file })
    }
}

/// This process's shared lock on the holders file: while it exists, no other
/// process stops the cluster.
pub(super) struct Hold {
    file: File,
    path: PathBuf,
}

impl Hold {
    /// Joins the holders of the cluster in `data_dir`. Takes `_start` as
    /// proof the start lock is held, so a leaving process cannot be deciding
    /// to stop the cluster at the same moment (it decides under that lock);
    /// the shared lock is therefore granted at once.
    ///
    /// # Errors
    /// The holders file cannot be opened or locked.
    pub(super) fn take(data_dir: &Path, _start: &StartLock) -> Result<Self, DatabaseError> {
        let path = beside(data_dir, "holders");
        let file = open(&path)?;
        file.lock_shared().map_err(io_error("locking", &path))?;
        Ok(Self { file, path })
    }

    /// Gives the hold up and says whether this process was the last holder,
    /// so the one to stop the cluster. `_start` proves the start lock is held:
    /// nobody can join between this answer and the stop.
    ///
    /// # Errors
    /// The holders file cannot be unlocked or locked.
    pub(super) fn give_up(self, _start: &StartLock) -> Result<bool, DatabaseError> {
        self.file
            .unlock()
            .map_err(io_error("unlocking", &self.path))?;
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(io_error("locking", &self.path)(e)),
        }
    }
}

/// `<data_dir>.<extension>`: a file beside the data directory.
fn beside(data_dir: &Path, extension: &str) -> PathBuf {
    let mut name = OsString::from(data_dir.as_os_str());
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

fn open(path: &Path) -> Result<File, DatabaseError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_error("opening", path))
}

/// Turns an I/O error on `path` into [`DatabaseError::Io`] saying what was being done.
pub(super) fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> DatabaseError {
    let path = path.to_owned();
    move |source| DatabaseError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("coursegen-holders-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("pg")
    }

    // flock locks belong to the open file, so two opens in one process
    // behave as two processes would.
    #[test]
    fn the_last_holder_is_the_one_to_stop() {
        let data_dir = scratch_dir();
        let (first, second) = {
            let start = StartLock::acquire(&data_dir).unwrap();
            (
                Hold::take(&data_dir, &start).unwrap(),
                Hold::take(&data_dir, &start).unwrap(),
            )
        };
        let start = StartLock::acquire(&data_dir).unwrap();
        assert!(!first.give_up(&start).unwrap(), "another holder remains");
        assert!(second.give_up(&start).unwrap(), "the last holder");
        drop(start);
        std::fs::remove_dir_all(data_dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_holder_that_is_gone_does_not_count() {
        let data_dir = scratch_dir();
        let start = StartLock::acquire(&data_dir).unwrap();
        let crashed = Hold::take(&data_dir, &start).unwrap();
        let staying = Hold::take(&data_dir, &start).unwrap();
        // A dead process's locks go with its files.
        drop(crashed);
        assert!(staying.give_up(&start).unwrap());
        drop(start);
        std::fs::remove_dir_all(data_dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn lock_files_sit_beside_the_data_directory() {
        assert_eq!(
            beside(Path::new("/x/.coursegen/pg"), "holders"),
            PathBuf::from("/x/.coursegen/pg.holders")
        );
    }
}
