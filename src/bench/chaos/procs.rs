//! What the chaos soak runs and breaks: the `serve` processes (spawned from
//! this very binary, killed, paused, restarted), the broker's virtual host
//! of the run, and the PostgreSQL cluster's restart command.
//!
//! Every child carries [`RUN_MARKER`] in its environment, so that the soak
//! can prove at the end that none of them (nor anything they started) is
//! still alive.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

/// The environment variable naming the soak run in every child.
pub(super) const RUN_MARKER: &str = "COURSEGEN_CHAOS_RUN";

/// How one `serve` is configured (all but its model URL, which names its incarnation).
#[derive(Debug, Clone)]
pub(super) struct ServeConfig {
    pub run_id: String,
    pub database_url: String,
    pub amqp_url: String,
    pub request_queue: String,
    pub response_queue: String,
    pub llm_concurrency: usize,
    pub lease_secs: f64,
    pub log_dir: PathBuf,
}

/// One `serve` slot ("a", "b"): the process now in it and its incarnation count.
pub(super) struct Serve {
    pub name: &'static str,
    pub incarnation: u32,
    child: Child,
}

impl Serve {
    /// Spawns incarnation 1 of `name`.
    ///
    /// # Errors
    /// The binary could not be started.
    pub(super) fn spawn(
        name: &'static str,
        config: &ServeConfig,
        model_url: impl Fn(&str) -> String,
    ) -> anyhow::Result<Self> {
        let child = spawn_serve(name, 1, config, &model_url)?;
        Ok(Self {
            name,
            incarnation: 1,
            child,
        })
    }

    /// The tag of the current incarnation, as the model sees it (`a1`, `b3`).
    pub(super) fn tag(&self) -> String {
        tag(self.name, self.incarnation)
    }

    /// The process id of the current incarnation.
    pub(super) fn pid(&self) -> Option<i32> {
        self.child.id().and_then(|p| i32::try_from(p).ok())
    }

    /// Sends `signal` to the current incarnation.
    pub(super) fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = self.pid().context("the serve has exited")?;
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        anyhow::ensure!(
            rc == 0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
        Ok(())
    }

    /// SIGKILLs the current incarnation, reaps it and starts the next one.
    ///
    /// # Errors
    /// The new process could not be started.
    pub(super) async fn kill_and_restart(
        &mut self,
        config: &ServeConfig,
        model_url: impl Fn(&str) -> String,
    ) -> anyhow::Result<()> {
        // A process that exited by itself is reaped all the same.
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.incarnation += 1;
        self.child = spawn_serve(self.name, self.incarnation, config, &model_url)?;
        Ok(())
    }

    /// Whether the current incarnation has exited by itself (its status if so).
    pub(super) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL after `grace`; returns whether SIGKILL was needed.
    pub(super) async fn stop(&mut self, grace: Duration) -> bool {
        if self.exited().is_some() {
            return false;
        }
        let _ = self.signal(libc::SIGCONT);
        let _ = self.signal(libc::SIGTERM);
        if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
            return false;
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        true
    }
}

fn tag(name: &str, incarnation: u32) -> String {
    format!("{name}{incarnation}")
}

fn spawn_serve(
    name: &str,
    incarnation: u32,
    config: &ServeConfig,
    model_url: &impl Fn(&str) -> String,
) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let tag = tag(name, incarnation);
    let log = config.log_dir.join(format!("serve-{tag}.log"));
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(RUN_MARKER, &config.run_id)
        .env("DATABASE_URL", &config.database_url)
        .env("DATABASE_MAX_CONNECTIONS", "8")
        .env("AMQP_URL", &config.amqp_url)
        .env("AMQP_REQUEST_QUEUE", &config.request_queue)
        .env("AMQP_RESPONSE_QUEUE", &config.response_queue)
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("HTTP_WORKERS", "1")
        .env("LLM_PROVIDER", "openai")
        .env("OPENAI_BASE_URL", model_url(&tag))
        .env("OPENAI_API_KEY", "chaos")
        .env("LLM_MODEL", "chaos")
        .env("LLM_MAX_CONCURRENCY", config.llm_concurrency.to_string())
        .env("LLM_TIMEOUT_SECS", "60")
        .env("COURSE_LEASE_SECS", config.lease_secs.to_string())
        .env("SHUTDOWN_GRACE_SECS", "5")
        .env("LOG_FILE", &log)
        .env("RUST_LOG", "info,tokio_postgres=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd.spawn().context("starting coursegen serve")
}

/// Runs `sh -c command`, its output appended to `log`; fails on a non-zero exit.
///
/// # Errors
/// The command could not run or failed.
pub(super) async fn shell(command: &str, log: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let status = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .await
        .with_context(|| format!("running {command:?}"))?;
    anyhow::ensure!(status.success(), "{command:?} failed: {status}");
    Ok(started.elapsed())
}

/// `rabbitmqctl` with `args`, its standard output.
///
/// # Errors
/// rabbitmqctl is missing or failed.
pub(super) async fn rabbitmqctl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running rabbitmqctl (is RabbitMQ installed here?)")?;
    anyhow::ensure!(
        out.status.success(),
        "rabbitmqctl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The run's own virtual host on the shared broker, so that its faults
/// (closing connections) touch nobody else's.
pub(super) struct Vhost {
    pub name: String,
}

impl Vhost {
    /// Adds the virtual host and gives `user` every permission on it.
    ///
    /// # Errors
    /// rabbitmqctl failed.
    pub(super) async fn create(name: String, user: &str) -> anyhow::Result<Self> {
        rabbitmqctl(&["-q", "add_vhost", &name]).await?;
        rabbitmqctl(&["-q", "set_permissions", "-p", &name, user, ".*", ".*", ".*"]).await?;
        Ok(Self { name })
    }

    /// Closes every client connection to the virtual host at once; returns
    /// how many there were.
    ///
    /// # Errors
    /// rabbitmqctl failed.
    pub(super) async fn close_connections(&self) -> anyhow::Result<usize> {
        let listing =
            rabbitmqctl(&["-q", "list_connections", "--no-table-headers", "vhost"]).await?;
        let open = listing.lines().filter(|l| l.trim() == self.name).count();
        rabbitmqctl(&[
            "-q",
            "close_all_connections",
            "--vhost",
            &self.name,
            "--limit",
            "10000",
            "chaos soak",
        ])
        .await?;
        Ok(open)
    }

    /// Consumers on `queue` in the virtual host (None while it cannot be listed).
    pub(super) async fn consumers(&self, queue: &str) -> Option<usize> {
        let listing = rabbitmqctl(&[
            "-q",
            "list_queues",
            "-p",
            &self.name,
            "--no-table-headers",
            "name",
            "consumers",
        ])
        .await
        .ok()?;
        listing.lines().find_map(|line| {
            let (name, consumers) = line.split_once('\t')?;
            (name.trim() == queue)
                .then(|| consumers.trim().parse().ok())
                .flatten()
        })
    }

    /// Deletes the virtual host with everything in it.
    pub(super) async fn delete(self) {
        let _ = rabbitmqctl(&["-q", "delete_vhost", &self.name]).await;
    }
}

/// Processes alive (not zombies) whose environment names the run.
pub(super) fn marked_processes(run_id: &str) -> Vec<i32> {
    let needle = format!("{RUN_MARKER}={run_id}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let marked = environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes());
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
            .unwrap_or(false);
        if marked && !zombie {
            pids.push(pid);
        }
    }
    pids
}
