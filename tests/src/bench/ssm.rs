//! The SSM section: aws-hop through the lab's fake Session Manager (`ssm("web-1")` plus
//! forwards, [`Tool::AwsHopSsm`], and the same with `chunk_size: 32768`,
//! [`Tool::AwsHopSsm32k`]) against the bastion path of the same lab (aws-hop `bastion()`
//! forwards, and OpenSSH `ssh -N -L`), to the same servers in the private subnet.
//!
//! 1. Process start to the first MariaDB greeting byte, per path (as [`first_byte`]): for
//!    SSM that is the instance lookup, the agent check, `StartSession`, the data channel
//!    and its handshake, the smux stream and the agent's dial.
//! 2. A new connection through an open forward to that first byte (a new smux stream on
//!    the forward's open session).
//! 3. Bulk throughput each way, median of the runs, with CPU-s per GiB of the client
//!    (utime + stime of the aws-hop or ssh process), of the bastion's sshd processes, and
//!    of the lab's Python agent and gateway (the `ssm_agent.py` and `front.py` processes,
//!    whose pids are in the lab's `aws/` directory). Uploads also run with
//!    `chunk_size: 32768`; downloads do not, since the agent picks its own message size
//!    (1 KiB, like the real agent).
//!
//! SSM port forwarding carries no half-close (the agent ends a stream on the client's
//! first EOF), so the `sink` server (read to EOF, then answer) cannot be used: uploads go
//! to a counting sink of this module instead, a listener in the private subnet run by the
//! bench process that reads an 8-byte big-endian count N, then N bytes, answers
//! `<count> <sha256>\n` and closes. Every path uploads to it, so the comparison stays
//! fair. Downloads use the `source` server, which needs no half-close.
//!
//! The lab's agent and gateway are Python stand-ins: they do not reproduce AWS's own
//! throughput limits, and they spend far more CPU per byte than aws-hop does. So the MB/s
//! of the SSM rows are the lab's, and aws-hop's client CPU-s per GiB is the figure that
//! carries over to AWS.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_hop_lab::serve::client::source_fetch;
use aws_hop_lab::{Lab, ServeMode, pattern};
use sha2::{Digest, Sha256};

use super::first_byte::{new_connection, start_to_first_byte};
use super::procfs::{cpu_secs, sshd_cpu_secs};
use super::server::Server;
use super::stats::Samples;
use super::table::Table;
use super::tools::{Forward, Launcher, MARIADB, SINK, SOURCE, Tool, Tunnel};
use super::verdict::Verdict;

/// The paths of the latency measures and of downloads, SSM first.
const PATHS: [Tool; 3] = [Tool::AwsHopSsm, Tool::AwsHop, Tool::Ssh];
/// The paths of uploads: SSM with the default and with 32 KiB messages.
const UPLOAD_PATHS: [Tool; 4] = [Tool::AwsHopSsm, Tool::AwsHopSsm32k, Tool::AwsHop, Tool::Ssh];

/// Limit for any one read or write: a stalled transfer fails instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_mins(2);
/// Bytes of the untimed transfer that opens each forward's session before the runs.
const WARM_UP: u64 = 1 << 20;

const GIB: f64 = (1u64 << 30) as f64;

/// What the section measures.
#[derive(Clone, Debug)]
pub(crate) struct SsmSettings {
    /// Bytes per bulk transfer.
    pub(crate) bytes: u64,
    /// Bulk transfers per path and direction.
    pub(crate) runs: usize,
    /// Starts per path (first byte).
    pub(crate) start_samples: usize,
    /// New connections per path through an open forward.
    pub(crate) connect_samples: usize,
}

/// How a path is named in the SSM tables.
fn path_label(tool: Tool) -> &'static str {
    match tool {
        Tool::AwsHopSsm => "aws-hop ssm() (chunk 8192)",
        Tool::AwsHopSsm32k => "aws-hop ssm() chunk 32768",
        Tool::AwsHop => "aws-hop bastion()",
        Tool::Ssh => "ssh -N -L via bastion",
        Tool::SshAesGcm => "ssh aes256-gcm via bastion",
        Tool::AwsHopEice => "aws-hop eic_endpoint().ssh()",
    }
}

fn is_ssm(tool: Tool) -> bool {
    matches!(tool, Tool::AwsHopSsm | Tool::AwsHopSsm32k)
}

/// Which way the bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Upload,
    Download,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }

    fn paths(self) -> &'static [Tool] {
        match self {
            Direction::Upload => &UPLOAD_PATHS,
            Direction::Download => &PATHS,
        }
    }
}

/// The lab's Python stand-ins for the SSM service, whose CPU time is sampled around each
/// transfer (`None` if the pid file is missing or the process gone).
#[derive(Clone, Copy, Debug)]
struct StandIns {
    /// `ssm_agent.py`, web-1's agent.
    agent: Option<u32>,
    /// `front.py`, which runs the Message Gateway Service (and the API front and the EICE
    /// relay, idle meanwhile).
    gateway: Option<u32>,
}

impl StandIns {
    fn find(lab: &Lab) -> StandIns {
        let pid = |file: &str| {
            std::fs::read_to_string(lab.aws.dir.join(file))
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok())
                .filter(|&pid| aws_hop_lab::lab::alive(pid))
        };
        StandIns {
            agent: pid("ssm-agent.pid"),
            gateway: pid("front.pid"),
        }
    }

    /// CPU seconds of (agent, gateway) so far; NaN for one not found.
    fn cpu(self) -> (f64, f64) {
        let of = |pid: Option<u32>| pid.and_then(|p| cpu_secs(p).ok()).unwrap_or(f64::NAN);
        (of(self.agent), of(self.gateway))
    }
}

/// A counting sink in the private subnet that needs no half-close: see the module docs.
/// Stopped on drop.
struct CountingSink<'a> {
    lab: &'a Lab,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl<'a> CountingSink<'a> {
    fn start(lab: &'a Lab) -> Result<CountingSink<'a>> {
        let listener: TcpListener = lab
            .listen_in(&lab.ns_priv, SocketAddr::from((lab.sink_ip, 0)))
            .with_context(|| format!("cannot listen on {}:0 in {}", lab.sink_ip, lab.ns_priv))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                thread::spawn(move || {
                    if let Err(e) = counted_sink(&conn) {
                        eprintln!("bench: ssm section: counting sink: {e}");
                    }
                });
            }
        });
        Ok(CountingSink {
            lab,
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for CountingSink<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag and drops the listener.
        let woke = self
            .lab
            .connect_in(&self.lab.ns_priv, self.addr, Duration::from_secs(2));
        if woke.is_ok()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

/// One connection of the counting sink: an 8-byte count N, then N bytes; answers
/// `<count> <sha256>\n` and closes.
fn counted_sink(conn: &TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut count = [0u8; 8];
    (&*conn).read_exact(&mut count)?;
    let n = u64::from_be_bytes(count);
    let mut hasher = Sha256::new();
    let mut left = n;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        match (&*conn).read(&mut buf[..want])? {
            0 => break,
            k => {
                hasher.update(&buf[..k]);
                left -= k as u64;
            }
        }
    }
    writeln!(&*conn, "{} {}", n - left, pattern::hex(&hasher.finalize()))
}

/// Sends N pattern bytes to the counting sink through `stream`; returns its answer line.
fn counted_send(stream: &TcpStream, n: u64) -> std::io::Result<String> {
    (&*stream).write_all(&n.to_be_bytes())?;
    pattern::write(&mut &*stream, n)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// The samples of one path in one direction.
#[derive(Clone, Debug, Default)]
struct Figures {
    mb_per_s: Samples,
    client: Samples,
    sshd: Samples,
    agent: Samples,
    gateway: Samples,
}

/// Every throughput sample, per path and direction.
type ThroughputFigures = Vec<(Tool, Direction, Figures)>;

/// Runs the section; returns its report text and informational verdicts.
pub(crate) fn measure(
    lab: &Lab,
    launcher: &Launcher,
    settings: &SsmSettings,
) -> Result<(String, Vec<Verdict>)> {
    let mariadb = format!("{}:{}", lab.mariadb_host, lab.mariadb_port);
    let stand_ins = StandIns::find(lab);
    let mut text = String::from(
        "SSM: aws-hop through the lab's fake Session Manager vs the bastion path\n\
         (ssm(\"web-1\") + forward, the agent dialing from web-1, against aws-hop bastion() +\n\
         forward and ssh -N -L through the bastion, to the same servers. The lab's gateway and\n\
         agent are Python stand-ins that do not reproduce AWS's own throughput limits and spend\n\
         far more CPU per byte than the client: the SSM MB/s are the lab's, aws-hop's client\n\
         CPU-s per GiB is the honest figure)\n",
    );
    let sink = CountingSink::start(lab)?;
    let source = Server::start(lab, ServeMode::Source)?;
    // The targets of each path's tunnel: chunk 32768 uploads only.
    let targets = |tool: Tool| -> Vec<String> {
        let all = [
            sink.addr.to_string(),
            source.addr.to_string(),
            mariadb.clone(),
        ];
        let n = if tool == Tool::AwsHopSsm32k { 1 } else { 3 };
        all.into_iter().take(n).collect()
    };
    text.push_str(
        "Command lines (SSM; forwards: counting sink, source, MariaDB; port 0 here, fixed \
         free ports in the runs):\n",
    );
    for tool in [Tool::AwsHopSsm, Tool::AwsHopSsm32k] {
        let forwards: Vec<Forward> = targets(tool)
            .into_iter()
            .map(|target| Forward { port: 0, target })
            .collect();
        let _ = writeln!(text, "  [{}]", path_label(tool));
        for line in launcher.describe(tool, &forwards)?.lines() {
            let _ = writeln!(text, "    {line}");
        }
    }

    // 1. Start to first byte, interleaved.
    let mut starts: Vec<(Tool, Samples, Samples)> = PATHS
        .iter()
        .map(|&t| (t, Samples::default(), Samples::default()))
        .collect();
    for i in 0..settings.start_samples {
        for k in 0..PATHS.len() {
            let index = (k + i) % PATHS.len();
            let tool = PATHS[index];
            let (ms, accepted) =
                start_to_first_byte(launcher, tool, &mariadb).with_context(|| {
                    format!(
                        "SSM section: start to first byte, sample {}, {}",
                        i + 1,
                        tool.label()
                    )
                })?;
            eprintln!(
                "bench: ssm start to first byte {:<13} {ms:7.1} ms (accepting at {accepted:.1} ms)",
                tool.label()
            );
            starts[index].1.push(ms);
            starts[index].2.push(accepted);
            thread::sleep(Duration::from_millis(50));
        }
    }
    let ssh_start = starts[PATHS.len() - 1].1.median();
    let mut table = Table::new(&[
        "path",
        "first byte: median [min..max]",
        "x ssh",
        "port accepting",
        "samples",
    ])
    .left(0);
    for (tool, s, accepted) in &starts {
        table.row(vec![
            path_label(*tool).into(),
            s.summary(1),
            format!("{:.2}", s.median() / ssh_start),
            format!("{:.1}", accepted.median()),
            s.len().to_string(),
        ]);
    }
    let _ = write!(
        text,
        "\nProcess start to first MariaDB greeting byte (ms), {} starts per path, interleaved\n{}",
        settings.start_samples,
        table.render()
    );

    // The long-lived tunnels.
    let mut tunnels: Vec<Tunnel> = Vec::new();
    let result = (|| -> Result<(Vec<(Tool, Samples)>, ThroughputFigures)> {
        for tool in UPLOAD_PATHS {
            let forwards: Vec<Forward> = targets(tool)
                .into_iter()
                .map(|target| Forward {
                    port: launcher.port(),
                    target,
                })
                .collect();
            eprintln!("bench: ssm section: opening {}", tool.label());
            tunnels.push(launcher.open(tool, &forwards)?);
        }
        warm_up(lab, &mut tunnels, stand_ins)?;
        let connects = new_connections(&tunnels, settings.connect_samples)?;
        let figures = throughput(lab, &mut tunnels, settings, stand_ins)?;
        Ok((connects, figures))
    })();
    let mut closed = Ok(());
    for tunnel in tunnels {
        let label = tunnel.tool.label();
        match tunnel.close() {
            Ok(process) => {
                for line in process.lines_containing("STATS ") {
                    eprintln!("bench: ssm section: {label}: {line}");
                }
            }
            Err(e) => closed = Err(e.context(format!("closing {label}"))),
        }
    }
    drop(sink);
    let complaints = source.complaints();
    drop(source);
    let (connects, figures) = result?;
    closed?;
    if !complaints.is_empty() {
        eprintln!(
            "bench: ssm section: the source server said:\n{}",
            complaints.join("\n")
        );
    }

    // 2. New connections.
    let ssh_connect = connects
        .iter()
        .find(|(t, _)| *t == Tool::Ssh)
        .map_or(f64::NAN, |(_, s)| s.median());
    let mut table = Table::new(&["path", "ms: median [min..max]", "x ssh", "samples"]).left(0);
    for (tool, s) in &connects {
        table.row(vec![
            path_label(*tool).into(),
            s.summary(2),
            format!("{:.3}", s.median() / ssh_connect),
            s.len().to_string(),
        ]);
    }
    let _ = write!(
        text,
        "\nNew connection through an open forward to first MariaDB greeting byte (ms), {} per \
         path, interleaved\n(SSM: a new smux stream on the forward's open session)\n{}",
        settings.connect_samples,
        table.render()
    );

    // 3. Throughput.
    text.push('\n');
    text.push_str(&throughput_report(&figures, settings, stand_ins));

    let get = |tool: Tool, direction: Direction| {
        figures
            .iter()
            .find(|(t, d, _)| *t == tool && *d == direction)
            .map(|(_, _, f)| f)
    };
    let mut verdicts = vec![Verdict {
        measure: "SSM start to first DB byte (ms) vs bastion".into(),
        aws_hop: format!("{:.1}", starts[0].1.median()),
        baseline: format!("aws-hop bastion {:.1}", starts[1].1.median()),
        target: "information".into(),
        pass: None,
    }];
    for (direction, tool) in [
        (Direction::Upload, Tool::AwsHopSsm),
        (Direction::Upload, Tool::AwsHopSsm32k),
        (Direction::Download, Tool::AwsHopSsm),
    ] {
        if let (Some(ssm), Some(ssh)) = (get(tool, direction), get(Tool::Ssh, direction)) {
            verdicts.push(Verdict {
                measure: format!(
                    "SSM{} {} client CPU-s/GiB vs ssh",
                    if tool == Tool::AwsHopSsm32k {
                        " 32k"
                    } else {
                        ""
                    },
                    direction.label()
                ),
                aws_hop: format!("{:.2}", ssm.client.median()),
                baseline: format!("{:.2}", ssh.client.median()),
                target: format!(
                    "ratio {:.2} (lower is better)",
                    ssm.client.median() / ssh.client.median()
                ),
                pass: None,
            });
        }
    }
    Ok((text, verdicts))
}

/// One untimed transfer of [`WARM_UP`] bytes per tunnel and direction: starts every SSM
/// forward's session (each target has its own, started on the first connection) and
/// checks every path before the timed runs. Also one MariaDB greeting per tunnel.
fn warm_up(lab: &Lab, tunnels: &mut [Tunnel], stand_ins: StandIns) -> Result<()> {
    let expected = pattern::sha256_hex_of_pattern(WARM_UP);
    for tunnel in tunnels.iter_mut() {
        for direction in [Direction::Upload, Direction::Download] {
            if direction.paths().contains(&tunnel.tool) {
                one_transfer(lab, tunnel, direction, WARM_UP, &expected, stand_ins).with_context(
                    || {
                        format!(
                            "SSM section: warm-up {} through {}",
                            direction.label(),
                            tunnel.tool.label()
                        )
                    },
                )?;
            }
        }
        if let Some(&port) = tunnel.ports.get(MARIADB) {
            new_connection(port).with_context(|| {
                format!(
                    "SSM section: warm-up MariaDB greeting through {}",
                    tunnel.tool.label()
                )
            })?;
        }
    }
    Ok(())
}

/// New connections through each tunnel's open MariaDB forward (the tunnels of
/// [`PATHS`]), interleaved.
fn new_connections(tunnels: &[Tunnel], samples: usize) -> Result<Vec<(Tool, Samples)>> {
    let chosen: Vec<&Tunnel> = PATHS
        .iter()
        .filter_map(|tool| tunnels.iter().find(|t| t.tool == *tool))
        .collect();
    let mut out: Vec<(Tool, Samples)> = chosen
        .iter()
        .map(|t| (t.tool, Samples::default()))
        .collect();
    for i in 0..samples {
        for k in 0..chosen.len() {
            let index = (k + i) % chosen.len();
            let tunnel = chosen[index];
            let ms = new_connection(tunnel.ports[MARIADB]).with_context(|| {
                format!(
                    "SSM section: new connection, sample {}, {}",
                    i + 1,
                    tunnel.tool.label()
                )
            })?;
            out[index].1.push(ms);
            thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(out)
}

/// `runs` rounds of one upload per tunnel and one download per tunnel of [`PATHS`], the
/// order rotating every run.
fn throughput(
    lab: &Lab,
    tunnels: &mut [Tunnel],
    settings: &SsmSettings,
    stand_ins: StandIns,
) -> Result<ThroughputFigures> {
    let bytes = settings.bytes;
    eprintln!("bench: computing the SHA-256 of {bytes} pattern bytes");
    let expected_sha = pattern::sha256_hex_of_pattern(bytes);
    let mut figures: ThroughputFigures = Vec::new();
    for direction in [Direction::Upload, Direction::Download] {
        for &tool in direction.paths() {
            figures.push((tool, direction, Figures::default()));
        }
    }
    for run in 0..settings.runs {
        for direction in [Direction::Upload, Direction::Download] {
            let paths = direction.paths();
            for i in 0..paths.len() {
                let tool = paths[(i + run) % paths.len()];
                let tunnel = tunnels
                    .iter_mut()
                    .find(|t| t.tool == tool)
                    .context("no tunnel for a path")?;
                let [mb, client, sshd, agent, gateway] =
                    one_transfer(lab, tunnel, direction, bytes, &expected_sha, stand_ins)
                        .with_context(|| {
                            format!(
                                "SSM section: {} run {} through {}",
                                direction.label(),
                                run + 1,
                                tool.label()
                            )
                        })?;
                eprintln!(
                    "bench: ssm {} run {}/{} {:<21} {mb:>7.1} MB/s  client {client:.2}  \
                     sshd {sshd:.2}  agent {agent:.2}  gateway {gateway:.2} CPU-s/GiB",
                    direction.label(),
                    run + 1,
                    settings.runs,
                    tool.label(),
                );
                if let Some((_, _, f)) = figures
                    .iter_mut()
                    .find(|(t, d, _)| *t == tool && *d == direction)
                {
                    f.mb_per_s.push(mb);
                    f.client.push(client);
                    f.sshd.push(sshd);
                    f.agent.push(agent);
                    f.gateway.push(gateway);
                }
            }
        }
    }
    Ok(figures)
}

/// One transfer: [MB/s, client, bastion sshd, lab agent, lab gateway CPU-s/GiB].
fn one_transfer(
    lab: &Lab,
    tunnel: &mut Tunnel,
    direction: Direction,
    bytes: u64,
    expected_sha: &str,
    stand_ins: StandIns,
) -> Result<[f64; 5]> {
    tunnel.check_running()?;
    let pid = tunnel.pid();
    let port = match direction {
        Direction::Upload => tunnel.ports[SINK],
        Direction::Download => tunnel.ports[SOURCE],
    };
    let sshd_before = sshd_cpu_secs(&lab.ns_pub);
    let (agent_before, gateway_before) = stand_ins.cpu();
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
            let reply = counted_send(&stream, bytes).context("sending to the counting sink")?;
            let want = format!("{bytes} {expected_sha}");
            if reply != want {
                bail!("the counting sink answered {reply:?}, not {want:?}");
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
    let (agent_after, gateway_after) = stand_ins.cpu();
    drop(stream);
    let gib = bytes as f64 / GIB;
    Ok([
        bytes as f64 / secs / 1e6,
        cpu / gib,
        sshd / gib,
        (agent_after - agent_before) / gib,
        (gateway_after - gateway_before) / gib,
    ])
}

/// The throughput table: per direction and path, MB/s and CPU-s per GiB, with ratios to
/// ssh's medians.
fn throughput_report(
    figures: &[(Tool, Direction, Figures)],
    settings: &SsmSettings,
    stand_ins: StandIns,
) -> String {
    let mut table = Table::new(&[
        "direction",
        "path",
        "MB/s median [min..max]",
        "x ssh",
        "client CPU-s/GiB",
        "x ssh",
        "sshd",
        "agent (py)",
        "gateway (py)",
    ])
    .left(1);
    for direction in [Direction::Upload, Direction::Download] {
        let ssh = figures
            .iter()
            .find(|(t, d, _)| *t == Tool::Ssh && *d == direction)
            .map(|(_, _, f)| f);
        let (ssh_mb, ssh_cpu) = ssh.map_or((f64::NAN, f64::NAN), |f| {
            (f.mb_per_s.median(), f.client.median())
        });
        for (tool, _, f) in figures.iter().filter(|(_, d, _)| *d == direction) {
            let median = |s: &Samples| format!("{:.2}", s.median());
            let (sshd, agent, gateway) = if is_ssm(*tool) {
                ("-".into(), median(&f.agent), median(&f.gateway))
            } else {
                (median(&f.sshd), "-".into(), "-".into())
            };
            table.row(vec![
                direction.label().into(),
                path_label(*tool).into(),
                f.mb_per_s.summary(0),
                format!("{:.2}", f.mb_per_s.median() / ssh_mb),
                f.client.summary(2),
                format!("{:.2}", f.client.median() / ssh_cpu),
                sshd,
                agent,
                gateway,
            ]);
        }
    }
    let missing = match (stand_ins.agent, stand_ins.gateway) {
        (Some(_), Some(_)) => String::new(),
        _ => "\n(the agent's or gateway's pid file was not found: its column is NaN)".into(),
    };
    format!(
        "Bulk throughput: {} per transfer, {} runs per path and direction, paths interleaved\n\
         (MB/s = 10^6 B/s from connect to the last byte; CPU-s/GiB = utime+stime per 2^30 bytes\n\
         of the client process, and (medians) of the bastion's sshd processes and of the lab's\n\
         Python stand-ins: web-1's agent (ssm_agent.py) and the gateway (front.py); x ssh =\n\
         median / ssh's median. Uploads go to a counting sink that needs no half-close; the\n\
         agent sends downloads in 1 KiB messages whatever chunk_size says, so chunk 32768 is\n\
         measured on upload only){missing}\n{}",
        super::human_size(settings.bytes),
        settings.runs,
        table.render()
    )
}
