//! The embedded default: a private PostgreSQL cluster, made and started with
//! the machine's own PostgreSQL binaries, reachable only through a Unix
//! socket inside its data directory.
//!
//! `initdb` refuses to run as root; as root the cluster belongs to (and runs
//! as) the `postgres` user. Several coursegen processes share one cluster:
//! each holds it while it runs, and the last one to leave stops it (the
//! rule and its locks are in [`super::holders`]).

use std::ffi::{CString, OsStr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::holders::{io_error, Hold, StartLock};
use super::DatabaseError;

/// The database the service uses inside the private cluster.
pub(crate) const DATABASE: &str = "coursegen";

/// The private cluster, held by this process until [`Self::release`].
///
/// Dropping it unreleased releases it too, as a safety net: on a thread of
/// its own when dropped inside an async runtime, since the release may run
/// `pg_ctl stop`, which blocks.
pub(crate) struct EmbeddedPostgres {
    cluster: Cluster,
    /// This process's hold; `None` once given up.
    hold: Option<Hold>,
}

impl EmbeddedPostgres {
    /// Makes the cluster under `data_dir` if needed, starts it unless it
    /// already runs, and holds it for this process.
    ///
    /// Blocking (it runs `initdb` and `pg_ctl`): call outside the runtime
    /// or from `spawn_blocking`.
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
        // Joining and starting happen under the start lock, as does a
        // leaving process's decision to stop: the two never interleave.
        let start = StartLock::acquire(&data_dir)?;
        let hold = Hold::take(&data_dir, &start)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let owner = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_user()?)
        } else {
            None
        };
        let cluster = Cluster {
            bin,
            data_dir,
            owner,
        };
        cluster.make()?;
        if cluster.is_running() {
            tracing::info!(dir = %cluster.data_dir.display(), "reusing the running private PostgreSQL cluster");
        } else {
            cluster.start()?;
        }
        drop(start);
        Ok(Self {
            cluster,
            hold: Some(hold),
        })
    }

    /// Connection string to the server's `postgres` database (for creating ours).
    pub(crate) fn admin_url(&self) -> String {
        self.cluster.url("postgres")
    }

    /// Connection string to the service's database.
    pub(crate) fn database_url(&self) -> String {
        self.cluster.url(DATABASE)
    }

    /// Gives this process's hold up, and stops the cluster when no other
    /// process holds it. Blocking (it may run `pg_ctl stop`): call outside
    /// the runtime or from `spawn_blocking`.
    pub(crate) fn release(mut self) {
        if let Some(hold) = self.hold.take() {
            give_up(&self.cluster, hold);
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        let Some(hold) = self.hold.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            give_up(&self.cluster, hold);
            return;
        }
        // Not on an async thread: `pg_ctl stop` blocks for a second or more.
        let cluster = self.cluster.clone();
        let spawned = std::thread::Builder::new()
            .name("release-postgres".into())
            .spawn(move || give_up(&cluster, hold));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not release the private PostgreSQL cluster");
        }
    }
}

/// Leaves the holders of `cluster`, stopping it if this was the last one.
fn give_up(cluster: &Cluster, hold: Hold) {
    let last = StartLock::acquire(&cluster.data_dir).and_then(|start| {
        let last = hold.give_up(&start)?;
        if last {
            cluster.stop();
        }
        Ok(last)
    });
    match last {
        Ok(true) => {}
        Ok(false) => tracing::info!(
            "other coursegen processes use the private PostgreSQL cluster; leaving it running"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "could not tell whether other coursegen processes use the private PostgreSQL cluster; leaving it running"
        ),
    }
}

/// The cluster's directory and the tools that run it.
#[derive(Clone)]
struct Cluster {
    bin: PathBuf,
    data_dir: PathBuf,
    /// The user the cluster runs as when coursegen runs as root.
    owner: Option<Owner>,
}

#[derive(Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl Cluster {
    fn url(&self, db: &str) -> String {
        format!("host={} user=postgres dbname={db}", self.data_dir.display())
    }

    /// Makes the data directory a cluster (`initdb`) unless it is one.
    fn make(&self) -> Result<(), DatabaseError> {
        if let Some(o) = self.owner {
            chown_tree(&self.data_dir, o)?;
        }
        if self.data_dir.join("PG_VERSION").exists() {
            return Ok(());
        }
        tracing::info!(dir = %self.data_dir.display(), "creating the private PostgreSQL cluster");
        self.run(
            "initdb",
            [
                OsStr::new("-D"),
                self.data_dir.as_os_str(),
                OsStr::new("-U"),
                OsStr::new("postgres"),
                OsStr::new("--auth=trust"),
                OsStr::new("--encoding=UTF8"),
                OsStr::new("--no-instructions"),
            ],
        )?;
        Ok(())
    }

    fn start(&self) -> Result<(), DatabaseError> {
        let log = self.data_dir.join("server.log");
        let options = format!(
            "-k {} -c listen_addresses='' -c max_connections=200",
            self.data_dir.display()
        );
        tracing::info!(dir = %self.data_dir.display(), "starting the private PostgreSQL cluster");
        self.run(
            "pg_ctl",
            [
                OsStr::new("start"),
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new("60"),
                OsStr::new("-D"),
                self.data_dir.as_os_str(),
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
        Ok(())
    }

    /// Stops the server (its last holder is leaving, under the start lock):
    /// first waiting a moment for sessions to end (the leaving process's
    /// own connections close as its pool is dropped, an instant), then
    /// ending whatever sessions are left.
    fn stop(&self) {
        if !self.is_running() {
            return;
        }
        tracing::info!(
            "stopping the private PostgreSQL cluster: no other coursegen process uses it"
        );
        let stop = |mode: &str, seconds: &str| {
            self.run(
                "pg_ctl",
                [
                    OsStr::new("stop"),
                    OsStr::new("-w"),
                    OsStr::new("-t"),
                    OsStr::new(seconds),
                    OsStr::new("-m"),
                    OsStr::new(mode),
                    OsStr::new("-D"),
                    self.data_dir.as_os_str(),
                ],
            )
        };
        let stopped = stop("smart", "2").or_else(|_| stop("fast", "60"));
        if let Err(e) = stopped {
            tracing::warn!(error = %e, "could not stop the private PostgreSQL cluster");
        }
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

/// Creates the service's database in the private cluster if it is missing.
///
/// # Errors
/// [`DatabaseError::Connect`], or [`DatabaseError::CreateDatabase`] when
/// the database can be neither found nor created.
pub(crate) async fn ensure_database(admin_url: &str) -> Result<(), DatabaseError> {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
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

/// The uid and gid of the `postgres` user, with the thread-safe `getpwnam_r`
/// (this runs beside other threads; `getpwnam`'s static buffer is shared).
fn postgres_user() -> Result<Owner, DatabaseError> {
    let name = CString::new("postgres").expect("no NUL");
    let mut buffer = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: all-zero is a valid `passwd` (integers and null pointers).
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, `buffer` for its length;
        // `entry`'s strings point into `buffer`, and only its integers are read.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        match rc {
            // Not found: a null result, or one of the errors POSIX allows for it.
            0 if found.is_null() => return Err(DatabaseError::NoPostgresUser),
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => {
                return Err(DatabaseError::NoPostgresUser)
            }
            0 => {
                return Ok(Owner {
                    uid: entry.pw_uid,
                    gid: entry.pw_gid,
                })
            }
            libc::ERANGE if buffer.len() < 1 << 20 => buffer.resize(buffer.len() * 2, 0),
            errno => {
                return Err(DatabaseError::Io {
                    action: "looking up the user",
                    path: PathBuf::from("postgres"),
                    source: std::io::Error::from_raw_os_error(errno),
                })
            }
        }
    }
}

fn chown_tree(dir: &Path, owner: Owner) -> Result<(), DatabaseError> {
    std::os::unix::fs::chown(dir, Some(owner.uid), Some(owner.gid))
        .map_err(io_error("making the postgres user the owner of", dir))?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(io_error("restricting access to", dir))?;
    Ok(())
}
