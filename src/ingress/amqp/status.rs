//! Connection state of the AMQP consumer and reply publisher, shared with
//! whoever reports health (the HTTP `/health` endpoint).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What one AMQP component is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AmqpState {
    /// Not started yet, or making its first connection.
    Connecting,
    /// Connected and working.
    Connected,
    /// Lost the broker (or the database); retrying with backoff.
    Reconnecting,
    /// Reply publisher only: another process holds the publisher lock.
    Standby,
    /// Shut down.
    Stopped,
}

/// One component's state, since when, and the last error it met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentStatus {
    pub state: AmqpState,
    pub since: DateTime<Utc>,
    /// Kept after recovering, so a health check can show what happened last.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

impl ComponentStatus {
    fn new() -> Self {
        Self {
            state: AmqpState::Connecting,
            since: Utc::now(),
            last_error: None,
            last_error_at: None,
        }
    }
}

/// A snapshot of both components.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AmqpStatusSnapshot {
    pub consumer: ComponentStatus,
    pub publisher: ComponentStatus,
}

impl AmqpStatusSnapshot {
    /// Healthy when the consumer is connected and the publisher is connected
    /// or standing by for another process.
    pub fn healthy(&self) -> bool {
        self.consumer.state == AmqpState::Connected
            && matches!(
                self.publisher.state,
                AmqpState::Connected | AmqpState::Standby
            )
    }
}

/// A cheap, clonable handle on the shared state.
#[derive(Debug, Clone)]
pub struct AmqpStatus(Arc<Mutex<AmqpStatusSnapshot>>);

/// Which component reports.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Component {
    Consumer,
    Publisher,
}

impl Default for AmqpStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl AmqpStatus {
    /// Both components connecting.
    pub(crate) fn new() -> Self {
        Self(Arc::new(Mutex::new(AmqpStatusSnapshot {
            consumer: ComponentStatus::new(),
            publisher: ComponentStatus::new(),
        })))
    }

    /// The current state of both components.
    pub fn snapshot(&self) -> AmqpStatusSnapshot {
        self.0.lock().expect("status lock").clone()
    }

    pub(crate) fn set(&self, component: Component, state: AmqpState) {
        self.update(component, |c| {
            if c.state != state {
                c.state = state;
                c.since = Utc::now();
            }
        });
    }

    pub(crate) fn failed(&self, component: Component, error: &dyn std::fmt::Display) {
        let message = error.to_string();
        self.update(component, |c| {
            if c.state != AmqpState::Reconnecting {
                c.state = AmqpState::Reconnecting;
                c.since = Utc::now();
            }
            c.last_error = Some(message);
            c.last_error_at = Some(Utc::now());
        });
    }

    fn update(&self, component: Component, f: impl FnOnce(&mut ComponentStatus)) {
        let mut guard = self.0.lock().expect("status lock");
        f(match component {
            Component::Consumer => &mut guard.consumer,
            Component::Publisher => &mut guard.publisher,
        });
    }
}
