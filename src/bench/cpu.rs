//! CPU seconds spent by PostgreSQL and by this process over a stretch of a
//! benchmark: the total work, which on a machine of few cores says more
//! than wall time (work spread over connections looks cheaper in wall time
//! than it is). Read from `/proc`, so only when the server runs on this
//! machine; the server's share counts every one of its processes, so other
//! clients of the same server count too. Beside it, the WAL the server
//! wrote (cluster-wide too).

use std::path::Path;

use crate::store::EventStore;

/// The CPU clock ticks per second of `/proc`'s times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Where the CPU time of the server's processes is read.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuMeter {
    /// The server's postmaster, if it runs on this machine.
    postmaster: Option<u32>,
}

/// CPU seconds used so far, and the server's WAL position.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuReading {
    server: Option<f64>,
    this: f64,
    wal: Option<i64>,
}

/// The fields of `/proc/<pid>/stat` after the command's closing parenthesis.
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    // The state (a letter) first: numbers from the parent pid on.
    Some(
        rest.split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// The parent pid and the CPU ticks (user, system; then of waited-for
/// children) of `pid`.
fn ticks(pid: &str) -> Option<(u64, u64, u64)> {
    let f = stat_fields(pid)?;
    // After the state: ppid pgrp session tty tpgid flags minflt cminflt majflt
    // cmajflt utime stime cutime cstime.
    Some((
        *f.first()?,
        f.get(10)? + f.get(11)?,
        f.get(12)? + f.get(13)?,
    ))
}

impl CpuMeter {
    /// Finds the server's postmaster: the parent of this session's backend,
    /// when it is a process of this machine running `postgres`.
    pub(super) async fn new(store: &EventStore) -> Self {
        let postmaster = async {
            let client = store.pool().get().await.ok()?;
            let backend: i32 = client
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .ok()?
                .get(0);
            let (parent, _, _) = ticks(&backend.to_string())?;
            let command = std::fs::read(format!("/proc/{parent}/cmdline")).ok()?;
            String::from_utf8_lossy(&command)
                .contains("postgres")
                .then_some(u32::try_from(parent).ok()?)
        }
        .await;
        Self { postmaster }
    }

    /// The CPU seconds used so far by the server (the postmaster, its
    /// children that have exited, and those alive) and by this process,
    /// and the server's WAL position in bytes.
    pub(super) async fn read(&self, store: &EventStore) -> CpuReading {
        let wal = async {
            let client = store.pool().get().await.ok()?;
            let row = client
                .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8", &[])
                .await
                .ok()?;
            Some(row.get::<_, i64>(0))
        }
        .await;
        let this = ticks("self").map_or(0, |(_, own, _)| own);
        let server = self.postmaster.and_then(|pm| {
            let (_, own, exited) = ticks(&pm.to_string())?;
            let mut total = own + exited;
            for entry in std::fs::read_dir("/proc").ok()?.flatten() {
                let name = entry.file_name();
                let Some(pid) = name
                    .to_str()
                    .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                if let Some((parent, own, _)) = ticks(pid) {
                    if parent == u64::from(pm) {
                        total += own;
                    }
                }
            }
            Some(total as f64 / TICKS_PER_SECOND)
        });
        CpuReading {
            server,
            this: this as f64 / TICKS_PER_SECOND,
            wal,
        }
    }
}

impl CpuReading {
    /// What was used between `self` and `later`, as printed beside a stage.
    pub(super) fn until(&self, later: &Self) -> String {
        let this = later.this - self.this;
        let wal = match (self.wal, later.wal) {
            (Some(a), Some(b)) => format!(", WAL {:.0} MB", (b - a) as f64 / 1e6),
            _ => String::new(),
        };
        let cpu = match (self.server, later.server) {
            (Some(a), Some(b)) => format!(
                "CPU {:.2} s: server {:.2} s, coursegen {this:.2} s",
                b - a + this,
                b - a
            ),
            _ => format!("CPU: coursegen {this:.2} s (the server's not readable here)"),
        };
        cpu + &wal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read_with_its_parent() {
        let (parent, own, _) = ticks("self").expect("/proc/self/stat reads");
        assert_eq!(parent, u64::from(std::os::unix::process::parent_id()));
        let (_, later, _) = ticks("self").unwrap();
        assert!(later >= own, "{own} then {later}");
        assert!(ticks("0").is_none(), "no process 0 in /proc");
    }
}
