//! The guard that tears a lab down when the process that owns it exits.
//!
//! Tests cannot rely on destructors of statics, and a test run may end by Ctrl-C or a
//! panic, so [`Lab::shared`](crate::Lab::shared) starts `hop-lab watch --pid PID --dir DIR`
//! as a separate process in its own process group (Ctrl-C on the test run does not reach
//! it). [`watch`] polls every 200 ms; when the owner is gone it runs `down` for the lab
//! recorded in `DIR/lab.env`. If the lab disappears first (someone ran `down`), it just
//! exits.

use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::Result;

use crate::lab::{self, ENV_FILE, Lab, LabConfig};

/// How often the owner's liveness is checked.
pub const POLL: Duration = Duration::from_millis(200);

/// Waits for process `pid` to exit, then tears down the lab whose state is in `dir`.
/// Returns when the lab is down (or was taken down by someone else).
pub fn watch(pid: u32, dir: &Path) -> Result<()> {
    // Read the config now: it must exist (the owner writes lab.env before starting us),
    // and keeping it in memory lets `down` work whatever happens to the directory.
    let lab = Lab::new(LabConfig::load(dir)?)?;
    // PID plus start time identifies the owner even if the PID is reused later.
    let started = lab::start_time(pid);
    let owner_alive = || lab::alive(pid) && lab::start_time(pid) == started;
    eprintln!(
        "hop-lab watch: lab {} is torn down when pid {pid} exits",
        lab.config.prefix
    );
    while owner_alive() {
        if !dir.join(ENV_FILE).exists() {
            eprintln!(
                "hop-lab watch: {} is gone (lab taken down by someone else)",
                dir.display()
            );
            return Ok(());
        }
        thread::sleep(POLL);
    }
    eprintln!(
        "hop-lab watch: pid {pid} exited, taking lab {} down",
        lab.config.prefix
    );
    lab.down()
}
