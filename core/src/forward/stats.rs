//! Counters of one forward, updated by its connections without locks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters; shared by the accept loop and every connection task.
#[derive(Default)]
pub struct Stats {
    /// Connections accepted so far.
    pub connections: AtomicU64,
    /// Connections currently open.
    pub active: AtomicU64,
    /// Connections that could not be opened through the hop, or broke mid-way.
    pub failed: AtomicU64,
    /// Bytes from the remote side to local clients.
    pub bytes_in: AtomicU64,
    /// Bytes from local clients to the remote side.
    pub bytes_out: AtomicU64,
    /// The most recent failure, for `stats().last_error`.
    pub last_error: Mutex<Option<String>>,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub connections: u64,
    pub active: u64,
    pub failed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub last_error: Option<String>,
}

impl Stats {
    /// Reads all counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            last_error: self.last_error.lock().expect("stats lock").clone(),
        }
    }

    /// Records a failed connection.
    pub fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().expect("stats lock") = Some(why);
    }
}

/// `1.5 MiB`-style sizes for one-line summaries.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human() {
        assert_eq!(super::human_bytes(12), "12 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }
}
