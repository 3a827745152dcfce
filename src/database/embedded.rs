//! The embedded default: a private PostgreSQL cluster, made and started with
//! the machine's own PostgreSQL binaries, reachable only through a Unix
//! socket inside its data directory.
//!
//! `initdb` refuses to run as root; as root the cluster belongs to (and runs
//! as) the `postgres` user. The process that starts the cluster stops it
//! when it exits; a cluster found running is reused and left running.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::DatabaseError;

/// The database the service uses inside the private cluster.
pub(crate) const DATABASE: &str = "coursegen";

/// A running private cluster. Dropping it stops the cluster if this process started it.
pub(crate) struct EmbeddedPostgres {
    bin: PathBuf,
    data_dir: PathBuf,
    owner: Option<Owner>,
    started_here: bool,
}

#[derive(Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl EmbeddedPostgres {
    /// Makes the cluster under `data_dir` if needed and starts it unless it already runs.
    ///
    /// Blocking (it runs `initdb` and `pg_ctl`): call before the runtime's
    /// work begins or from `spawn_blocking`.
    ///
    /// # Errors
    /// No PostgreSQL binaries (the message says how to install them), or a
    /// failing `initdb` / `pg_ctl` (with their output).
    pub(crate) fn start(data_dir: &Path) -> Result<Self, DatabaseError> {
        let bin = find_binaries()?;
        std::fs::create_dir_all(data_dir).map_err(io_error("creating", data_dir))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(io_error("resolving", data_dir))?;
        // Serialize processes starting the same cluster at the same moment.
        let _lock = StartLock::acquire(&data_dir)?;
        let owner = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_user()?)
        } else {
            None
        };
        let mut cluster = Self {
            bin,
            data_dir,
            owner,
            started_here: false,
        };
        if let Some(o) = owner {
            chown_tree(&cluster.data_dir, o)?;
        }
        if !cluster.data_dir.join("PG_VERSION").exists() {
            tracing::info!(dir = %cluster.data_dir.display(), "creating the private PostgreSQL cluster");
            cluster.run(
                "initdb",
                [
                    OsStr::new("-D"),
                    cluster.data_dir.as_os_str(),
                    OsStr::new("-U"),
                    OsStr::new("postgres"),
                    OsStr::new("--auth=trust"),
                    OsStr::new("--encoding=UTF8"),
                    OsStr::new("--no-instructions"),
                ],
            )?;
        }
        if cluster.is_running() {
            tracing::info!(dir = %cluster.data_dir.display(), "reusing the running private PostgreSQL cluster");
            return Ok(cluster);
        }
        let log = cluster.data_dir.join("server.log");
        let options = format!(
            "-k {} -c listen_addresses='' -c max_connections=200",
            cluster.data_dir.display()
        );
        tracing::info!(dir = %cluster.data_dir.display(), "starting the private PostgreSQL cluster");
        cluster
            .run(
                "pg_ctl",
                [
                    OsStr::new("start"),
                    OsStr::new("-w"),
                    OsStr::new("-t"),
                    OsStr::new("60"),
                    OsStr::new("-D"),
                    cluster.data_dir.as_os_str(),
                    OsStr::new("-l"),
                    log.as_os_str(),
                    OsStr::new("-o"),
                    OsStr::new(&options),
                ],
            )
            .map_err(|e| DatabaseError::Start {
                log: log.clone(),
                source: Box::new(e),
            })?;
        cluster.started_here = true;
        Ok(cluster)
    }

    /// Connection string to the server's `postgres` database (for creating ours).
    pub(crate) fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// Connection string to the service's database.
    pub(crate) fn database_url(&self) -> String {
        self.url(DATABASE)
    }

    fn url(&self, db: &str) -> String {
        format!("host={} user=postgres dbname={db}", self.data_dir.display())
    }

    fn is_running(&self) -> bool {
        self.command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&self.data_dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some(o) = self.owner {
            cmd.uid(o.uid).gid(o.gid);
            cmd.env("HOME", &self.data_dir);
        }
        // pg_ctl's server inherits the working directory; it must be readable by the owner.
        cmd.current_dir(&self.data_dir);
        cmd
    }

    fn run<I, S>(&self, program: &'static str, args: I) -> Result<Output, DatabaseError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = self
            .command(program)
            .args(args)
            .output()
            .map_err(io_error("running", &self.bin.join(program)))?;
        if !output.status.success() {
            return Err(DatabaseError::Tool {
                program,
                status: output.status,
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout).trim(),
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        Ok(output)
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if !self.started_here {
            return;
        }
        tracing::info!("stopping the private PostgreSQL cluster");
        let stopped = self
            .command("pg_ctl")
            .args([
                OsStr::new("stop"),
                OsStr::new("-m"),
                OsStr::new("fast"),
                OsStr::new("-D"),
            ])
            .arg(&self.data_dir)
            .output();
        if let Err(e) = stopped {
            tracing::warn!(error = %e, "could not stop the private PostgreSQL cluster");
        }
    }
}

/// Creates the service's database in the private cluster if it is missing.
///
/// # Errors
/// [`DatabaseError::Connect`], or [`DatabaseError::CreateDatabase`] when
/// the database can be neither found nor created.
pub(crate) async fn ensure_database(cluster: &EmbeddedPostgres) -> Result<(), DatabaseError> {
    let (client, connection) = tokio_postgres::connect(&cluster.admin_url(), tokio_postgres::NoTls)
        .await
        .map_err(DatabaseError::Connect)?;
    let conn = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE])
        .await
        .map_err(DatabaseError::CreateDatabase)?
        .is_some();
    if !exists {
        match client
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await
        {
            Ok(()) => {}
            // Another process created it at the same moment.
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                    || e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {}
            Err(e) => return Err(DatabaseError::CreateDatabase(e)),
        }
    }
    drop(client);
    conn.abort();
    Ok(())
}

/// `initdb` and `pg_ctl` on PATH, else the newest under /usr/lib/postgresql/*/bin.
fn find_binaries() -> Result<PathBuf, DatabaseError> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let mut candidates: Vec<PathBuf> = on_path.collect();
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
    candidates.extend(versioned.into_iter().map(|(_, p)| p));
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .map(|dir| dir.canonicalize().unwrap_or(dir))
        .ok_or(DatabaseError::NoBinaries)
}

fn postgres_user() -> Result<Owner, DatabaseError> {
    let name = std::ffi::CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns a pointer into static storage or NULL; read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(DatabaseError::NoPostgresUser);
    }
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Owner { uid, gid })
}

fn chown_tree(dir: &Path, owner: Owner) -> Result<(), DatabaseError> {
    std::os::unix::fs::chown(dir, Some(owner.uid), Some(owner.gid))
        .map_err(io_error("making the postgres user the owner of", dir))?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(io_error("restricting access to", dir))?;
    Ok(())
}

/// Turns an I/O error on `path` into [`DatabaseError::Io`] saying what was being done.
fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DatabaseError {
    let path = path.to_owned();
    move |source| DatabaseError::Io {
        action,
        path,
        source,
    }
}

/// An exclusive `flock` on `<data_dir>.lock`, held while making or starting
/// the cluster, released when dropped (or when the process dies).
struct StartLock {
    _file: std::fs::File,
}

impl StartLock {
    fn acquire(data_dir: &Path) -> Result<Self, DatabaseError> {
        use std::os::fd::AsRawFd;
        let path = data_dir.with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error("opening", &path))?;
        // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_error("locking", &path)(std::io::Error::last_os_error()));
        }
        Ok(Self { _file: file })
    }
}
