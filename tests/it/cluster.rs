//! The private cluster shared by coursegen processes: `coursegen` binaries
//! run on a data directory of the test's own, with no DATABASE_URL, as a
//! user runs them. Whoever starts the cluster, it stays up while any
//! process holds it and stops when the last one leaves, however it leaves.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::helpers::eventually;

const USER: &str = "00000000-0000-4000-8000-00000000c1a5";

/// A directory of the test's own holding the private cluster under `pg`
/// (and its lock files beside it). Dropping it kills a postgres the test
/// left behind (after a failed assertion) and removes the directory.
struct DataDir {
    root: PathBuf,
}

impl DataDir {
    fn new() -> Self {
        let root =
            std::env::temp_dir().join(format!("coursegen-cluster-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&root).unwrap();
        // As root the cluster runs as `postgres`, which must reach its directory.
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        Self { root }
    }

    fn pg(&self) -> PathBuf {
        self.root.join("pg")
    }

    /// `coursegen <args>` on this directory's cluster: the embedded
    /// defaults (no DATABASE_URL, AMQP or API key), warnings only, and its
    /// messages (`course requested`, ...) not shown.
    fn coursegen<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coursegen"));
        cmd.args(args)
            .current_dir(&self.root)
            .env_remove("DATABASE_URL")
            .env_remove("AMQP_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("LOG_FILE")
            .env("COURSEGEN_DATA_DIR", self.pg())
            .env("LLM_PROVIDER", "offline")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// `coursegen submit ... [--wait]`, started; returns the process and
    /// the course id it printed (the request is recorded by then, so the
    /// cluster is up).
    fn submit(&self, topic: &str, wait: bool) -> (Process, Uuid) {
        let mut args = vec!["submit", "--user", USER, "--topic", topic, "--lessons", "2"];
        if wait {
            args.push("--wait");
        }
        let mut child = self.coursegen(args).stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let id = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("submit printed a course id, not {line:?}"));
        (Process(Some(child)), id)
    }

    /// The postmaster's pid while the cluster runs (from `postmaster.pid`).
    fn postmaster(&self) -> Option<i32> {
        let pid_file = std::fs::read_to_string(self.pg().join("postmaster.pid")).ok()?;
        let pid: i32 = pid_file.lines().next()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }

    /// Live processes whose command line names this cluster's directory
    /// (the postmaster is started as `postgres -D <dir> ...`).
    fn processes_of_the_cluster(&self) -> Vec<i32> {
        let dir = self.pg().canonicalize().unwrap_or_else(|_| self.pg());
        let dir = dir.to_string_lossy().into_owned();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&dir))
                    .unwrap_or(false)
                    && alive(*pid)
            })
            .collect()
    }

    /// A connection to the service's database in the cluster, for the
    /// test's checks (not a holder: it does not keep the cluster up).
    async fn client(&self) -> tokio_postgres::Client {
        let url = format!(
            "host={} user=postgres dbname=coursegen",
            self.pg().display()
        );
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("the private cluster is up");
        tokio::spawn(conn);
        client
    }

    /// Asserts that no postgres of this cluster is left, once the processes
    /// that `pg_ctl stop -w` saw remove `postmaster.pid` have exited (the
    /// postmaster unlinks it just before its last moments, which a loaded
    /// machine can stretch).
    fn assert_no_postgres_left(&self) {
        for _ in 0..100 {
            if self.processes_of_the_cluster().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            !self.pg().join("postmaster.pid").exists(),
            "postmaster.pid is left in {}",
            self.pg().display()
        );
        assert_eq!(
            self.processes_of_the_cluster(),
            Vec::<i32>::new(),
            "postgres processes of {} are left",
            self.pg().display()
        );
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if let Some(pid) = self.postmaster() {
            // SIGQUIT: immediate shutdown; the backends go with the postmaster.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            for _ in 0..100 {
                if !alive(pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A `coursegen` process of the test, SIGKILLed if dropped before it was
/// waited for, so that a failed assertion leaves nothing running.
struct Process(Option<Child>);

impl Process {
    fn spawn(mut command: Command) -> Self {
        Self(Some(command.spawn().unwrap()))
    }

    fn signal(&self, signal: i32) {
        let child = self.0.as_ref().expect("not waited for yet");
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(child.id() as i32, signal) };
    }

    /// Waits for the exit, off the runtime's threads.
    async fn exit(mut self) -> ExitStatus {
        let mut child = self.0.take().expect("not waited for yet");
        tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Courses of `ids` whose stream has `CourseCompleted` (READY).
async fn completed(client: &tokio_postgres::Client, ids: &[Uuid]) -> i64 {
    client
        .query_one(
            "SELECT count(DISTINCT stream_id) FROM events
             WHERE event_type = 'CourseCompleted' AND stream_id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap()
        .get(0)
}

/// What a client process of the churn test does.
#[derive(Debug, Clone, Copy)]
enum Client {
    Submit,
    SubmitAndWait,
    Events,
    Projections,
    Migrate,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_outlives_every_client_and_stops_after_the_last() {
    let seed: u64 = std::env::var("COURSEGEN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("cluster churn seed {seed} (COURSEGEN_TEST_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = DataDir::new();

    // As in scripts/run.sh once: a short command starts the cluster, and
    // `serve` joins it.
    let (first, first_id) = dir.submit("Photosynthesis", true);
    let postmaster = dir.postmaster().expect("submit started the cluster");
    let log = dir.root.join("serve.log");
    let mut serve = dir.coursegen([
        "serve",
        "--http-addr",
        "127.0.0.1:0",
        "--scheduler-poll-secs",
        "0.2",
    ]);
    serve
        .arg("--log-file")
        .arg(&log)
        .env("OFFLINE_LATENCY_MS", "50");
    let serve = Process::spawn(serve);

    let mut courses = vec![first_id];
    let mut running: Vec<(Client, Process)> = vec![(Client::SubmitAndWait, first)];
    for i in 0..16 {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
        let kind = [
            Client::Submit,
            Client::SubmitAndWait,
            Client::Events,
            Client::Projections,
            Client::Migrate,
        ][rng.gen_range(0..5)];
        let topic = format!("Topic {i}");
        let child = match kind {
            Client::Submit | Client::SubmitAndWait => {
                let (child, id) = dir.submit(&topic, matches!(kind, Client::SubmitAndWait));
                courses.push(id);
                child
            }
            Client::Events => {
                let id = courses[rng.gen_range(0..courses.len())].to_string();
                Process::spawn(dir.coursegen(["events", &id]))
            }
            Client::Projections => Process::spawn(dir.coursegen(["projections"])),
            Client::Migrate => Process::spawn(dir.coursegen(["migrate"])),
        };
        running.push((kind, child));
        // Now and then a client dies without a word: its hold goes with it.
        if rng.gen_bool(0.15) {
            let victim = rng.gen_range(0..running.len());
            running[victim].1.signal(libc::SIGKILL);
        }
        assert_eq!(
            dir.postmaster(),
            Some(postmaster),
            "the cluster was stopped or restarted under `serve` (after client {i}, {kind:?})"
        );
    }
    for (kind, child) in running {
        let status = child.exit().await;
        assert!(
            status.success() || status.code().is_none(),
            "{kind:?} failed: {status}"
        );
    }
    assert_eq!(
        dir.postmaster(),
        Some(postmaster),
        "the cluster was stopped or restarted under `serve` once the clients left"
    );

    // Every course is generated: the killed `submit --wait`s only stopped waiting.
    let client = dir.client().await;
    let all = courses.len() as i64;
    eventually("every course READY", Duration::from_secs(60), || async {
        (completed(&client, &courses).await == all).then_some(())
    })
    .await;
    drop(client);
    assert_eq!(dir.postmaster(), Some(postmaster));

    serve.signal(libc::SIGTERM);
    let status = serve.exit().await;
    assert!(status.success(), "serve exited with {status}");
    dir.assert_no_postgres_left();
    assert!(
        std::fs::metadata(&log).unwrap().len() > 0,
        "serve wrote its log to --log-file"
    );
}

#[tokio::test]
async fn a_cluster_left_by_a_killed_last_holder_is_stopped_by_the_next_one() {
    let dir = DataDir::new();
    // No `serve`: the course stays QUEUED and `submit --wait` waits.
    let (waiting, id) = dir.submit("Orphans", true);
    waiting.signal(libc::SIGKILL);
    waiting.exit().await;
    let postmaster = dir.postmaster().expect("a killed holder stops nothing");

    let events = dir.coursegen(["events", &id.to_string()]).status().unwrap();
    assert!(events.success());
    dir.assert_no_postgres_left();
    assert!(!alive(postmaster));
}

#[tokio::test]
async fn an_interrupted_command_still_stops_the_cluster_it_held_last() {
    // Ctrl-C, kill, and the terminal closing.
    for (signal, code) in [
        (libc::SIGINT, 130),
        (libc::SIGTERM, 143),
        (libc::SIGHUP, 129),
    ] {
        let dir = DataDir::new();
        let (waiting, _) = dir.submit("Interrupted", true);
        assert!(dir.postmaster().is_some());
        waiting.signal(signal);
        let status = waiting.exit().await;
        assert_eq!(status.code(), Some(code), "128 + signal {signal}");
        dir.assert_no_postgres_left();
    }
}

#[tokio::test]
async fn serve_stops_cleanly_when_its_terminal_closes_and_takes_the_cluster_along() {
    let dir = DataDir::new();
    let log = dir.root.join("serve.log");
    let mut serve = dir.coursegen(["serve", "--http-addr", "127.0.0.1:0"]);
    serve.arg("--log-file").arg(&log).env("RUST_LOG", "info");
    let serve = Process::spawn(serve);
    // A signal during the start ends serve at once (exit 129): wait until it runs.
    eventually("serve running", Duration::from_secs(60), || async {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        log.contains("coursegen is running").then_some(())
    })
    .await;
    assert!(dir.postmaster().is_some());
    serve.signal(libc::SIGHUP);
    let status = serve.exit().await;
    assert!(
        status.success(),
        "serve exited with {status}; its log:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    dir.assert_no_postgres_left();
}

#[test]
fn short_commands_log_the_cluster_only_when_asked_with_v() {
    let dir = DataDir::new();
    let stderr = |args: &[&str]| {
        let out = dir
            .coursegen(args)
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", out.status);
        String::from_utf8(out.stderr).unwrap()
    };
    let quiet = stderr(&["migrate"]);
    assert_eq!(quiet, "database schema is up to date\n");
    let verbose = stderr(&["-v", "migrate"]);
    assert!(
        verbose.contains("starting the private PostgreSQL cluster"),
        "{verbose}"
    );
    assert!(
        verbose.contains("stopping the private PostgreSQL cluster"),
        "{verbose}"
    );
}

#[test]
fn the_lock_files_sit_beside_the_data_directory() {
    let dir = DataDir::new();
    let status = dir.coursegen(["migrate"]).status().unwrap();
    assert!(status.success());
    for file in ["pg.lock", "pg.holders"] {
        assert!(Path::new(&dir.root).join(file).exists(), "{file}");
    }
    dir.assert_no_postgres_left();
}
