//! The EICE section: aws-hop through the lab's EC2 Instance Connect Endpoint
//! (`eic_endpoint("web-1").ssh(USER)` plus forwards, [`Tool::AwsHopEice`]) against the
//! bastion path of the same lab (aws-hop `bastion()` forwards, and OpenSSH `ssh -N -L`).
//!
//! 1. Process start to the first MariaDB greeting byte, per path (as [`first_byte`]).
//! 2. Bulk throughput each way, median of the runs (as [`throughput`]).
//! 3. Where an EICE start spends its time, from aws-hop's own `-vv` lines: the
//!    `eice timing: STEP N ms` events of `core/src/aws/eice.rs and core/src/hop/eice/mod.rs` (instance lookup,
//!    endpoint discovery, presign, WebSocket connect), and the timestamps of the SSH
//!    session's `dialing` and `authenticated` events for the key push (the first thing a
//!    dial does) and for the handshake and login.
//!
//! The lab's endpoint is a Python relay (`tests/aws_fakes/eice.py`, websockets) and its
//! API a Python front over moto: EICE figures here measure aws-hop's side and the lab's
//! stand-ins, not AWS's service. Through EICE the SSH server is the instance's sshd (in
//! the private subnet), so the "bastion sshd" CPU column does not apply to that row.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use aws_hop_lab::Lab;

use super::first_byte::{new_connection, start_and_read_first_byte, start_to_first_byte};
use super::server::Server;
use super::stats::Samples;
use super::table::Table;
use super::throughput;
use super::tools::{Forward, Launcher, MARIADB, Tool, Tunnel, stop};
use super::verdict::Verdict;

/// The paths compared, EICE first.
const TOOLS: [Tool; 3] = [Tool::AwsHopEice, Tool::AwsHop, Tool::Ssh];

/// What the section measures.
#[derive(Clone, Debug)]
pub(crate) struct EiceSettings {
    /// Bytes per bulk transfer.
    pub(crate) bytes: u64,
    /// Bulk transfers per path and direction.
    pub(crate) runs: usize,
    /// Starts per path (first byte), and -vv starts for the breakdown.
    pub(crate) start_samples: usize,
    /// New connections per path through an open forward.
    pub(crate) connect_samples: usize,
}

/// The steps of the breakdown, in order, with how each is found in aws-hop's `-vv` output.
const STEPS: [(&str, Step); 9] = [
    (
        "process start, AWS config and credentials",
        Step::BeforeLookup,
    ),
    (
        "instance lookup (DescribeInstances)",
        Step::Event("instance lookup"),
    ),
    (
        "endpoint discovery (DescribeInstanceConnectEndpoints)",
        Step::Event("endpoint discovery"),
    ),
    ("key push (SendSSHPublicKey)", Step::KeyPush),
    ("presign (credentials, SigV4 query)", Step::Event("presign")),
    (
        "WebSocket connect (TCP, TLS, upgrade)",
        Step::Event("WebSocket connect"),
    ),
    ("SSH handshake and auth", Step::SshAuth),
    ("forward listening, channel open, greeting", Step::AfterAuth),
    ("total: process start to first byte", Step::Total),
];

#[derive(Clone, Copy, Debug)]
enum Step {
    /// From the spawn to the start of the instance lookup.
    BeforeLookup,
    /// The `eice timing: NAME N ms` event's N.
    Event(&'static str),
    /// From the SSH session's `dialing` line to the start of the presign (the push runs
    /// first thing in the dial, before the tunnel is opened).
    KeyPush,
    /// From the end of the WebSocket connect to `authenticated`.
    SshAuth,
    /// From `authenticated` to the first byte.
    AfterAuth,
    Total,
}

/// Runs the section; returns its report text and informational verdicts.
pub(crate) fn measure(
    lab: &Lab,
    launcher: &Launcher,
    settings: &EiceSettings,
) -> Result<(String, Vec<Verdict>)> {
    let mariadb = format!("{}:{}", lab.mariadb_host, lab.mariadb_port);
    let mut text = String::from(
        "EICE: aws-hop through the lab's EC2 Instance Connect Endpoint vs the bastion path\n\
         (eic_endpoint(\"web-1\").ssh(USER) + forward, against aws-hop bastion() + forward and\n\
         ssh -N -L through the bastion; the lab's endpoint is a Python websockets relay and its\n\
         API a Python front over moto, so EICE figures include those stand-ins)\n",
    );
    let one = |port| {
        vec![Forward {
            port,
            target: mariadb.clone(),
        }]
    };
    text.push_str("Command line (EICE, one forward):\n");
    for line in launcher
        .describe(Tool::AwsHopEice, &one(launcher.port()))?
        .lines()
    {
        text.push_str("    ");
        text.push_str(line);
        text.push('\n');
    }

    // 1. Start to first byte, interleaved.
    let mut starts: Vec<(Tool, Samples)> = TOOLS.iter().map(|&t| (t, Samples::default())).collect();
    for i in 0..settings.start_samples {
        for k in 0..TOOLS.len() {
            let tool = TOOLS[(k + i) % TOOLS.len()];
            let (ms, _) = start_to_first_byte(launcher, tool, &mariadb).with_context(|| {
                format!(
                    "EICE section: start to first byte, sample {}, {}",
                    i + 1,
                    tool.label()
                )
            })?;
            eprintln!(
                "bench: eice start to first byte {:<13} {ms:7.1} ms",
                tool.label()
            );
            if let Some((_, s)) = starts.iter_mut().find(|(t, _)| *t == tool) {
                s.push(ms);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut table = Table::new(&["path", "first byte (ms): median [min..max]", "samples"]).left(0);
    for (tool, s) in &starts {
        table.row(vec![
            path_label(*tool).into(),
            s.summary(1),
            s.len().to_string(),
        ]);
    }
    let _ = write!(
        text,
        "\nProcess start to first MariaDB greeting byte (ms), {} starts per path, interleaved\n{}",
        settings.start_samples,
        table.render()
    );

    // 2. Where an EICE start goes (aws-hop -vv).
    let mut steps: Vec<Samples> = vec![Samples::default(); STEPS.len()];
    for i in 0..settings.start_samples {
        let figures = breakdown_sample(launcher, &mariadb)
            .with_context(|| format!("EICE setup breakdown, sample {}", i + 1))?;
        for (s, v) in steps.iter_mut().zip(figures) {
            s.push(v);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut table = Table::new(&["step", "ms: median [min..max]"]).left(0);
    for ((name, _), s) in STEPS.iter().zip(&steps) {
        table.row(vec![(*name).into(), s.summary(1)]);
    }
    let _ = write!(
        text,
        "\nEICE setup breakdown (ms), {} starts of `aws-hop run -vv` with one forward, from its\n\
         `eice timing:` lines and the SSH session's `dialing`/`authenticated` timestamps\n{}",
        settings.start_samples,
        table.render()
    );

    // 3. Throughput.
    let sink = Server::start(lab, aws_hop_lab::ServeMode::Sink)?;
    let source = Server::start(lab, aws_hop_lab::ServeMode::Source)?;
    let mut tunnels: Vec<Tunnel> = Vec::new();
    for tool in TOOLS {
        let forwards: Vec<Forward> = [
            sink.addr.to_string(),
            source.addr.to_string(),
            mariadb.clone(),
        ]
        .into_iter()
        .map(|target| Forward {
            port: launcher.port(),
            target,
        })
        .collect();
        eprintln!("bench: eice section: opening {}", tool.label());
        tunnels.push(launcher.open(tool, &forwards)?);
    }
    let connects = new_connections(&tunnels, settings.connect_samples);
    let result = connects.and_then(|connects| {
        let mut table = Table::new(&["path", "ms: median [min..max]", "samples"]).left(0);
        for (tool, s) in &connects {
            table.row(vec![
                path_label(*tool).into(),
                s.summary(2),
                s.len().to_string(),
            ]);
        }
        let _ = write!(
            text,
            "\nNew connection through an open forward to first MariaDB greeting byte (ms), \
             interleaved\n{}",
            table.render()
        );
        throughput::measure(lab, &mut tunnels, settings.bytes, settings.runs)
    });
    for tunnel in tunnels {
        tunnel.close()?;
    }
    let throughput = result?;
    text.push('\n');
    text.push_str(&throughput.report());

    let median = |tool| {
        starts
            .iter()
            .find(|(t, _)| *t == tool)
            .map_or(f64::NAN, |(_, s)| s.median())
    };
    let verdicts = vec![Verdict {
        measure: "EICE start to first DB byte (ms) vs bastion".into(),
        aws_hop: format!("{:.1}", median(Tool::AwsHopEice)),
        baseline: format!("aws-hop bastion {:.1}", median(Tool::AwsHop)),
        target: "information".into(),
        pass: None,
    }];
    Ok((text, verdicts))
}

/// New connections through each tunnel's open MariaDB forward to the first byte.
fn new_connections(tunnels: &[Tunnel], samples: usize) -> Result<Vec<(Tool, Samples)>> {
    let mut out: Vec<(Tool, Samples)> = tunnels
        .iter()
        .map(|t| (t.tool, Samples::default()))
        .collect();
    for i in 0..samples {
        for k in 0..tunnels.len() {
            let index = (k + i) % tunnels.len();
            let tunnel = &tunnels[index];
            let ms = new_connection(tunnel.ports[MARIADB]).with_context(|| {
                format!(
                    "EICE section: new connection, sample {}, {}",
                    i + 1,
                    tunnel.tool.label()
                )
            })?;
            out[index].1.push(ms);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(out)
}

/// How a path is named in the EICE tables.
fn path_label(tool: Tool) -> &'static str {
    match tool {
        Tool::AwsHopEice => "aws-hop eic_endpoint().ssh()",
        Tool::AwsHop => "aws-hop bastion()",
        Tool::Ssh => "ssh -N -L via bastion",
        Tool::SshAesGcm => "ssh aes256-gcm via bastion",
        Tool::AwsHopSsm => "aws-hop ssm()",
        Tool::AwsHopSsm32k => "aws-hop ssm() chunk 32k",
    }
}

/// One `aws-hop -vv` EICE start to the first byte: the ms of each of [`STEPS`].
fn breakdown_sample(launcher: &Launcher, mariadb: &str) -> Result<Vec<f64>> {
    let port = launcher.port();
    let cmd = launcher.eice_command(
        &[Forward {
            port,
            target: mariadb.to_owned(),
        }],
        true,
    )?;
    let spawned_at = day_secs(SystemTime::now());
    let (total, _, mut process) = start_and_read_first_byte(cmd, Tool::AwsHopEice, port)?;
    let first_byte_at = spawned_at + total / 1e3;
    let lines = process.lines();
    stop(Tool::AwsHopEice, &mut process)?;

    let event = |name: &str| -> Result<(f64, f64)> {
        let needle = format!("eice timing: {name} ");
        let line = lines
            .iter()
            .find(|l| l.contains(&needle))
            .with_context(|| format!("no `{needle}` line in aws-hop's -vv output"))?;
        let ms: f64 = line
            .split(&needle)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("bad timing line {line:?}"))?;
        Ok((stamp(line)?, ms))
    };
    let authenticated = lines
        .iter()
        .find(|l| l.contains(": authenticated"))
        .context("no `authenticated` line in aws-hop's -vv output")
        .and_then(|l| stamp(l))?;
    let dialing = lines
        .iter()
        .find(|l| l.contains("dialing ssh "))
        .context("no `dialing ssh` line in aws-hop's -vv output")
        .and_then(|l| stamp(l))?;
    let (presign_at, presign_ms) = event("presign")?;
    let (lookup_at, lookup_ms) = event("instance lookup")?;
    let (ws_at, _) = event("WebSocket connect")?;
    let mut figures = Vec::new();
    for (_, step) in STEPS {
        figures.push(match step {
            Step::BeforeLookup => (lookup_at - lookup_ms / 1e3 - spawned_at) * 1e3,
            Step::Event(name) => event(name)?.1,
            Step::KeyPush => (presign_at - presign_ms / 1e3 - dialing) * 1e3,
            Step::SshAuth => (authenticated - ws_at) * 1e3,
            Step::AfterAuth => (first_byte_at - authenticated) * 1e3,
            Step::Total => total,
        });
    }
    if figures.iter().any(|v| !v.is_finite() || *v < -1.0) {
        bail!(
            "inconsistent timings {figures:?} from:\n{}",
            lines.join("\n")
        );
    }
    Ok(figures)
}

/// Seconds since midnight UTC of `t`.
fn day_secs(t: SystemTime) -> f64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_secs() % 86_400) as f64 + f64::from(since.subsec_nanos()) / 1e9
}

/// Seconds since midnight UTC of a tracing line's leading RFC 3339 timestamp
/// (`2026-01-02T03:04:05.123456Z DEBUG ...`).
fn stamp(line: &str) -> Result<f64> {
    let clean: String = strip_ansi(line);
    let time = clean
        .split_whitespace()
        .next()
        .and_then(|t| t.split_once('T'))
        .map(|(_, t)| t.trim_end_matches('Z'))
        .with_context(|| format!("no timestamp in {line:?}"))?;
    let mut parts = time.split(':');
    let mut next = || -> Result<f64> {
        parts
            .next()
            .and_then(|p| p.parse::<f64>().ok())
            .with_context(|| format!("bad timestamp in {line:?}"))
    };
    Ok(next()? * 3600.0 + next()? * 60.0 + next()?)
}

/// `line` without ANSI escape sequences (in case colors are on).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_of_tracing_lines() {
        let t = stamp("2026-01-02T03:04:05.250000Z DEBUG eice timing: presign 0.1 ms").unwrap();
        assert!((t - (3.0 * 3600.0 + 4.0 * 60.0 + 5.25)).abs() < 1e-9);
        let colored = "\u{1b}[2m2026-01-02T00:00:01.5Z\u{1b}[0m \u{1b}[34mDEBUG\u{1b}[0m x";
        assert!((stamp(colored).unwrap() - 1.5).abs() < 1e-9);
    }
}
