//! Time to the first byte of the MariaDB greeting: from a process start, and from a new
//! connection through a forward that is already open.
//!
//! MariaDB speaks first, so the first byte proves the whole path: the forward listens, the
//! SSH channel opened, the bastion reached the database, and the greeting came back. The
//! four bytes after it are checked too (packet sequence 0, protocol version 10), so a
//! connection that an unrelated listener answered cannot count.
//!
//! - [`measure_starts`]: starts the tool with one forward to MariaDB on a fixed free
//!   port, connects every millisecond until the port accepts, reads the first byte; then
//!   stops it. A fresh process per sample, tools interleaved.
//! - [`measure_new_connections`]: connects to an already open forward, reads the first
//!   byte. OpenSSH `-N` pays about 40 ms here: the bastion's sshd leaves Nagle on, and the
//!   greeting waits for a delayed ACK (lab README, gotcha 11).
//!
//! Both give a [`Latency`]: the samples per tool, its report section and its verdict.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::stats::Samples;
use super::table::Table;
use super::tools::{Forward, Launcher, MARIADB, Tool, Tunnel, stop};
use super::verdict::Verdict;

/// Limit from process start to the first byte.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Limit for the greeting once connected.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Reads the first byte; returns when it came. Then checks the greeting's header and
/// reads the rest of it (it arrives in the same segment, so the timing is unaffected).
fn first_byte(stream: &TcpStream) -> Result<Instant> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut header = [0u8; 5];
    (&*stream)
        .read_exact(&mut header[..1])
        .context("no greeting byte")?;
    let at = Instant::now();
    (&*stream)
        .read_exact(&mut header[1..])
        .context("the greeting's header was cut short")?;
    // 3-byte length, sequence number 0, protocol version 10.
    if header[3] != 0 || header[4] != 10 {
        bail!("not a MariaDB greeting: {header:02x?}");
    }
    // Read the rest of the greeting, so that closing sends a FIN: closing with unread
    // data would reset the connection, which aws-hop rightly counts as failed.
    let length = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut rest = vec![0u8; length.saturating_sub(1)];
    (&*stream)
        .read_exact(&mut rest)
        .context("the greeting was cut short")?;
    Ok(at)
}

/// Milliseconds from connecting to `127.0.0.1:port` to the greeting's first byte.
pub(crate) fn new_connection(port: u16) -> Result<f64> {
    let start = Instant::now();
    let stream = TcpStream::connect_timeout(&local(port), Duration::from_secs(2))
        .with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
    let at = first_byte(&stream)?;
    Ok(at.duration_since(start).as_secs_f64() * 1e3)
}

/// Milliseconds from starting `tool` (one forward to `target`) to the greeting's first
/// byte through it, and to the forward's port accepting. The tool is then stopped
/// cleanly.
pub(crate) fn start_to_first_byte(
    launcher: &Launcher,
    tool: Tool,
    target: &str,
) -> Result<(f64, f64)> {
    let port = launcher.port();
    let cmd = launcher.command(
        tool,
        &[Forward {
            port,
            target: target.to_owned(),
        }],
    )?;
    let (ms, accepted, mut process) = start_and_read_first_byte(cmd, tool, port)?;
    stop(tool, &mut process)?;
    Ok((ms, accepted))
}

/// Starts `cmd` (`tool` with one forward to MariaDB on `port`), polls the port every
/// millisecond and reads the greeting's first byte: (ms to the first byte, ms to the port
/// accepting, the still-running process, for the caller to read and stop).
pub(crate) fn start_and_read_first_byte(
    cmd: std::process::Command,
    tool: Tool,
    port: u16,
) -> Result<(f64, f64, super::child::Spawned)> {
    let start = Instant::now();
    let mut process = super::child::Spawned::start(cmd)?;
    let stream = loop {
        match TcpStream::connect(local(port)) {
            Ok(stream) => break stream,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => bail!("connecting to 127.0.0.1:{port}: {e}"),
        }
        if let Some(status) = process.try_status() {
            bail!(
                "{} exited ({status}) before listening\n{}",
                tool.label(),
                process.report()
            );
        }
        if start.elapsed() >= START_TIMEOUT {
            bail!(
                "{} not listening after {START_TIMEOUT:?}\n{}",
                tool.label(),
                process.report()
            );
        }
        thread::sleep(Duration::from_millis(1));
    };
    let accepted = start.elapsed();
    let at = first_byte(&stream).with_context(|| process.report())?;
    drop(stream);
    Ok((
        at.duration_since(start).as_secs_f64() * 1e3,
        accepted.as_secs_f64() * 1e3,
        process,
    ))
}

/// The samples of one latency measure, per tool (in [`Tool::ALL`] order) and column.
/// Column 0 is the measure itself (to the first byte); others give a breakdown.
#[derive(Debug)]
pub(crate) struct Latency {
    title: String,
    columns: Vec<&'static str>,
    samples: Vec<(Tool, Vec<Samples>)>,
}

impl Latency {
    fn new(title: String, columns: &[&'static str]) -> Latency {
        Latency {
            title,
            columns: columns.to_vec(),
            samples: Tool::ALL
                .iter()
                .map(|&t| (t, vec![Samples::default(); columns.len()]))
                .collect(),
        }
    }

    /// Adds one sample per column for `tool`.
    fn push(&mut self, tool: Tool, ms: &[f64]) {
        if let Some((_, samples)) = self.samples.iter_mut().find(|(t, _)| *t == tool) {
            for (s, &v) in samples.iter_mut().zip(ms) {
                s.push(v);
            }
        }
    }

    /// The median of `tool` in column 0, in ms.
    fn median(&self, tool: Tool) -> f64 {
        self.samples
            .iter()
            .find(|(t, _)| *t == tool)
            .and_then(|(_, s)| s.first())
            .map_or(f64::NAN, Samples::median)
    }

    /// The section of the report.
    pub(crate) fn report(&self) -> String {
        let mut header = vec!["tool"];
        header.extend(&self.columns);
        header.push("samples");
        let mut table = Table::new(&header);
        for (tool, columns) in &self.samples {
            let mut row = vec![tool.label().to_owned()];
            row.extend(columns.iter().map(|s| s.summary(2)));
            row.push(columns.first().map_or(0, Samples::len).to_string());
            table.row(row);
        }
        format!("{}\n{}", self.title, table.render())
    }
}

/// Process start to first byte, `samples` times per tool, interleaved.
pub(crate) fn measure_starts(
    launcher: &Launcher,
    mariadb: &str,
    samples: usize,
) -> Result<Latency> {
    let mut latency = Latency::new(
        format!(
            "Process start to first MariaDB greeting byte (ms), {samples} starts per tool, interleaved\n\
             (spawn, poll-connect every 1 ms to the tool's one forward to {mariadb}, read 1 byte;\n\
             the second column is when that first connect succeeded: the forward listening)"
        ),
        &[
            "first byte: median [min..max]",
            "port accepting: median [min..max]",
        ],
    );
    let n = Tool::ALL.len();
    for i in 0..samples {
        for k in 0..n {
            let tool = Tool::ALL[(k + i) % n];
            let (ms, listening) =
                start_to_first_byte(launcher, tool, mariadb).with_context(|| {
                    format!("start to first byte, sample {}, {}", i + 1, tool.label())
                })?;
            eprintln!(
                "bench: start to first byte {:<15} {ms:7.1} ms (accepting at {listening:.1} ms)",
                tool.label()
            );
            latency.push(tool, &[ms, listening]);
            thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(latency)
}

/// A new connection through each tunnel's open MariaDB forward to the first byte,
/// `samples` times per tunnel, interleaved.
pub(crate) fn measure_new_connections(tunnels: &[Tunnel], samples: usize) -> Result<Latency> {
    let mut latency = Latency::new(
        format!(
            "New connection through an open forward to first MariaDB greeting byte (ms), \
             {samples} per tool, interleaved"
        ),
        &["median [min..max]"],
    );
    let n = tunnels.len();
    for i in 0..samples {
        for k in 0..n {
            let tunnel = &tunnels[(k + i) % n];
            let ms = new_connection(tunnel.ports[MARIADB]).with_context(|| {
                format!(
                    "new connection to first byte, sample {}, {}",
                    i + 1,
                    tunnel.tool.label()
                )
            })?;
            latency.push(tunnel.tool, &[ms]);
            thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(latency)
}

/// PASS if aws-hop's median start is no slower than ssh's (default cipher: the cipher
/// does not change the start).
pub(crate) fn start_verdict(latency: &Latency) -> Verdict {
    let (aws, ssh) = (latency.median(Tool::AwsHop), latency.median(Tool::Ssh));
    Verdict {
        measure: "start to first DB byte (ms) vs ssh".into(),
        aws_hop: format!("{aws:.1}"),
        baseline: format!("{ssh:.1}"),
        target: "no slower than ssh".into(),
        pass: Some(aws <= ssh),
    }
}

/// PASS if aws-hop's median new connection is within `bound_ms`.
pub(crate) fn new_connection_verdict(latency: &Latency, bound_ms: f64) -> Verdict {
    let aws = latency.median(Tool::AwsHop);
    Verdict {
        measure: "new connection to first DB byte (ms)".into(),
        aws_hop: format!("{aws:.2}"),
        baseline: format!("ssh {:.2}", latency.median(Tool::Ssh)),
        target: format!("<= {bound_ms:.1} ms"),
        pass: Some(aws <= bound_ms),
    }
}
