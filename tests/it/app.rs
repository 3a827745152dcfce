//! The service under test, as zero2prod's `spawn_app` and esrs's RabbitMQ
//! tests set it up: [`TestApp::spawn`] gives a test its own database, the
//! fake LLM and its own RabbitMQ queues where asked, and a running server.
//!
//! The servers' settings come from one source: `coursegen serve` flags,
//! [`DEFAULTS`] plus the test's [`Overrides`]. An in-process [`Application`]
//! parses them with clap as `coursegen serve` does; a `coursegen serve`
//! subprocess (for the tests that kill one) gets them as its arguments.

use std::net::SocketAddr;

use clap::Parser;
use coursegen::app::{Application, ServeArgs};
use reqwest::StatusCode;
use serde_json::Value;

use crate::fake_llm::{FakeLlm, Script};
use crate::helpers::TestDb;
use crate::queues::Queues;

/// HS256 secret of the test servers' bearer tokens.
pub const JWT_SECRET: &str = "test-secret-of-the-http-tests";

/// What every test server runs with: the offline generator, a quick
/// scheduler, short LLM timeouts, and HTTP on any free loopback port.
const DEFAULTS: &[(&str, &str)] = &[
    ("--llm-provider", "offline"),
    ("--llm-max-concurrency", "4"),
    ("--llm-timeout-secs", "5"),
    ("--llm-max-retries", "3"),
    ("--course-lease-secs", "5"),
    ("--scheduler-poll-secs", "0.2"),
    ("--shutdown-grace-secs", "5"),
    ("--http-addr", "127.0.0.1:0"),
    ("--auth-jwt-secret", JWT_SECRET),
    ("--http-max-body-bytes", "16384"),
    ("--http-workers", "2"),
];

/// What a test wants different from [`DEFAULTS`].
#[derive(Default)]
pub struct Overrides {
    llm: Option<Script>,
    amqp: bool,
    flags: Vec<(&'static str, Option<String>)>,
}

impl Overrides {
    /// Generate with a fake OpenAI-compatible server following `script`
    /// instead of the offline generator.
    pub fn fake_llm(mut self, script: Script) -> Self {
        self.llm = Some(script);
        self
    }

    /// Turn the AMQP ingress on, on queues of the test's own.
    pub fn amqp(mut self) -> Self {
        self.amqp = true;
        self
    }

    /// Set a `coursegen serve` flag (`"--course-lease-secs"`).
    pub fn set(mut self, flag: &'static str, value: impl ToString) -> Self {
        self.flags.push((flag, Some(value.to_string())));
        self
    }

    /// Leave a flag of [`DEFAULTS`] out (its `serve` default applies).
    pub fn unset(mut self, flag: &'static str) -> Self {
        self.flags.push((flag, None));
        self
    }
}

/// `coursegen serve` options, parsed from flags as the CLI parses them.
#[derive(Parser)]
struct Serve {
    #[command(flatten)]
    args: ServeArgs,
}

/// One running server (an `Application` is large: boxed).
enum Server {
    InProcess(Box<Application>),
    Process(ServeProcess),
}

/// A test's service: its database, fake LLM and queues, and the servers
/// started on them. Dropping it kills the server processes, deletes the
/// queues and drops the database, also when the test panics.
pub struct TestApp {
    // Fields drop in this order: the servers go before what they use.
    servers: Vec<Server>,
    /// HTTP address of the first in-process server.
    addr: Option<SocketAddr>,
    pub client: reqwest::Client,
    queues: Option<Queues>,
    llm: Option<FakeLlm>,
    pub db: TestDb,
    flags: Vec<(&'static str, Option<String>)>,
}

impl TestApp {
    /// Everything but a server: the database, and the fake LLM and queues
    /// if `overrides` asks for them (for tests that act before a server runs).
    pub async fn new(overrides: Overrides) -> Self {
        let db = TestDb::new().await;
        let llm = match overrides.llm {
            Some(script) => Some(FakeLlm::start(script).await),
            None => None,
        };
        let queues = if overrides.amqp {
            Some(Queues::new().await)
        } else {
            None
        };
        Self {
            servers: Vec::new(),
            addr: None,
            client: reqwest::Client::new(),
            queues,
            llm,
            db,
            flags: overrides.flags,
        }
    }

    /// [`Self::new`] and an in-process server.
    pub async fn spawn(overrides: Overrides) -> Self {
        let mut app = Self::new(overrides).await;
        app.start().await;
        app
    }

    /// Starts an in-process server, as `coursegen serve` does: the write
    /// side, then the projections and the HTTP API.
    pub async fn start(&mut self) {
        let args = Serve::try_parse_from(std::iter::once("serve".to_owned()).chain(self.flags()))
            .expect("valid serve flags")
            .args;
        let mut app = Application::build(self.db.store.clone(), &args).unwrap();
        let addr = app.start_http(&args.http).await.unwrap();
        assert_ne!(addr.port(), 0);
        self.addr.get_or_insert(addr);
        self.servers.push(Server::InProcess(Box::new(app)));
    }

    /// Starts a `coursegen serve` subprocess.
    pub fn start_process(&mut self) {
        let process = ServeProcess::start(&self.db, self.flags());
        self.servers.push(Server::Process(process));
    }

    /// Sets a flag of the servers started from now on.
    pub fn set(&mut self, flag: &'static str, value: impl ToString) {
        self.flags.push((flag, Some(value.to_string())));
    }

    /// A new fake LLM following `script`, for the servers started from now on.
    pub async fn replace_llm(&mut self, script: Script) {
        self.llm = Some(FakeLlm::start(script).await);
    }

    /// Stops every server cleanly: in-process ones with
    /// [`Application::stop`], processes with SIGTERM.
    pub async fn stop(&mut self) {
        for server in self.servers.drain(..) {
            match server {
                Server::InProcess(app) => (*app).stop().await,
                Server::Process(mut process) => process.terminate(),
            }
        }
    }

    /// SIGKILLs every server process: no shutdown code runs.
    pub fn kill(&mut self) {
        for server in &mut self.servers {
            if let Server::Process(process) = server {
                process.kill();
            }
        }
        self.servers
            .retain(|server| matches!(server, Server::InProcess(_)));
    }

    /// The first in-process server.
    pub fn application(&self) -> &Application {
        self.applications().next().expect("an in-process server")
    }

    /// The in-process servers, oldest first.
    pub fn applications(&self) -> impl Iterator<Item = &Application> {
        self.servers.iter().filter_map(|server| match server {
            Server::InProcess(app) => Some(app.as_ref()),
            Server::Process(_) => None,
        })
    }

    /// The fake LLM the servers use.
    pub fn llm(&self) -> &FakeLlm {
        self.llm.as_ref().expect("a fake LLM (Overrides::fake_llm)")
    }

    /// The test's RabbitMQ queues.
    /// Runs the `coursegen` binary on this app's database, as a user at a
    /// terminal would, and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_coursegen"))
            .args(args)
            .env("DATABASE_URL", self.db.url())
            .output()
            .unwrap()
    }

    pub fn queues(&self) -> &Queues {
        self.queues.as_ref().expect("queues (Overrides::amqp)")
    }

    /// The test's RabbitMQ queues, to reopen their connection.
    pub fn queues_mut(&mut self) -> &mut Queues {
        self.queues.as_mut().expect("queues (Overrides::amqp)")
    }

    /// The HTTP address of the first in-process server.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("an in-process server")
    }

    /// The URL of `path` on the first in-process server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// A GET with a bearer token.
    pub fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(token)
    }

    /// A POST with a bearer token.
    pub fn post(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(token)
    }

    /// A GET's status and JSON body.
    pub async fn get_json(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self.get(path, token).send().await.unwrap();
        (r.status(), r.json().await.unwrap())
    }

    /// The servers' flags: [`DEFAULTS`], the fake LLM and the queues when
    /// there are, then the test's overrides (a later setting of a flag wins).
    pub fn flags(&self) -> Vec<String> {
        let mut settings: Vec<(&str, Option<String>)> = DEFAULTS
            .iter()
            .map(|(flag, value)| (*flag, Some((*value).to_owned())))
            .collect();
        if let Some(llm) = &self.llm {
            settings.extend([
                ("--llm-provider", Some("openai".to_owned())),
                ("--openai-base-url", Some(llm.base_url())),
                ("--openai-api-key", Some("sk-test".to_owned())),
                ("--llm-model", Some("gpt-test".to_owned())),
            ]);
        }
        if let Some(queues) = &self.queues {
            let amqp = &queues.settings;
            settings.extend([
                ("--amqp-url", amqp.amqp_url.clone()),
                (
                    "--amqp-request-queue",
                    Some(amqp.amqp_request_queue.clone()),
                ),
                (
                    "--amqp-response-queue",
                    Some(amqp.amqp_response_queue.clone()),
                ),
                ("--amqp-prefetch", Some(amqp.amqp_prefetch.to_string())),
            ]);
        }
        settings.extend(self.flags.iter().cloned());
        let mut effective: Vec<(&str, Option<String>)> = Vec::new();
        for (flag, value) in settings {
            match effective.iter_mut().find(|(f, _)| *f == flag) {
                Some(slot) => slot.1 = value,
                None => effective.push((flag, value)),
            }
        }
        effective
            .into_iter()
            .filter_map(|(flag, value)| value.map(|v| format!("{flag}={v}")))
            .collect()
    }
}

/// A `coursegen serve` subprocess on a test's database, quiet but for
/// warnings. Killed (SIGKILL) when dropped.
pub struct ServeProcess(std::process::Child);

impl ServeProcess {
    /// Starts `coursegen serve` with `flags`.
    fn start(db: &TestDb, flags: Vec<String>) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_coursegen"))
            .arg("serve")
            .args(flags)
            .env("DATABASE_URL", db.url())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start coursegen serve");
        Self(child)
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, then wait for the clean exit.
    fn terminate(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
