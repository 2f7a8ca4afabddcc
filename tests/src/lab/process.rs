//! Processes by PID: liveness that treats zombies as dead, pid files, the PIDs inside a
//! namespace, process trees, and stopping processes with a TERM-then-KILL deadline.
//!
//! Liveness reads `/proc/PID/stat` rather than `kill -0`: daemons the lab started are
//! re-parented to PID 1 and killed ones can linger as zombies (gotcha 10), which `kill -0`
//! still reports as present.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::exec;
use super::progress::Progress;

/// How long [`stop`] waits after the first signal before sending KILL.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(10);

/// The fields of `/proc/PID/stat` after the command name: state, ppid, ...
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Is `pid` running? A zombie (state `Z`) counts as dead.
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|state| state != "Z"))
}

/// The parent PID of `pid`, if it exists.
pub(super) fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// When `pid` started, in clock ticks since boot: with the PID, this identifies a process
/// even if the PID is later reused.
pub fn start_time(pid: u32) -> Option<u64> {
    // Field 22 of stat overall; the slice starts at field 3 (state).
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The PID in the first line of a pid file (sshd, mariadbd and postmaster.pid all put it
/// there), whether or not it is running.
pub(super) fn read_pid_file(path: &Path) -> Option<u32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The PID from a pid file, only if that process is alive.
pub(super) fn live_pid(path: &Path) -> Option<u32> {
    read_pid_file(path).filter(|&p| alive(p))
}

/// The PIDs of all processes inside network namespace `ns` (`ip netns pids`); empty if
/// the namespace does not exist.
pub fn ns_pids(ns: &str) -> Vec<u32> {
    exec::run(Command::new("ip").args(["netns", "pids", ns]))
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `root` and every process among `candidates` whose chain of parents reaches `root`.
pub(super) fn tree(root: u32, candidates: &[u32]) -> Vec<u32> {
    let mut tree: HashSet<u32> = HashSet::from([root]);
    // Parents may be listed after their children: repeat until nothing changes.
    loop {
        let before = tree.len();
        for &pid in candidates {
            if !tree.contains(&pid) && parent(pid).is_some_and(|p| tree.contains(&p)) {
                tree.insert(pid);
            }
        }
        if tree.len() == before {
            break;
        }
    }
    let mut pids: Vec<u32> = tree.into_iter().collect();
    pids.sort_unstable();
    pids
}

/// The command line of `pid`, arguments joined by spaces (empty if it is gone).
pub(super) fn cmdline(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .replace('\0', " ")
        .trim()
        .to_owned()
}

/// The command line of `pid`, cut to 60 characters, for log messages.
pub(super) fn short_cmdline(pid: u32) -> String {
    cmdline(pid).chars().take(60).collect()
}

/// Sends `signal` to each process, waits up to [`STOP_GRACE`] for all of them to exit,
/// then sends KILL to the survivors. Each entry is `(pid, signal, what it is)`.
pub(super) fn stop(targets: &[(u32, Signal, String)], progress: &Progress) {
    let mut waiting = Vec::new();
    for (pid, signal, what) in targets {
        if !alive(*pid) {
            continue;
        }
        progress.step(&format!("stopping {what} (pid {pid}, {signal})"));
        if send(*pid, *signal) {
            waiting.push((*pid, what));
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    while waiting.iter().any(|(p, _)| alive(*p)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    for (pid, what) in &waiting {
        if alive(*pid) {
            progress.step(&format!("{what} (pid {pid}) still running, sending KILL"));
            send(*pid, Signal::SIGKILL);
        }
    }
    // KILL is not instant either; `userdel` refuses while a user's process still runs.
    let deadline = Instant::now() + Duration::from_secs(2);
    while waiting.iter().any(|(p, _)| alive(*p)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to `pid`; false if the process is gone.
pub(super) fn send(pid: u32, signal: Signal) -> bool {
    i32::try_from(pid).is_ok_and(|raw| kill(Pid::from_raw(raw), signal).is_ok())
}
