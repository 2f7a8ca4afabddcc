//! Bulk throughput each way, through every tool's forward, interleaved run by run.
//!
//! - Upload: the laptop sends N bytes of the [`pattern`] through the forward to the `sink`
//!   server in the private subnet, which replies with the byte count and SHA-256 of what
//!   it got. Both must match, so a fast wrong answer cannot count.
//! - Download: the `source` server sends N pattern bytes; `source_fetch` checks every one.
//!
//! Each run times one transfer per tool per direction, from connect to the last byte (or
//! the sink's reply); the tool order rotates every run, so drift on a shared machine hits
//! every tool alike. Around each transfer it reads the CPU time of the tunnel process
//! (utime + stime, all threads) and of the bastion's sshd processes, reported as CPU-s
//! per GiB: steadier than MB/s when other jobs share the CPUs.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_hop_lab::serve::client::{sink_send, source_fetch};
use aws_hop_lab::{Lab, pattern};

use super::procfs::{cpu_secs, sshd_cpu_secs};
use super::stats::Samples;
use super::table::Table;
use super::tools::{SINK, SOURCE, Tool, Tunnel};
use super::verdict::Verdict;

/// Limit for any one read or write: a stalled transfer fails instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_mins(1);

const GIB: f64 = (1u64 << 30) as f64;

/// Which way the bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Laptop to the private subnet.
    Upload,
    /// Private subnet to the laptop.
    Download,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// The samples of one tool in one direction.
#[derive(Clone, Debug, Default)]
struct Figures {
    mb_per_s: Samples,
    client_cpu_per_gib: Samples,
    sshd_cpu_per_gib: Samples,
}

/// All throughput samples.
#[derive(Debug)]
pub(crate) struct Throughput {
    bytes: u64,
    runs: usize,
    figures: Vec<(Tool, Direction, Figures)>,
}

/// Runs `runs` rounds of one upload and one download of `bytes` per tunnel.
pub(crate) fn measure(
    lab: &Lab,
    tunnels: &mut [Tunnel],
    bytes: u64,
    runs: usize,
) -> Result<Throughput> {
    eprintln!("bench: computing the SHA-256 of {bytes} pattern bytes");
    let expected_sha = pattern::sha256_hex_of_pattern(bytes);
    let mut result = Throughput {
        bytes,
        runs,
        figures: Vec::new(),
    };
    let n = tunnels.len();
    for run in 0..runs {
        for direction in [Direction::Upload, Direction::Download] {
            for i in 0..n {
                let tunnel = &mut tunnels[(i + run) % n];
                let tool = tunnel.tool;
                let figures = one_transfer(lab, tunnel, direction, bytes, &expected_sha)
                    .with_context(|| {
                        format!(
                            "{} run {} through {}",
                            direction.label(),
                            run + 1,
                            tool.label()
                        )
                    })?;
                eprintln!(
                    "bench: {} run {}/{runs} {:<15} {:>7.1} MB/s  client {:.2} CPU-s/GiB  sshd {:.2} CPU-s/GiB",
                    direction.label(),
                    run + 1,
                    tool.label(),
                    figures.0,
                    figures.1,
                    figures.2
                );
                let slot = result.slot(tool, direction);
                slot.mb_per_s.push(figures.0);
                slot.client_cpu_per_gib.push(figures.1);
                slot.sshd_cpu_per_gib.push(figures.2);
            }
        }
    }
    Ok(result)
}

/// One transfer: (MB/s, client CPU-s/GiB, bastion sshd CPU-s/GiB).
fn one_transfer(
    lab: &Lab,
    tunnel: &mut Tunnel,
    direction: Direction,
    bytes: u64,
    expected_sha: &str,
) -> Result<(f64, f64, f64)> {
    tunnel.check_running()?;
    let pid = tunnel.pid();
    let port = match direction {
        Direction::Upload => tunnel.ports[SINK],
        Direction::Download => tunnel.ports[SOURCE],
    };
    let sshd_before = sshd_cpu_secs(&lab.ns_pub);
    let cpu_before = cpu_secs(pid)?;
    let start = Instant::now();
    let stream = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(5),
    )
    .with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    match direction {
        Direction::Upload => {
            let reply = sink_send(&stream, bytes).context("sending to the sink")?;
            if reply.bytes != bytes || reply.sha256 != expected_sha {
                bail!(
                    "the sink got {} bytes with SHA-256 {}, not {bytes} with {expected_sha}",
                    reply.bytes,
                    reply.sha256
                );
            }
        }
        Direction::Download => {
            let got = source_fetch(&stream, bytes).context("fetching from the source")?;
            if got != bytes {
                bail!("got {got} bytes from the source, not {bytes}");
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid)? - cpu_before;
    let sshd = sshd_cpu_secs(&lab.ns_pub) - sshd_before;
    let gib = bytes as f64 / GIB;
    Ok((bytes as f64 / secs / 1e6, cpu / gib, sshd / gib))
}

impl Throughput {
    fn slot(&mut self, tool: Tool, direction: Direction) -> &mut Figures {
        let found = self
            .figures
            .iter()
            .position(|(t, d, _)| *t == tool && *d == direction);
        let index = found.unwrap_or_else(|| {
            self.figures.push((tool, direction, Figures::default()));
            self.figures.len() - 1
        });
        &mut self.figures[index].2
    }

    fn get(&self, tool: Tool, direction: Direction) -> Option<&Figures> {
        self.figures
            .iter()
            .find(|(t, d, _)| *t == tool && *d == direction)
            .map(|(_, _, f)| f)
    }

    /// The section of the report.
    pub(crate) fn report(&self) -> String {
        let mut table = Table::new(&[
            "direction",
            "tool",
            "MB/s median [min..max]",
            "client CPU-s/GiB",
            "bastion sshd CPU-s/GiB",
        ])
        .left(1);
        // The tools measured, in the order of their first transfer (the tunnels' order).
        let mut tools: Vec<Tool> = Vec::new();
        for (tool, _, _) in &self.figures {
            if !tools.contains(tool) {
                tools.push(*tool);
            }
        }
        for direction in [Direction::Upload, Direction::Download] {
            for &tool in &tools {
                if let Some(f) = self.get(tool, direction) {
                    table.row(vec![
                        direction.label().into(),
                        tool.label().into(),
                        f.mb_per_s.summary(0),
                        f.client_cpu_per_gib.summary(2),
                        f.sshd_cpu_per_gib.summary(2),
                    ]);
                }
            }
        }
        format!(
            "Bulk throughput: {} per transfer, {} runs per tool and direction, tools interleaved\n\
             (MB/s = 10^6 B/s from connect to the last byte; CPU-s/GiB = utime+stime of the\n\
             tunnel process, and of all sshd processes on the bastion, per 2^30 bytes)\n{}",
            super::human_size(self.bytes),
            self.runs,
            table.render()
        )
    }

    /// PASS/MISS lines: aws-hop's median MB/s against each ssh's (target: ratio >= 1.0),
    /// and the CPU figures for information.
    pub(crate) fn verdicts(&self) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        for direction in [Direction::Upload, Direction::Download] {
            let Some(aws) = self.get(Tool::AwsHop, direction) else {
                continue;
            };
            for baseline in [Tool::Ssh, Tool::SshAesGcm] {
                let Some(base) = self.get(baseline, direction) else {
                    continue;
                };
                let ratio = aws.mb_per_s.median() / base.mb_per_s.median();
                verdicts.push(Verdict {
                    measure: format!("{} MB/s vs {}", direction.label(), baseline.label()),
                    aws_hop: format!("{:.0}", aws.mb_per_s.median()),
                    baseline: format!("{:.0}", base.mb_per_s.median()),
                    target: format!("ratio {ratio:.2} >= 1.00"),
                    pass: Some(ratio >= 1.0),
                });
            }
            if let Some(best) = self.get(Tool::SshAesGcm, direction) {
                verdicts.push(Verdict {
                    measure: format!("{} client CPU-s/GiB vs ssh aes256-gcm", direction.label()),
                    aws_hop: format!("{:.2}", aws.client_cpu_per_gib.median()),
                    baseline: format!("{:.2}", best.client_cpu_per_gib.median()),
                    target: format!(
                        "ratio {:.2} (lower is better)",
                        aws.client_cpu_per_gib.median() / best.client_cpu_per_gib.median()
                    ),
                    pass: None,
                });
            }
        }
        verdicts
    }
}
