//! What `/proc` says about the machine and about one process: CPU time, memory
//! high-water mark, open-file limits, load average, CPU model.
//!
//! CPU time is utime + stime of `/proc/PID/stat`, which covers every thread of the process
//! (and threads that have already exited), in clock ticks (`getconf CLK_TCK`, 100 on
//! Linux).

use std::fs;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use aws_hop_lab::lab::ns_pids;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Clock ticks per second, for the times in `/proc/PID/stat`.
fn ticks_per_sec() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .filter(|&t: &f64| t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The fields of `/proc/PID/stat` after the command name: index 0 is field 3 (state).
fn stat_fields(pid: u32) -> Result<Vec<String>> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected {path}: {text:?}"))?;
    Ok(rest.split_whitespace().map(str::to_owned).collect())
}

/// CPU seconds (user + system, all threads) that process `pid` has used so far.
pub(crate) fn cpu_secs(pid: u32) -> Result<f64> {
    let fields = stat_fields(pid)?;
    // utime and stime are fields 14 and 15, so indexes 11 and 12 here.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no CPU time in /proc/{pid}/stat"))
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / ticks_per_sec())
}

/// CPU seconds used so far by every `sshd` process in namespace `ns` (the bastion's
/// listener and its per-connection processes). Processes that exit in between drop out
/// of the sum, so compare only while the sessions being measured stay open.
pub(crate) fn sshd_cpu_secs(ns: &str) -> f64 {
    ns_pids(ns)
        .into_iter()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sshd")
        })
        .filter_map(|pid| cpu_secs(pid).ok())
        .sum()
}

/// A `/proc/PID/status` field in KiB, e.g. `VmHWM` (peak resident set) or `VmRSS`.
pub(crate) fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

/// The soft "Max open files" limit of process `pid`, as `/proc/PID/limits` shows it.
pub(crate) fn nofile_of(pid: u32) -> Result<String> {
    let path = format!("/proc/{pid}/limits");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .with_context(|| format!("no Max open files in {path}"))
}

/// This process's RLIMIT_NOFILE (soft, hard).
pub(crate) fn nofile() -> Result<(u64, u64)> {
    getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")
}

/// Sets this process's soft RLIMIT_NOFILE (the hard limit stays). Children started
/// afterwards inherit it.
pub(crate) fn set_nofile_soft(soft: u64) -> Result<()> {
    let (_, hard) = nofile()?;
    if soft > hard {
        bail!("cannot raise the open-file limit to {soft}: the hard limit is {hard}");
    }
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard)
        .with_context(|| format!("setrlimit(RLIMIT_NOFILE, {soft}, {hard})"))
}

/// The three load averages of `/proc/loadavg`.
pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "?".into(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

/// The CPU model and the flags that matter for SSH crypto.
pub(crate) fn cpu_model() -> String {
    let text = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let flags = field("flags");
    let has: Vec<&str> = ["aes", "vaes", "avx2", "avx512f", "sha_ni"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    format!("{} (flags: {})", field("model name"), has.join(" "))
}

/// The output of a short command (stdout, else stderr), trimmed; `?` if it fails.
pub(crate) fn command_text(program: &str, args: &[&str]) -> String {
    Command::new(program).args(args).output().map_or_else(
        |_| "?".into(),
        |out| {
            let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if stdout.is_empty() {
                String::from_utf8_lossy(&out.stderr).trim().to_owned()
            } else {
                stdout
            }
        },
    )
}
