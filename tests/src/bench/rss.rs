//! Peak memory of one aws-hop holding many forwards and many connections.
//!
//! One `aws-hop run` opens [`FORWARDS`] forwards (port 0) to an `echo` server in the
//! private subnet. Then, in each of [`ROUNDS`] rounds, the bench opens
//! [`PER_FORWARD`] connections to every forward (paced, see [`CONNECT_PACE`]), sends
//! [`PAYLOAD`] bytes unique to each, reads them back and checks them while every
//! connection is still open, then closes them all. The peak is `VmHWM` (the resident-set
//! high-water mark) of `/proc/PID/status`; `VmRSS` is also read with everything open and
//! after the round.
//!
//! The first round is the measure on a fresh process. The later rounds are what a
//! long-running aws-hop sees: memory freed after one round may be reused differently by
//! the allocator (glibc raises its mmap threshold once a large block is freed), so both
//! peaks are reported.
//!
//! aws-hop is started with the open-file limit this bench was started with (the user's
//! `ulimit -n`), not the raised one the bench uses for its own 1000 sockets: if aws-hop's
//! `accept` fails with EMFILE, that is a finding, reported with aws-hop's own lines.
//! Every wait is bounded: a connection that gets no echo within [`ROUND_TIMEOUT`] counts
//! as failed, and the rounds stop after the first one with a failure.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::procfs::{nofile_of, set_nofile_soft, status_kib};
use super::server::Server;
use super::table::Table;
use super::tools::{Forward, Launcher, Tool, Tunnel};
use super::verdict::Verdict;

/// Forwards in the one aws-hop process.
pub(crate) const FORWARDS: usize = 100;
/// Connections per forward, all open at once.
pub(crate) const PER_FORWARD: usize = 10;
/// Bytes each connection sends and gets back.
const PAYLOAD: usize = 4096;
/// Rounds of connections.
const ROUNDS: usize = 5;
/// Pause after opening each forward's connections.
const CONNECT_PACE: Duration = Duration::from_millis(5);
/// Limit for one round's echoes.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound on peak RSS: 50 MB.
const LIMIT_BYTES: f64 = 50e6;

/// What one round saw.
#[derive(Clone, Debug)]
struct Round {
    ok: usize,
    failed: usize,
    /// First few failures, for the report.
    errors: Vec<String>,
    rss_open_kib: u64,
    hwm_kib: u64,
    rss_after_kib: u64,
    secs: f64,
}

/// The result of the memory measure.
#[derive(Clone, Debug)]
pub(crate) struct Memory {
    nofile: String,
    rss_idle_kib: u64,
    rounds: Vec<Round>,
    accept_errors: Vec<String>,
    failure_lines: Vec<String>,
    /// aws-hop's `STATS ...` line: its forwards' counters, summed.
    stats: String,
    /// What the echo server said about failed connections.
    echo_complaints: Vec<String>,
}

/// The payload of connection `i`.
fn payload(i: usize) -> Vec<u8> {
    (0..PAYLOAD)
        .map(|j| {
            ((j as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(i as u32 * 7919)
                >> 13) as u8
        })
        .collect()
}

/// Runs the measure against the echo server at `echo`. `user_nofile` is the soft
/// open-file limit aws-hop gets; `bench_nofile` the one the bench uses meanwhile.
pub(crate) fn measure(
    launcher: &Launcher,
    echo: &Server,
    user_nofile: u64,
    bench_nofile: u64,
) -> Result<Memory> {
    let forwards: Vec<Forward> = (0..FORWARDS)
        .map(|_| Forward {
            port: 0,
            target: echo.addr.to_string(),
        })
        .collect();
    set_nofile_soft(user_nofile)?;
    let tunnel = launcher.open(Tool::AwsHop, &forwards);
    set_nofile_soft(bench_nofile)?;
    let mut tunnel = tunnel?;
    let pid = tunnel.pid();
    let nofile = nofile_of(pid)?;
    let rss_idle_kib = status_kib(pid, "VmRSS")?;
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let r =
            one_round(&mut tunnel).with_context(|| format!("connection round {}", round + 1))?;
        eprintln!(
            "bench: memory round {}: {} ok, {} failed, VmHWM {} KiB",
            round + 1,
            r.ok,
            r.failed,
            r.hwm_kib
        );
        let failed = r.failed > 0;
        rounds.push(r);
        if failed {
            // The next rounds would fail the same way, each after ROUND_TIMEOUT.
            break;
        }
    }
    let process = tunnel.close()?;
    let accept_errors = process.lines_containing("accept failed");
    let failure_lines: Vec<String> = process
        .lines_containing("failed:")
        .into_iter()
        .filter(|l| !l.contains("accept failed"))
        .collect();
    let stats = process.lines_containing("STATS ").pop().unwrap_or_default();
    let echo_complaints = echo.complaints();
    Ok(Memory {
        nofile,
        rss_idle_kib,
        rounds,
        accept_errors,
        failure_lines,
        stats,
        echo_complaints,
    })
}

fn one_round(tunnel: &mut Tunnel) -> Result<Round> {
    tunnel.check_running()?;
    let pid = tunnel.pid();
    let start = Instant::now();
    let mut conns = Vec::with_capacity(FORWARDS * PER_FORWARD);
    for (f, &port) in tunnel.ports.iter().enumerate() {
        for k in 0..PER_FORWARD {
            let stream = TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(5),
            )
            .with_context(|| {
                format!(
                    "the bench's own connection {} (to 127.0.0.1:{port}) failed",
                    f * PER_FORWARD + k
                )
            })?;
            stream.set_write_timeout(Some(Duration::from_secs(5)))?;
            conns.push(stream);
        }
        // Pace the opens (1000 in about half a second): every connection makes sshd
        // connect to the echo server, whose listen backlog (128, the standard library's)
        // overflows under a burst of 1000, and the lost handshakes end as empty echoes.
        // OpenSSH showed the same failures here; the pacing keeps the measure about aws-hop.
        thread::sleep(CONNECT_PACE);
    }
    for (i, stream) in conns.iter().enumerate() {
        (&*stream)
            .write_all(&payload(i))
            .with_context(|| format!("writing to connection {i}"))?;
    }
    let deadline = start + ROUND_TIMEOUT;
    let (mut ok, mut failed, mut errors) = (0, 0, Vec::new());
    let mut back = vec![0u8; PAYLOAD];
    for (i, stream) in conns.iter().enumerate() {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        stream.set_read_timeout(Some(left))?;
        let result = (&*stream).read_exact(&mut back);
        match result {
            Ok(()) if back == payload(i) => ok += 1,
            Ok(()) => {
                failed += 1;
                if errors.len() < 3 {
                    errors.push(format!("connection {i}: wrong bytes echoed"));
                }
            }
            Err(e) => {
                failed += 1;
                if errors.len() < 3 {
                    errors.push(format!("connection {i}: {e}"));
                }
            }
        }
    }
    let rss_open_kib = status_kib(pid, "VmRSS")?;
    let hwm_kib = status_kib(pid, "VmHWM")?;
    drop(conns);
    // Let aws-hop see the closes and free the connections.
    thread::sleep(Duration::from_millis(500));
    let rss_after_kib = status_kib(pid, "VmRSS")?;
    Ok(Round {
        ok,
        failed,
        errors,
        rss_open_kib,
        hwm_kib,
        rss_after_kib,
        secs: start.elapsed().as_secs_f64(),
    })
}

fn mb(kib: u64) -> String {
    format!("{:.1}", kib as f64 * 1024.0 / 1e6)
}

impl Memory {
    /// The section of the report.
    pub(crate) fn report(&self) -> String {
        let mut table = Table::new(&[
            "round",
            "connections ok/failed",
            "VmRSS all open (MB)",
            "VmHWM (MB)",
            "VmRSS after close (MB)",
            "seconds",
        ]);
        for (i, r) in self.rounds.iter().enumerate() {
            table.row(vec![
                (i + 1).to_string(),
                format!("{}/{}", r.ok, r.failed),
                mb(r.rss_open_kib),
                mb(r.hwm_kib),
                mb(r.rss_after_kib),
                format!("{:.1}", r.secs),
            ]);
        }
        let mut text = format!(
            "Memory (VmRSS/VmHWM of /proc/PID/status, MB = 10^6 B): one aws-hop, {FORWARDS} forwards \
             to an echo server;\nper round {} connections open at once ({PER_FORWARD} per forward, \
             {PAYLOAD} B echoed and checked on each),\n{ROUNDS} rounds (fewer if one fails); \
             aws-hop's open-file limit: {}\n  VmRSS with the {FORWARDS} forwards idle: {} MB\n{}",
            FORWARDS * PER_FORWARD,
            self.nofile,
            mb(self.rss_idle_kib),
            table.render()
        );
        for (i, r) in self.rounds.iter().enumerate() {
            for e in &r.errors {
                let _ = writeln!(text, "  round {} failure: {e}", i + 1);
            }
        }
        let _ = writeln!(
            text,
            "  aws-hop's own counters at exit: {}",
            self.stats.trim_start_matches("STATS ")
        );
        if let Some(first) = self.echo_complaints.first() {
            let _ = writeln!(
                text,
                "  the echo server reported {} failed connection(s); first: {first}",
                self.echo_complaints.len()
            );
        }
        if !self.accept_errors.is_empty() {
            let _ = writeln!(
                text,
                "  FINDING: aws-hop's accept failed {} time(s) (open-file limit {}); first: {}",
                self.accept_errors.len(),
                self.nofile,
                self.accept_errors[0]
            );
        }
        if !self.failure_lines.is_empty() {
            let _ = writeln!(
                text,
                "  aws-hop reported {} failure line(s); first: {}",
                self.failure_lines.len(),
                self.failure_lines[0]
            );
        }
        text
    }

    /// PASS/MISS: peak RSS <= 50 MB with every connection echoed, for the first round
    /// (a fresh process) and over all rounds.
    pub(crate) fn verdicts(&self) -> Vec<Verdict> {
        let conns = FORWARDS * PER_FORWARD;
        let first = &self.rounds[..self.rounds.len().min(1)];
        let mut verdicts = Vec::new();
        for (what, rounds) in [
            ("1st round".to_owned(), first),
            (format!("{} rounds", self.rounds.len()), &self.rounds[..]),
        ] {
            let failed: usize = rounds.iter().map(|r| r.failed).sum();
            let peak = rounds.iter().map(|r| r.hwm_kib).max().unwrap_or(0);
            verdicts.push(Verdict {
                measure: format!("peak RSS, {FORWARDS} fwds + {conns} conns, {what} (MB)"),
                aws_hop: mb(peak),
                baseline: "-".into(),
                target: if failed == 0 {
                    "<= 50.0 MB".into()
                } else {
                    format!("<= 50.0 MB, all echoed ({failed} failed)")
                },
                pass: Some(peak as f64 * 1024.0 <= LIMIT_BYTES && failed == 0),
            });
        }
        verdicts
    }
}
