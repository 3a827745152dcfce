//! Sending the NOTIFY that wakes readers after appends.
//!
//! One task per store sends them, on a connection of its own. It runs on
//! the runtime the application names ([`NotifySender::run_on`], its own,
//! which lives as long as the service) rather than on whichever runtime
//! appended first: an HTTP worker's runtime, say, which may end while the
//! service goes on, taking the task with it. Whenever the task is found
//! gone, the next append starts it again, so wake-ups never stop for good.

use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_postgres::NoTls;

use super::NOTIFY_CHANNEL;

/// The NOTIFY task of one store (shared by its clones).
pub(crate) struct NotifySender {
    config: tokio_postgres::Config,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The application's runtime, once named: where the task runs.
    runtime: Option<Handle>,
    /// Signals the running task; closed once the task is gone.
    signals: Option<mpsc::Sender<()>>,
    /// Whether the running task was started on `runtime`.
    on_named_runtime: bool,
}

impl NotifySender {
    /// A sender for the database `config` names; its task starts with the
    /// first append or [`Self::run_on`].
    pub(crate) fn new(config: tokio_postgres::Config) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// Runs the task on `runtime` from now on, starting it there at once
    /// (moved from another runtime it may have started on).
    pub(crate) fn run_on(&self, runtime: Handle) {
        let mut state = self.state.lock().expect("notify state lock");
        state.runtime = Some(runtime);
        state.signals = None;
        self.start(&mut state);
    }

    /// Asks for one NOTIFY after the appends so far; starts the task again
    /// if it is gone.
    pub(crate) fn signal(&self) {
        let mut state = self.state.lock().expect("notify state lock");
        let running = state.signals.as_ref().is_some_and(|s| !s.is_closed());
        if !running {
            if state.signals.is_some() {
                tracing::warn!("the NOTIFY sender was gone (its runtime ended); restarting it");
                if state.on_named_runtime {
                    // The application's runtime itself ended (the store
                    // outlived the service): go on where the appends run.
                    state.runtime = None;
                }
            }
            self.start(&mut state);
        }
        if let Some(signals) = &state.signals {
            // Full: a wake-up is already pending and will cover this append too.
            let _ = signals.try_send(());
        }
    }

    /// Starts the task on the named runtime, else on the caller's (none
    /// outside a runtime: readers then poll).
    fn start(&self, state: &mut State) {
        let runtime = state.runtime.clone().or_else(|| Handle::try_current().ok());
        let Some(runtime) = runtime else {
            state.signals = None;
            return;
        };
        let (tx, rx) = mpsc::channel(1);
        runtime.spawn(notify_appended(self.config.clone(), rx));
        state.on_named_runtime = state.runtime.is_some();
        state.signals = Some(tx);
    }
}

/// Sends one NOTIFY per batch of signalled appends, until the store is
/// dropped, on a connection of its own (so it never takes a pooled
/// connection from an appender), and at most one per millisecond: under a
/// heavy append rate many appends share one wake-up, at a light one each
/// gets its own at once.
async fn notify_appended(config: tokio_postgres::Config, mut signals: mpsc::Receiver<()>) {
    let mut client: Option<tokio_postgres::Client> = None;
    while signals.recv().await.is_some() {
        if client
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            client = match config.connect(NoTls).await {
                Ok((c, connection)) => {
                    tokio::spawn(connection);
                    Some(c)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not connect to NOTIFY subscribers; they will poll");
                    None
                }
            };
        }
        if let Some(c) = &client {
            if let Err(e) = c
                .execute("SELECT pg_notify($1, '')", &[&NOTIFY_CHANNEL])
                .await
            {
                tracing::debug!(error = %e, "could not NOTIFY subscribers; they will poll");
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
