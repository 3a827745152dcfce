//! Where a replay's time goes: a process-wide clock per stage (reading the
//! log, decoding, writing each table, `ANALYZE`, the swap), off unless a
//! benchmark turns it on, so the service pays one relaxed load per stage.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ON: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<BTreeMap<&'static str, Duration>> = Mutex::new(BTreeMap::new());

/// Starts (or stops) recording; starting clears what was recorded.
pub fn record(on: bool) {
    if on {
        TOTALS.lock().expect("not poisoned").clear();
    }
    ON.store(on, Ordering::Relaxed);
}

/// Adds `elapsed` to `stage`.
pub fn add(stage: &'static str, elapsed: Duration) {
    if ON.load(Ordering::Relaxed) {
        *TOTALS
            .lock()
            .expect("not poisoned")
            .entry(stage)
            .or_default() += elapsed;
    }
}

/// Runs `f` and adds its time to `stage`.
pub async fn timed<T>(stage: &'static str, f: impl Future<Output = T>) -> T {
    if !ON.load(Ordering::Relaxed) {
        return f.await;
    }
    let started = Instant::now();
    let out = f.await;
    add(stage, started.elapsed());
    out
}

/// The time recorded per stage, by stage name.
pub fn totals() -> Vec<(&'static str, Duration)> {
    TOTALS
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|(k, v)| (*k, *v))
        .collect()
}
